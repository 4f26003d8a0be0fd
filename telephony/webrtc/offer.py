"""The signalling body of `POST /api/webrtc/offer`, checked before aiortc sees it (sans-IO).

aiortc accepts almost anything and fails later, deep in ICE or DTLS, or with an exception whose
text means nothing to the web page's author. Here a bad offer gets a clear reason and a status:
413 when too large, 400 for anything else (malformed, no audio, no ICE or DTLS, no common codec). Nothing is allocated (no ports, no peer connection) for an offer that fails here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

MAX_BODY_BYTES = 64 * 1024  # a browser's audio-and-data offer is 3-6 KB; candidates add ~100 B each
CODECS = ("opus", "pcmu", "pcma")  # what aiortc decodes and the engine takes


class OfferError(ValueError):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Offer:
    sdp: str
    codecs: tuple[str, ...]  # the audio codecs offered that we can use, in the offer's order
    candidates: int  # gathered ICE candidates carried in the SDP
    data_channel: bool  # an m=application line (the page's event channel)
    language: str = "auto"  # the caller's language: "zh", "en", or "auto" (detected from their speech)
    page_language: str | None = None  # the page's own language: the agent greets in it until the caller speaks


def parse_offer(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> Offer:
    """`{"sdp": "...", "type": "offer"}` → an Offer, or OfferError with why not."""
    if len(body) > max_bytes:
        raise OfferError(413, f"offer too large: {len(body)} bytes (at most {max_bytes})")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfferError(400, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OfferError(400, 'body must be a JSON object {"sdp": ..., "type": "offer"}')
    if doc.get("type") != "offer":
        raise OfferError(400, f'"type" must be "offer", not {doc.get("type")!r}')
    sdp = doc.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError(400, '"sdp" must be a non-empty string')
    offer = check_sdp(sdp)
    language, page = doc.get("language"), doc.get("page_language")
    return replace(offer, language=language if language in ("zh", "en") else "auto",
                   page_language=page if page in ("zh", "en") else None)


def check_sdp(sdp: str) -> Offer:
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v=0"):
        raise OfferError(400, "SDP must start with v=0")
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise OfferError(400, f"SDP line {n} is not type=value: {line[:60]!r}")
    media = [line for line in lines if line.startswith("m=")]
    audio = [m for m in media if m.startswith("m=audio ")]
    if not audio:
        raise OfferError(400, "the offer has no audio (m=audio)")
    # ICE credentials and a DTLS fingerprint, at session level or in a media section: WebRTC requires both
    if not any(line.startswith("a=ice-ufrag:") for line in lines) or not any(line.startswith("a=ice-pwd:") for line in lines):
        raise OfferError(400, "the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferError(400, "the offer has no DTLS fingerprint (a=fingerprint): plain RTP is not WebRTC")
    offered = []
    for line in lines:
        m = re.match(r"a=rtpmap:\d+ ([A-Za-z0-9_.-]+)/", line)
        if m and m.group(1).lower() in CODECS and m.group(1).lower() not in offered:
            offered.append(m.group(1).lower())
    if not offered:
        raise OfferError(400, "no audio codec in common: the agent speaks Opus, PCMU or PCMA")
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    return Offer(sdp, tuple(offered), candidates, any(m.startswith("m=application ") for m in media))
