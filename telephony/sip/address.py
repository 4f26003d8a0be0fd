"""SIP addresses (RFC 3261 section 19 and 20): URIs, name-addr headers and Via.

These values decide where a request goes and which dialog or transaction a message belongs to,
so they are parsed into small typed objects once, at the edge, instead of being picked at with
string searches in the layers above. Parsing is strict where a wrong guess would misroute a
message (IPv6 without brackets, `?` in a bare Contact, a port past 65535) and lenient where real
phones stray harmlessly from the grammar (underscores in host names, empty `;` parameters in a
URI, UTF-8 in an unquoted display name).

URI components are stored unescaped (`%40` becomes `@`) and escaped again by `str()`, so two
spellings of one URI compare equal; header parameters are stored as written (a quoted value
keeps its quotes) because their grammar differs from header to header.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote


class AddressError(ValueError):
    """A URI, name-addr or Via that does not follow the RFC 3261 grammar."""


class UnsupportedSchemeError(AddressError):
    """A well-formed URI whose scheme is not sip, sips or tel; a request to one is answered 416."""


SCHEMES = ("sip", "sips", "tel")

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = f"[{TOKEN_CHARS}]+"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_URI_FORBIDDEN = re.compile(r'[\x00-\x20\x7f<>"]')
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 1123 host names plus "_", which some PBXs use in generated host names.
_HOSTNAME = re.compile(r"[A-Za-z0-9_\-.]+")
_PORT = re.compile(r"[0-9]{1,5}")

# Characters each URI component may carry unescaped (RFC 3261 25.1); str() escapes the rest.
_MARK = "-_.!~*'()"
_USER_SAFE = _MARK + "&=+$,;?/"
_TEL_SAFE = _MARK + "&=+$,/"  # a tel number ends at ";" or "?"
_PASSWORD_SAFE = _MARK + "&=+$,"
_PARAM_SAFE = _MARK + "[]/:&+$"
_HEADER_SAFE = _MARK + "[]/?:+$"

# One `;name[=value]` header parameter, with the LWS that RFC 3261 allows around ";" and "=".
_PARAM = re.compile(
    rf'[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s;,"<>]*))?[ \t]*', re.S
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_NEEDS_QUOTED_PAIR = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')
# An unquoted display name (tokens and LWS) up to "<"; non-ASCII is tolerated because phones
# send UTF-8 names unquoted although the grammar wants them quoted.
_UNQUOTED_DISPLAY = re.compile(rf"((?:[{TOKEN_CHARS} \t]|[^\x00-\x7f])*)<")
_VIA = re.compile(
    rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)(?:[ \t]*:[ \t]*([0-9]+))?"
)
# Elements of a comma-separated header: runs of quoted strings, <...> and anything but `",<`.
_LIST_ELEMENT = re.compile(r'(?:"(?:[^"\\]|\\.)*(?:"|\\?\Z)|<[^>]*>?|[^",<]+)+', re.S)


def _unescape(text: str) -> str:
    """%-decode one URI component. Bytes that are not UTF-8 survive as surrogates, so str()
    writes back exactly the escapes it was given."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise AddressError(f"bad %-escape in {text!r}")
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


def _check_host(host: str) -> None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "")
        except ValueError:
            raise AddressError(f"bad IPv6 reference {host!r}") from None
    elif not _HOSTNAME.fullmatch(host):
        raise AddressError(f"bad host {host!r}")


def _parse_port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise AddressError(f"bad port {text!r}")
    return int(text)


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"unterminated IPv6 reference in {text!r}")
        host, after = text[: end + 1], text[end + 1 :]
    else:
        host = text.partition(":")[0]
        after = text[len(host) :]
    _check_host(host)
    if not after:
        return host, None
    if after[0] != ":":
        raise AddressError(f"junk after host in {text!r}")
    return host, _parse_port(after[1:])


def _split_tail(text: str) -> tuple[str, str, str]:
    """Split `head;params?headers` (the parts after the host, or after a tel number)."""
    head, _, headers = text.partition("?")
    head, _, params = head.partition(";")
    return head, params, headers


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        if not part:  # "sip:a@b;" and ";;" are harmless and common enough to accept
            continue
        name, eq, value = part.partition("=")
        name = _unescape(name).lower()
        if not name:
            raise AddressError(f"URI parameter without a name in {text!r}")
        params[name] = _unescape(value) if eq else None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            headers[_unescape(name)] = _unescape(value)
    return headers


def _parse_params(text: str) -> dict[str, str | None]:
    """Header parameters (`;tag=x;lr;q = 0.5`): names lowercased, values as written."""
    params: dict[str, str | None] = {}
    pos, end = 0, len(text)
    while pos < end:
        m = _PARAM.match(text, pos)
        if m is None:
            if text[pos:].strip(" \t"):
                raise AddressError(f"bad parameters {text[pos:]!r}")
            break
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _quote_display(display: str) -> str:
    # CR and LF cannot be escaped inside a quoted string (RFC 3261 25.1 quoted-pair); as folded
    # whitespace they meant a space anyway.
    display = display.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_QUOTED_PAIR.sub(lambda m: "\\" + m.group(), display) + '"'


