"""SDP for one audio stream (RFC 4566) and the offer/answer rules a SIP phone call needs (RFC 3264).

Written here rather than on `aiortc.sdp`: that parser is built for WebRTC descriptions and fails
on ordinary SIP ones. It raises AssertionError or StopIteration instead of a parse error (an
`a=fmtp:18 annexb=no` for G.729 without an rtpmap line, which Cisco phones send, ends in
StopIteration), it knows nothing of session-level direction attributes, ptime or the static
payload types of RFC 3551, and its writer needs ICE parameters. A SIP audio description is a
handful of lines; parsing it directly is shorter than patching around that.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from .g711 import CODECS

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
TELEPHONE_EVENT = "telephone-event"
DTMF_PAYLOAD_TYPE = 101  # the dynamic type everyone uses for telephone-event in offers
DTMF_EVENTS = "0-16"  # the 16 keys and hook flash (RFC 4733 3.2)
PTIME_MS = 20

# RFC 3551 table 4: audio payload types that need no rtpmap line. (name, clock rate, channels)
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1), 17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}
_STATIC_BY_NAME = {"PCMU": 0, "PCMA": 8}


class SdpError(ValueError):
    """The description cannot be used: the SIP layer answers 488 Not Acceptable Here with it."""


@dataclass
class AudioCodec:
    """One rtpmap entry. Names are uppercase as in rtpmap ("PCMU"), except "telephone-event"."""

    payload_type: int
    name: str
    clock_rate: int = 8000
    channels: int = 1
    fmtp: str | None = None


@dataclass
class MediaOffer:
    """What a parsed SDP says about its first audio stream."""

    address: str
    port: int
    codecs: list[AudioCodec]
    direction: str  # media-level attribute, else session-level, else sendrecv
    ptime: int | None
    rtcp_port: int | None
    session_id: str
    session_version: int

    @property
    def on_hold(self) -> bool:
        """The remote does not want our audio: sendonly/inactive, the RFC 2543 way (c=0.0.0.0), or
        the stream disabled (port 0)."""
        return self.direction in ("sendonly", "inactive") or _unspecified(self.address) or self.port == 0


@dataclass
class NegotiatedMedia:
    """The outcome of one offer/answer exchange: what RtpStream.start() needs.

    `remote_direction` is the remote's effective direction: an RFC 2543 hold (c=0.0.0.0) counts as
    not receiving and a disabled stream (port 0) as inactive, whatever the attribute says.
    """

    remote_address: str
    remote_port: int
    codec: AudioCodec
    dtmf: AudioCodec | None
    local_direction: str
    remote_direction: str
    ptime: int = PTIME_MS
    remote_rtcp_port: int | None = None  # a=rtcp (RFC 3605); RTCP goes to remote_port + 1 without it


# -- parsing ----------------------------------------------------------------------------------

@dataclass
class _Media:
    """One m= section, attributes uninterpreted until the section is the one we use."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    address: str | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Description:
    session_id: str
    session_version: int
    address: str | None
    attributes: list[tuple[str, str]]
    media: list[_Media]


def _int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SdpError(f"bad {what}: {text!r}") from None
    if value < low or (high is not None and value > high):
        raise SdpError(f"{what} out of range: {value}")
    return value


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value!r}")
    address = parts[2].split("/")[0]  # multicast TTL / count suffix
    # Only address literals: RFC 4566 allows a host name here, but the stream would then hand the
    # name to sendto() for every 20 ms packet (a blocking DNS lookup on the event loop, stalling every
    # call) and could never match a packet's source to it. Phones and trunks send addresses; a name
    # (or junk) is refused with 488 up front instead.
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"c= address is not an IP address: {address!r}") from None
    return address


def _parse(text: str) -> _Description:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("not an SDP (no v= line first)")
    if lines[0] != "v=0":
        raise SdpError(f"unsupported SDP version: {lines[0]!r}")
    origin: tuple[str, int] | None = None
    address: str | None = None
    attributes: list[tuple[str, str]] = []
    media: list[_Media] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            continue  # RFC 4566 5: parsers ignore what they do not understand
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad m= line: {value!r}")
            port = _int(parts[1].split("/")[0], "m= port", 0, 65535)
            media.append(_Media(parts[0], port, parts[2], parts[3:]))
        elif kind == "c":
            if media:
                media[-1].address = _connection(value)
            else:
                address = _connection(value)
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            (media[-1].attributes if media else attributes).append((name.strip(), attr_value.strip()))
        elif kind == "o" and not media:
            parts = value.split()
            if len(parts) < 6:
                raise SdpError(f"bad o= line: {value!r}")
            origin = (parts[1], _int(parts[2], "o= session version"))
    if origin is None:
        raise SdpError("not an SDP (no o= line)")
    return _Description(origin[0], origin[1], address, attributes, media)


