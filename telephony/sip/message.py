"""SIP messages (RFC 3261 section 7), sans-IO: bytes in, SipRequest/SipResponse out, and back.

`parse_message` takes one UDP datagram, `StreamParser` frames a TCP/TLS byte stream by
Content-Length, `SipMessage.to_bytes` writes a message back. Nothing here touches a socket or a
clock, so the transaction and dialog layers above are driven by plain bytes in their tests.

Whatever arrives, the parsers either return messages or raise SipParseError; the internet sends
SIP scanners and broken phones, and one bad datagram must never take the agent down. Header
fields the agent relies on (Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route, the
Request-URI) are checked while parsing, so the properties that read them do not fail later on a
message that parsed. SipParseError.status says what to answer a bad request with.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from collections.abc import Iterable, Iterator

from .address import (
    TOKEN_CHARS,
    AddressError,
    NameAddress,
    SipUri,
    UnsupportedSchemeError,
    Via,
    split_header_list,
)

MAX_MESSAGE_BYTES = 65535  # the largest UDP payload; a TCP message larger than this is refused too
MAX_HEADERS = 256
MAX_HEADER_LINE = 8192


class SipParseError(ValueError):
    """Bytes that are not an acceptable SIP message.

    `status` is the response a request deserves (400, 413, 416, 505, 513). `message` is the
    message as far as it was read, set when its head parsed but a later check failed, so that a
    UAS can still answer a request that has its Via, From, To, Call-ID and CSeq:
    make_response(err.message, err.status, err.reason).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message: SipRequest | SipResponse | None = None


COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

# Names whose canonical spelling is not Title-Case-By-Dashes.
_CANONICAL = {
    name.lower(): name
    for name in (
        "Call-ID",
        "CSeq",
        "WWW-Authenticate",
        "MIME-Version",
        "RAck",
        "RSeq",
        "SIP-ETag",
        "SIP-If-Match",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Min-SE",
    )
}

# Headers whose comma-separated elements get_all splits (RFC 3261 7.3.1); the authentication
# headers and Date are not among them because their values hold commas of their own.
_LIST_HEADERS = frozenset(
    {
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "Path",
        "Service-Route",
        "P-Asserted-Identity",
    }
)
_SINGLE_HEADERS = frozenset({"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"})
_MANDATORY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
_ROUTE_HEADERS = ("Contact", "Route", "Record-Route")

_TOKEN = re.compile(f"[{TOKEN_CHARS}]+")
_KEEPALIVE = re.compile(rb"[\r\n]*")
_TOKEN_START = re.compile(f"[{TOKEN_CHARS}]".encode())
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CTLs but HT, LF and CR
_REQUEST_LINE = re.compile(r"([^ \t]+)[ \t]+([^ \t]+)[ \t]+([^ \t]+)[ \t]*")
_STATUS_LINE = re.compile(r"([^ \t]+)[ \t]+([0-9]{3})(?:[ \t]+(.*))?")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_CSEQ = re.compile(rf"([0-9]{{1,10}})[ \t]+([{TOKEN_CHARS}]+)")
_DIGITS = re.compile(r"[0-9]{1,10}")

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def _head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """Where the blank line after the headers is: (end of the head, start of the body)."""
    lf_lf, lf_crlf = data.find(b"\n\n", start), data.find(b"\n\r\n", start)
    if lf_lf < 0 and lf_crlf < 0:
        return None
    if lf_crlf < 0 or 0 <= lf_lf < lf_crlf:
        at, body = lf_lf, lf_lf + 2
    else:
        at, body = lf_crlf, lf_crlf + 3
    return (at - 1 if at > 0 and data[at - 1] == 13 else at), body


def _bad_control(text: str) -> bool:
    """A control character other than HT, CR or LF that is not escaped as a quoted-pair
    (RFC 4475's intmeth message carries escaped NUL, BEL and DEL in a display name)."""
    return any(m.start() == 0 or text[m.start() - 1] != "\\" for m in _CONTROL.finditer(text))


@lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    """The one spelling a header name is stored under: compact forms expanded, case fixed."""
    key = name.lower()
    if key in COMPACT:
        return COMPACT[key]
    return _CANONICAL.get(key) or "-".join(part.capitalize() for part in key.split("-"))


