"""The media side of a SIP call: SDP offer/answer for audio (sdp), RTP/RTCP with a jitter buffer
and 20 ms pacing (stream, jitter), RFC 4733 key presses (dtmf) and G.711 (g711)."""

from .dtmf import DtmfDigitEvent
from .sdp import AudioCodec, MediaOffer, NegotiatedMedia, SdpError, SdpSession, parse_sdp
from .stream import RtpStats, RtpStream

__all__ = ["AudioCodec", "DtmfDigitEvent", "MediaOffer", "NegotiatedMedia", "RtpStats", "RtpStream", "SdpError",
           "SdpSession", "parse_sdp"]