def _audio_index(desc: _Description) -> int:
    """The first audio stream over plain RTP, the only transport we speak (no SRTP, no AVPF)."""
    audio = [i for i, m in enumerate(desc.media) if m.kind == "audio"]
    if not audio:
        raise SdpError("no audio stream")
    for i in audio:
        if desc.media[i].proto.upper() == "RTP/AVP":
            return i
    raise SdpError(f"no RTP/AVP audio stream (offered {desc.media[audio[0]].proto})")


def _direction(attributes: list[tuple[str, str]]) -> str | None:
    found = [name for name, _ in attributes if name in DIRECTIONS]
    return found[-1] if found else None


def _codec_name(name: str) -> str:
    return TELEPHONE_EVENT if name.lower() == TELEPHONE_EVENT else name.upper()


def _codecs(m: _Media) -> list[AudioCodec]:
    """The stream's formats in the order of its m= line; a format neither static nor described
    by an rtpmap line is left out (nobody can know what it is)."""
    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, str] = {}
    for name, value in m.attributes:
        if name not in ("rtpmap", "fmtp"):
            continue
        pt_text, _, rest = value.partition(" ")
        pt = _int(pt_text, f"{name} payload type", 0, 127)
        if name == "fmtp":
            fmtp[pt] = rest.strip()
            continue
        bits = rest.strip().split("/")
        if len(bits) < 2 or not bits[0]:
            raise SdpError(f"bad rtpmap: {value!r}")
        channels = _int(bits[2], "rtpmap channels", 1) if len(bits) > 2 else 1
        rtpmap[pt] = (_codec_name(bits[0]), _int(bits[1], "rtpmap clock rate", 1), channels)
    codecs = []
    for fmt in m.formats:
        pt = _int(fmt, "payload type", 0, 127)
        known = rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if known is not None:
            codecs.append(AudioCodec(pt, known[0], known[1], known[2], fmtp.get(pt)))
    return codecs


def _media_offer(desc: _Description, index: int) -> MediaOffer:
    m = desc.media[index]
    address = m.address or desc.address
    if address is None:
        raise SdpError("no connection address (c=) for the audio stream")
    ptime = rtcp_port = None
    for name, value in [*desc.attributes, *m.attributes]:  # media level last: it wins
        if name == "ptime":
            try:
                ptime = int(float(value))
            except ValueError:
                raise SdpError(f"bad ptime: {value!r}") from None
        elif name == "rtcp":
            rtcp_port = _int(value.split()[0] if value else "", "rtcp port", 0, 65535)
    return MediaOffer(address=address, port=m.port, codecs=_codecs(m),
                      direction=_direction(m.attributes) or _direction(desc.attributes) or "sendrecv",
                      ptime=ptime, rtcp_port=rtcp_port, session_id=desc.session_id,
                      session_version=desc.session_version)


def parse_sdp(text: str) -> MediaOffer:
    """The first RTP/AVP audio stream of an SDP; SdpError when there is none or the text is not
    a usable SDP (no connection address, malformed numbers)."""
    desc = _parse(text)
    return _media_offer(desc, _audio_index(desc))


# -- offer/answer -----------------------------------------------------------------------------

def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def _flags(direction: str) -> tuple[bool, bool]:
    """(sends, receives)"""
    if direction not in DIRECTIONS:
        raise ValueError(f"not an SDP direction: {direction!r}")
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _from_flags(send: bool, recv: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly",
            (False, False): "inactive"}[(send, recv)]


def _effective_direction(offer: MediaOffer) -> str:
    """What the remote will really do: an RFC 2543 hold address receives nothing, port 0 is off."""
    if offer.port == 0:
        return "inactive"
    send, recv = _flags(offer.direction)
    return _from_flags(send, recv and not _unspecified(offer.address))


def _local_direction(wanted: str, remote: str) -> str:
    """RFC 3264 6.1: we may send only where they receive and receive only where they send."""
    want_send, want_recv = _flags(wanted)
    remote_send, remote_recv = _flags(remote)
    return _from_flags(want_send and remote_recv, want_recv and remote_send)