@dataclass
class SipUri:
    """A sip:, sips: or tel: URI. For tel: the number is kept in `user` and `host` is empty."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""  # IPv6 keeps its brackets: "[2001:db8::1]"
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # keys lowercased; ;lr -> None
    headers: dict[str, str] = field(default_factory=dict)  # ?subject=x&priority=urgent

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI as found in a request line or between < and >; raises AddressError
        (UnsupportedSchemeError for a well-formed URI of another scheme)."""
        m = _SCHEME.match(text)
        if m is None:
            raise AddressError(f"not a URI: {text!r}")
        scheme = m.group(1).lower()
        if scheme not in SCHEMES:
            raise UnsupportedSchemeError(f"unsupported URI scheme {scheme!r}")
        if _URI_FORBIDDEN.search(text):
            raise AddressError(f"space, control character, <, > or quote in URI {text!r}")
        rest = text[m.end() :]
        if scheme == "tel":
            number, params, headers = _split_tail(rest)
            if not number:
                raise AddressError(f"tel URI without a number: {text!r}")
            return cls(
                "tel",
                _unescape(number),
                params=_parse_uri_params(params),
                headers=_parse_uri_headers(headers),
            )
        user = password = None
        # No other component may hold an unescaped "@", while the user part may hold "?" and
        # ";" (RFC 4475 3.1.1.2), so the first "@" is the only safe end of the userinfo.
        userinfo, at, hostpart = rest.partition("@")
        if at:
            name, colon, secret = userinfo.partition(":")
            if not name:
                raise AddressError(f"empty user part in {text!r}")
            user = _unescape(name)
            password = _unescape(secret) if colon else None
        else:
            hostpart = rest
        hostport, params, headers = _split_tail(hostpart)
        host, port = _split_hostport(hostport)
        return cls(
            scheme, user, password, host, port, _parse_uri_params(params), _parse_uri_headers(headers)
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = "tel:" + _escape(self.user or "", _TEL_SAFE)
        else:
            out = self.scheme + ":"
            if self.user is not None:
                out += _escape(self.user, _USER_SAFE)
                if self.password is not None:
                    out += ":" + _escape(self.password, _PASSWORD_SAFE)
                out += "@"
            out += self.host if self.port is None else f"{self.host}:{self.port}"
        for name, value in self.params.items():
            out += ";" + _escape(name, _PARAM_SAFE)
            if value is not None:
                out += "=" + _escape(value, _PARAM_SAFE)
        if self.headers:
            out += "?" + "&".join(
                f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers.items()
            )
        return out

    @property
    def transport(self) -> str | None:
        """The `;transport=` parameter, lowercased ("udp", "tcp", "tls", "ws"), or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def host_port(self, default: int = 5060) -> tuple[str, int]:
        """Where to send: the host without IPv6 brackets, and the port or `default` (pass 5061
        for sips)."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else default


@dataclass
class NameAddress:
    """The value of From, To, Contact, Route, Record-Route, Refer-To or Referred-By."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # after the ">": tag, expires, q

    @classmethod
    def parse(cls, text: str) -> NameAddress:
        """Parse `"Bob" <sip:bob@b>;tag=x`, `Bob <sip:bob@b>`, `<sip:bob@b>` or the bare
        addr-spec `sip:bob@b;tag=x`, whose parameters all belong to the header (RFC 3261 20.10)."""
        s = text.strip(" \t")
        if s.startswith('"'):
            m = _QUOTED.match(s)
            if m is None:
                raise AddressError(f"unterminated quoted display name in {text!r}")
            rest = s[m.end() :].lstrip(" \t")
            if not rest.startswith("<"):
                raise AddressError(f"display name without <URI> in {text!r}")
            return cls._angle(rest, _QUOTED_PAIR.sub(r"\1", m.group(1)))
        m = _UNQUOTED_DISPLAY.match(s)
        if m is not None:
            return cls._angle(s[m.end() - 1 :], " ".join(m.group(1).split()) or None)
        spec = s.partition(";")[0]
        if "," in spec or "?" in spec:
            raise AddressError(f"a URI with ',' or '?' must be inside <> (RFC 3261 20.10): {text!r}")
        return cls(SipUri.parse(spec.rstrip(" \t")), None, _parse_params(s[len(spec) :]))

    @classmethod
    def _angle(cls, text: str, display: str | None) -> NameAddress:
        end = text.find(">")
        if end < 0:
            raise AddressError(f"missing '>' in {text!r}")
        return cls(SipUri.parse(text[1:end]), display, _parse_params(text[end + 1 :]))

    def __str__(self) -> str:
        out = f"<{self.uri}>{_format_params(self.params)}"
        return out if self.display is None else f"{_quote_display(self.display)} {out}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddress:
        """A copy carrying `;tag=tag` (a UAS tags the To of its responses)."""
        other = copy.deepcopy(self)
        other.params["tag"] = tag
        return other


@dataclass
class Via:
    """One Via entry: how and where the response to a request must go back (RFC 3261 18.2.2)."""

    transport: str  # uppercased: "UDP", "TCP", "TLS", "WS", "WSS"
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # branch, received, rport, maddr

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm (`SIP/2.0/UDP host:port;branch=...`), with the LWS that RFC 3261
        allows around "/" and ":"; a header holding several is split with split_header_list."""
        m = _VIA.match(text)
        if m is None:
            raise AddressError(f"bad Via {text!r}")
        protocol, version, transport, host, port = m.groups()
        if protocol.upper() != "SIP" or version != "2.0":
            raise AddressError(f"Via for {protocol}/{version}, not SIP/2.0")
        _check_host(host)
        return cls(
            transport.upper(),
            host,
            None if port is None else _parse_port(port),
            _parse_params(text[m.end() :]),
        )

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hostport}{_format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements, keeping commas inside quoted
    strings and <...> (a display name "Doe, John", a URI parameter list). Empty elements, which
    RFC 3261's #rule allows, are dropped."""
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    return [s for s in (e.strip() for e in _LIST_ELEMENT.findall(value)) if s]