class Headers:
    """Header fields in message order; names are case-insensitive and may be given compact.

    Each entry is one header line as received (a Via line may hold several Vias); get_all
    splits list-valued headers into their elements.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [self._checked(name, value) for name, value in items]

    @classmethod
    def _parsed(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers from the parser, whose names are canonical and values already checked."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    @staticmethod
    def _checked(name: str, value: str) -> tuple[str, str]:
        # A CR or LF in a value would let whoever chose it (a caller's display name, say)
        # inject header lines; values follow the same rule as parsed ones.
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value or _bad_control(value):
            raise ValueError(f"line break or control character in the value of {name}")
        return _canonical(name), value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, unsplit."""
        key = _canonical(name)
        for item_name, value in self._items:
            if item_name == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, list-valued headers split into their elements."""
        key = _canonical(name)
        values = [value for item_name, value in self._items if item_name == key]
        if key in _LIST_HEADERS:
            return [element for value in values for element in split_header_list(value)]
        return values

    def add(self, name: str, value: str) -> None:
        self._items.append(self._checked(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every `name` by one `name: value`, where the first one was (else at the end)."""
        item = self._checked(name, value)
        for i, (item_name, _) in enumerate(self._items):
            if item_name == item[0]:
                self._items[i] = item
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0] != item[0]]
                return
        self._items.append(item)

    def prepend(self, name: str, value: str) -> None:
        """Put `name: value` before the other `name` lines (a proxy's or UAC's new top Via)."""
        item = self._checked(name, value)
        index = next((i for i, (n, _) in enumerate(self._items) if n == item[0]), 0)
        self._items.insert(index, item)

    def remove(self, name: str) -> None:
        """Remove every `name` (nothing if there is none)."""
        key = _canonical(name)
        self._items = [item for item in self._items if item[0] != key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers._parsed(list(self._items))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _canonical(name)
        return any(item_name == key for item_name, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _address_error(what: str, error: AddressError) -> SipParseError:
    # 416 is for a Request-URI that names an unknown scheme (RFC 3261 21.4.17); elsewhere an
    # address we cannot read is a plain 400.
    unsupported = what == "Request-URI" and isinstance(error, UnsupportedSchemeError)
    return SipParseError(f"bad {what}: {error}", 416 if unsupported else 400)


class SipMessage:
    """What requests and responses share: headers, body, and typed views of the key headers.

    The views parse on every access, so they always agree with `headers`, which stays mutable.
    They raise SipParseError when a header is malformed; on a parsed message they do not.
    """

    headers: Headers
    body: bytes
    version: str

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form. Content-Length is always written, from the body, where the first
        Content-Length was (else last), so a message that was edited cannot lie about it."""
        start = self._start_line()
        if "\r" in start or "\n" in start:
            raise ValueError(f"line break in start line {start!r}")
        length: str | None = f"Content-Length: {len(self.body)}"
        lines = [start]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
            elif length is not None:
                lines.append(length)
                length = None
        if length is not None:
            lines.append(length)
        lines += ("", "")
        return "\r\n".join(lines).encode("utf-8") + bytes(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        """(sequence number, method), or None without a CSeq."""
        value = self.headers.get("CSeq")
        if value is None:
            return None
        m = _CSEQ.fullmatch(value)
        if m is None or int(m.group(1)) > 0xFFFFFFFF:  # RFC 3261 8.1.1.5: 32 bits
            raise SipParseError(f"bad CSeq {value!r}")
        return int(m.group(1)), m.group(2)

    @property
    def vias(self) -> list[Via]:
        """Every Via, topmost first."""
        try:
            return [Via.parse(value) for value in self.headers.get_all("Via")]
        except AddressError as e:
            raise _address_error("Via", e) from None

    @property
    def top_via(self) -> Via | None:
        values = self.headers.get_all("Via")
        try:
            return Via.parse(values[0]) if values else None
        except AddressError as e:
            raise _address_error("Via", e) from None

    def _name_address(self, name: str) -> NameAddress:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        try:
            return NameAddress.parse(value)
        except AddressError as e:
            raise _address_error(name, e) from None

    @property
    def from_addr(self) -> NameAddress:
        return self._name_address("From")

    @property
    def to_addr(self) -> NameAddress:
        return self._name_address("To")

    @property
    def contact(self) -> NameAddress | None:
        """The first Contact, or None without one (or for the `Contact: *` of a REGISTER)."""
        values = self.headers.get_all("Contact")
        if not values or values[0] == "*":
            return None
        try:
            return NameAddress.parse(values[0])
        except AddressError as e:
            raise _address_error("Contact", e) from None

    @property
    def content_type(self) -> str | None:
        """The media type, lowercased and without parameters: "application/sdp"."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.partition(";")[0].strip().lower()


@dataclass
class SipRequest(SipMessage):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    @property
    def request_uri(self) -> SipUri:
        try:
            return SipUri.parse(self.uri)
        except AddressError as e:
            raise _address_error("Request-URI", e) from None


@dataclass
class SipResponse(SipMessage):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


def _check_version(version: str) -> None:
    if version.upper() == "SIP/2.0":
        return
    if _VERSION.fullmatch(version):
        raise SipParseError(f"unsupported version {version}", 505)
    raise SipParseError(f"bad SIP version {version!r}")


def _parse_start_line(line: str) -> SipRequest | SipResponse:
    if line[:4].upper() == "SIP/":
        m = _STATUS_LINE.fullmatch(line)
        if m is None:
            raise SipParseError(f"bad status line {line[:80]!r}")
        version, code, reason = m.groups()
        _check_version(version)
        if not 100 <= int(code) <= 699:
            raise SipParseError(f"status code {code} out of range")
        return SipResponse(int(code), (reason or "").strip(" \t"))
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise SipParseError(f"bad request line {line[:80]!r}")
    method, uri, version = m.groups()
    if not _TOKEN.fullmatch(method):
        raise SipParseError(f"bad method {method[:40]!r}")
    _check_version(version)
    return SipRequest(method, uri)


def _parse_head(head: bytes) -> SipRequest | SipResponse:
    """The start line and header fields (everything before the blank line), unfolded."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("message head is not UTF-8") from None
    if _bad_control(text):
        raise SipParseError("control character in message head")
    if text[-1:] == "\r":  # the last line's own line end is not part of the head
        raise SipParseError("CR without LF in message head")
    items: list[list[str]] = []
    message: SipRequest | SipResponse | None = None
    for line in text.split("\n"):
        if line[-1:] == "\r":
            line = line[:-1]
        if "\r" in line:
            raise SipParseError("CR without LF in message head")
        if len(line) > MAX_HEADER_LINE:
            raise SipParseError("header line too long", 513)
        if message is None:
            message = _parse_start_line(line)
        elif line[:1] in (" ", "\t"):  # folded continuation of the previous header
            if not items:
                raise SipParseError("continuation line before the first header")
            last = items[-1]
            last[1] = (last[1] + " " + line.strip(" \t")).strip(" \t")
            if len(last[0]) + len(last[1]) > MAX_HEADER_LINE:
                raise SipParseError("header line too long", 513)
        else:
            name, colon, value = line.partition(":")
            name = name.rstrip(" \t")
            if not colon or not _TOKEN.fullmatch(name):
                raise SipParseError(f"bad header line {line[:80]!r}")
            if len(items) >= MAX_HEADERS:
                raise SipParseError("too many headers", 513)
            items.append([_canonical(name), value.strip(" \t")])
    assert message is not None  # split() never returns an empty list
    message.headers = Headers._parsed([(name, value) for name, value in items])
    return message


def _content_length(headers: Headers) -> int | None:
    values = headers.get_all("Content-Length")
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("more than one Content-Length")
    if not _DIGITS.fullmatch(values[0]):
        raise SipParseError(f"bad Content-Length {values[0][:20]!r}")
    return int(values[0])


def _validate(message: SipRequest | SipResponse) -> None:
    """Check what the layers above rely on, so that the typed views cannot fail later."""
    headers = message.headers
    seen: set[str] = set()
    for name, _ in headers:
        if name in _SINGLE_HEADERS and name in seen:
            raise SipParseError(f"more than one {name}")
        seen.add(name)
    missing = [name for name in _MANDATORY_HEADERS if name not in seen]
    if missing:
        raise SipParseError("missing " + ", ".join(missing))
    if not message.vias:
        raise SipParseError("empty Via")
    cseq = message.cseq
    assert cseq is not None
    if isinstance(message, SipRequest) and cseq[1] != message.method:
        raise SipParseError(f"CSeq method {cseq[1]} does not match request method {message.method}")
    message.from_addr  # parsed for its errors
    message.to_addr
    call_id = message.call_id or ""
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"bad Call-ID {call_id[:80]!r}")
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and not (_DIGITS.fullmatch(max_forwards) and int(max_forwards) <= 255):
        raise SipParseError(f"bad Max-Forwards {max_forwards[:20]!r}")
    if isinstance(message, SipRequest):
        message.request_uri  # parsed for its errors (416 for an unknown scheme)
    for name in _ROUTE_HEADERS:
        for value in headers.get_all(name):
            if value != "*" or name != "Contact":
                try:
                    NameAddress.parse(value)
                except AddressError as e:
                    raise _address_error(name, e) from None


def _finish(message: SipRequest | SipResponse, body: bytes) -> SipRequest | SipResponse:
    """Attach the body (cut to Content-Length) and validate; errors carry the message."""
    try:
        length = _content_length(message.headers)
        if length is not None and length > len(body):
            raise SipParseError(f"truncated body: Content-Length {length}, {len(body)} bytes")
        message.body = body if length is None else body[:length]
        _validate(message)
    except SipParseError as e:
        e.message = message
        raise
    return message


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one whole message, as one UDP datagram carries it; raises SipParseError only.

    Accepts CRLF or bare LF line ends, folded headers, compact names and any name case. Without
    Content-Length the body is the rest of the datagram; bytes past Content-Length are dropped
    (RFC 3261 18.3) and a Content-Length past the end is an error.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes is over {MAX_MESSAGE_BYTES}", 513)
    data = bytes(data).lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    if not data:
        raise SipParseError("empty message")
    end = _head_end(data)
    if end is None:  # no blank line: all head, no body
        head, body = data.rstrip(b"\r\n"), b""
    else:
        head, body = data[: end[0]], data[end[1] :]
    return _finish(_parse_head(head), body)


class StreamParser:
    """Frames the messages of one TCP or TLS connection by their Content-Length.

    CRLFs between messages (RFC 5626 keepalive pings) are skipped. Any SipParseError leaves the
    stream unusable, since there is no telling where the next message starts: the caller closes
    the connection. An error that follows good messages in the same `feed` is held back so those
    messages are returned first; the next `feed` raises it.
    """

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._max = max_message
        self._buffer = bytearray()
        self._scanned = 0  # bytes already searched for the blank line, so each byte is seen once
        self._start_checked = False
        self._pending: tuple[SipRequest | SipResponse, int, int] | None = None  # head, its size, length
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Add received bytes; return the messages they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[SipRequest | SipResponse] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except SipParseError as e:
            self._error = e
            self._buffer.clear()
            if not messages:
                raise
        return messages

    def _next(self) -> SipRequest | SipResponse | None:
        buffer = self._buffer
        if self._pending is None:
            skip = _KEEPALIVE.match(buffer).end()
            if skip:
                del buffer[:skip]
                self._scanned = 0
            if not buffer:
                return None
            if not self._start_checked:
                # Garbage (a TLS hello on the TCP port, a scanner) is refused at its first byte
                # or line rather than after max_message bytes.
                if not _TOKEN_START.match(buffer):
                    raise SipParseError(f"stream does not start with a SIP start line: {bytes(buffer[:8])!r}")
                newline = buffer.find(b"\n")
                if newline < 0:
                    if len(buffer) > MAX_HEADER_LINE:
                        raise SipParseError("start line too long", 513)
                    return None
                try:
                    line = buffer[:newline].decode("utf-8").rstrip("\r")
                except UnicodeDecodeError:
                    raise SipParseError("start line is not UTF-8") from None
                _parse_start_line(line)
                self._start_checked = True
            end = _head_end(buffer, max(0, self._scanned - 2))
            if end is None:
                self._scanned = len(buffer)
                if len(buffer) > self._max:
                    raise SipParseError(f"message head over {self._max} bytes", 513)
                return None
            head_end, body_start = end
            if body_start > self._max:
                raise SipParseError(f"message head over {self._max} bytes", 513)
            head = _parse_head(bytes(buffer[:head_end]))
            try:
                length = _content_length(head.headers)
                if length is None:
                    raise SipParseError("missing Content-Length on a stream transport")
                if body_start + length > self._max:
                    raise SipParseError(f"message of {body_start + length} bytes is over {self._max}", 413)
            except SipParseError as e:
                e.message = head
                raise
            self._pending = (head, body_start, length)
        head, head_size, length = self._pending
        if len(buffer) < head_size + length:
            return None
        body = bytes(buffer[head_size : head_size + length])
        del buffer[: head_size + length]
        self._pending = None
        self._scanned = 0
        self._start_checked = False
        return _finish(head, body)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` built per RFC 3261 8.2.6.

    Copies the Vias (in order), From, To, Call-ID and CSeq; adds `;tag=to_tag` to a To without
    a tag (never on 100 Trying, which must not create a dialog); copies Record-Route into
    101-299 responses, which the dialog layer reads its route set from; echoes Timestamp in 100.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range")
    copied: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "To" and to_tag and status != 100 and request.to_addr.tag is None:
            copied.append((name, f"{value};tag={to_tag}"))
        elif (
            name in ("Via", "From", "To", "Call-ID", "CSeq")
            or (name == "Record-Route" and 101 <= status <= 299)
            or (name == "Timestamp" and status == 100)
        ):
            copied.append((name, value))
    response = SipResponse(
        status,
        reason if reason is not None else REASONS.get(status) or REASONS[status // 100 * 100],
        Headers._parsed(copied),
        bytes(body),
    )
    for name, value in headers:
        response.headers.add(name, value)
    if content_type is not None:
        response.headers.set("Content-Type", content_type)
    return response


def new_branch() -> str:
    """A Via branch: the RFC 3261 magic cookie, then 64 random bits."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    """A From/To tag: 40 random bits, as RFC 3261 19.3 asks (at least 32)."""
    return secrets.token_hex(5)


def new_call_id(host: str) -> str:
    """A Call-ID unique in space and time: 128 random bits, then @host."""
    return f"{secrets.token_hex(16)}@{host}" if host else secrets.token_hex(16)