class SdpSession:
    """Our side of one call's SDP: one o= session id for the whole call, and the version bumped on
    every description we write (RFC 3264 8), so the peer never mistakes a changed one for a
    repeat."""

    def __init__(self, address: str, port: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 dtmf: bool = True, user: str = "voiceagent"):
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            raise ValueError(f"unsupported codecs {unknown or codecs}; choose from {sorted(CODECS)}")
        self.address = address
        self.port = port
        self.codecs = codecs
        self.dtmf = dtmf
        self.user = user
        self.session_id = str(random.randint(1, 2**31 - 1))
        self.version = 0  # of the last description written
        self._offered_direction = "sendrecv"

    def offer(self, direction: str = "sendrecv") -> str:
        """A new offer with all our codecs (and telephone-event) in our order of preference."""
        _flags(direction)
        self._offered_direction = direction
        codecs = [AudioCodec(_STATIC_BY_NAME[name], name) for name in self.codecs]
        dtmf = AudioCodec(DTMF_PAYLOAD_TYPE, TELEPHONE_EVENT, fmtp=DTMF_EVENTS) if self.dtmf else None
        return self._description([self._audio_lines(self.port, codecs, dtmf, direction)])

    def answer(self, offer_text: str, direction: str | None = None) -> tuple[str, NegotiatedMedia]:
        """Answer a remote offer. The codec is the first of the offer's that we support, with the
        offerer's payload type; the direction is the RFC 3264 complement of theirs, limited to
        `direction` when given (e.g. "sendonly" to put them on hold). Other streams are declined
        with port 0, one m= line per offered one as RFC 3264 6 requires. SdpError when no codec
        fits."""
        desc = _parse(offer_text)
        index = _audio_index(desc)
        offer = _media_offer(desc, index)
        codec = self._first_supported(offer.codecs)
        if codec is None:
            names = ", ".join(c.name for c in offer.codecs) or "none"
            raise SdpError(f"no common codec (offered {names}; we have {', '.join(self.codecs)})")
        dtmf = self._telephone_event(offer.codecs)
        remote = _effective_direction(offer)
        local = _local_direction(direction or "sendrecv", remote)
        sections = []
        for i, m in enumerate(desc.media):
            if i == index and offer.port != 0:
                answer_dtmf = None if dtmf is None else AudioCodec(dtmf.payload_type, TELEPHONE_EVENT, fmtp=DTMF_EVENTS)
                sections.append(self._audio_lines(self.port, [codec], answer_dtmf, local))
            else:  # declined, or disabled by the offerer
                sections.append([f"m={m.kind} 0 {m.proto} {' '.join(m.formats[:1]) or '0'}"])
        media = NegotiatedMedia(remote_address=offer.address, remote_port=offer.port, codec=codec, dtmf=dtmf,
                                local_direction=local, remote_direction=remote, remote_rtcp_port=offer.rtcp_port)
        return self._description(sections), media

    def accept_answer(self, answer_text: str) -> NegotiatedMedia:
        """The media that the answer to our last offer() settles on. SdpError when the answer
        declines the audio stream or picks nothing we offered."""
        desc = _parse(answer_text)
        answer = _media_offer(desc, _audio_index(desc))
        if answer.port == 0:
            raise SdpError("the answer declined the audio stream")
        codec = self._first_supported(answer.codecs)
        if codec is None:
            raise SdpError(f"the answer has none of our codecs ({', '.join(c.name for c in answer.codecs) or 'none'})")
        remote = _effective_direction(answer)
        return NegotiatedMedia(remote_address=answer.address, remote_port=answer.port, codec=codec,
                               dtmf=self._telephone_event(answer.codecs),
                               local_direction=_local_direction(self._offered_direction, remote),
                               remote_direction=remote, remote_rtcp_port=answer.rtcp_port)

    def _first_supported(self, offered: list[AudioCodec]) -> AudioCodec | None:
        return next((c for c in offered if c.name in self.codecs and c.clock_rate == 8000 and c.channels == 1), None)

    def _telephone_event(self, offered: list[AudioCodec]) -> AudioCodec | None:
        if not self.dtmf:
            return None
        return next((c for c in offered if c.name == TELEPHONE_EVENT and c.clock_rate == 8000), None)

    def _audio_lines(self, port: int, codecs: list[AudioCodec], dtmf: AudioCodec | None, direction: str) -> list[str]:
        formats = [*codecs, *([dtmf] if dtmf else [])]
        lines = [f"m=audio {port} RTP/AVP {' '.join(str(c.payload_type) for c in formats)}"]
        lines += [f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}" for c in formats]
        lines += [f"a=fmtp:{c.payload_type} {c.fmtp}" for c in formats if c.fmtp]
        return [*lines, f"a=ptime:{PTIME_MS}", f"a={direction}"]

    def _description(self, sections: list[list[str]]) -> str:
        self.version += 1
        family = "IP6" if ":" in self.address else "IP4"
        lines = ["v=0", f"o={self.user} {self.session_id} {self.version} IN {family} {self.address}",
                 f"s={self.user}", f"c=IN {family} {self.address}", "t=0 0"]
        for section in sections:
            lines += section
        return "\r\n".join(lines) + "\r\n"
