"""Browser calls over WebRTC with the agent on them: the glue between aiortc (telephony/webrtc) and
the real-time engine, behind `POST /api/webrtc/offer` of the HTTP server.

    page ──offer──► BrowserService.open ─► RTCPeerConnection ─► WebRtcLeg ─► CallSession ─► CallStore
         ◄─answer──                          │  "events" data channel ◄── the session's events
                                             └─ transfer: the SIP side calls the human, audio bridged

The page learns what happens on its "events" data channel (JSON, one object per message):
    {"type": "hello", "session_id", "call_id"}
    {"type": "state", "state": "listening" | "thinking" | "speaking" | "human" | "ended"}
The offer may carry "language" (the caller's: zh | en | auto) and "page_language" (the greeting's).
    {"type": "transcript", "role": "caller", "text", "final": false|true, "language"}
    {"type": "transcript", "role": "agent", "text", "turn"}
    {"type": "interrupted", "heard"}  (the caller cut the agent off; what they heard of its reply)
    {"type": "handoff", "status": "connecting" | "connected" | "failed", "reason", "ticket"}
    {"type": "ended", "by", "reason", "call_id"}
and sends {"type": "hangup"} or {"type": "dtmf", "digit": "5"}.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender

from telephony.webrtc.leg import TransferRefused, WebRtcLeg
from telephony.webrtc.media import AgentAudioTrack, hand_over_without_prefetch
from telephony.webrtc.offer import Offer, OfferError

from .config import Config
from .events import Event, FinalTranscript, Interruption, PartialTranscript, ReplyText, TransferRequested
from .record import CallRecord
from .runtime import Runtime
from .engine import Channel, SessionOptions, run_call
from .store import CallStore
from .textnorm import mask_pii

log = logging.getLogger(__name__)

DIGITS = set("0123456789*#ABCD")


class ServiceUnavailable(Exception):
    def __init__(self, reason: str, retry_after_s: int = 5):
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass
class BrowserCall:
    session_id: str
    pc: RTCPeerConnection
    leg: WebRtcLeg
    origin: str
    remote: str
    created: float = field(default_factory=time.monotonic)
    call_id: str = ""
    channel: object | None = None  # the page's "events" RTCDataChannel, once open
    pending: list[str] = field(default_factory=list)  # events for the page before its channel opened
    task: asyncio.Task | None = None
    codec: str = ""
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    record: CallRecord | None = None

    def tell(self, message: dict) -> None:
        text = json.dumps(message, ensure_ascii=False)
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(text)
            except Exception:  # the page is gone; the leg notices on its own
                log.debug("webrtc %s: event not sent", self.session_id, exc_info=True)
        elif len(self.pending) < 200:
            self.pending.append(text)


class BrowserService:
    """Browser sessions: limits, origin checks, ICE/DTLS and media timeouts, one CallSession each."""

    def __init__(self, config: Config, runtime: Runtime | Callable[[], Runtime | None], store: CallStore | None = None,
                 phone=None, http_host: str = "127.0.0.1"):
        """`phone`: the SIP side (voiceagent.phone.PhoneService) when it runs: a human then joins a
        browser call over SIP (bridged); without it a handoff becomes a callback request."""
        self.config = config
        self.web = config.webrtc
        self._runtime = runtime if callable(runtime) else (lambda: runtime)
        self.store = store
        self.phone = phone
        self.calls: dict[str, BrowserCall] = {}
        self.records: list[CallRecord] = []  # finished sessions of this process, newest last (for tests)
        self.counters = {"offers": 0, "rejected": 0, "connect_timeouts": 0, "completed": 0, "pending_refused": 0}
        use_ice_hosts(self.web.ice_host_addresses or (["127.0.0.1"] if _is_loopback(http_host) else []))

    # -- signalling ---------------------------------------------------------------------------
    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Same origin (the page came from this server), an allowed embedding site, or no Origin at
        all (not a browser: curl, a test client; origin checks only protect against other pages)."""
        if not origin:
            return True
        allowed = self.web.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return host is not None and origin.split("://", 1)[-1] == host

    async def open(self, offer: Offer, origin: str = "", remote: str = "") -> tuple[str, str]:
        """Answer a page's offer and start its call. Returns (session id, answer SDP). Raises
        OfferError for an offer aiortc cannot use, ServiceUnavailable when full or still loading."""
        self.counters["offers"] += 1
        runtime = self._runtime()
        if runtime is None:
            raise ServiceUnavailable("models are still loading", 5)
        if len(self.calls) >= self.web.max_sessions:
            self.counters["rejected"] += 1
            raise ServiceUnavailable(f"all {self.web.max_sessions} browser lines are busy", 15)
        # offers that never connect hold a line until connect_timeout_s: one address gets only a few
        pending = sum(1 for c in self.calls.values() if c.remote == remote and not c.connected.is_set())
        if remote and pending >= self.web.max_pending_per_client:
            self.counters["rejected"] += 1
            self.counters["pending_refused"] += 1
            raise ServiceUnavailable(f"{pending} calls from this address are still connecting",
                                     max(1, round(self.web.connect_timeout_s)))
        servers = [RTCIceServer(url) for url in self.web.ice_servers]  # [] (not None): aiortc would add Google's STUN
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        session_id = uuid.uuid4().hex[:16]
        out = AgentAudioTrack()
        leg = WebRtcLeg(out, self._connector(session_id) if self._can_bridge() else None, self.web.media_timeout_s)
        call = BrowserCall(session_id, pc, leg, origin, remote)
        leg.on_transfer = lambda entry: call.tell({
            "type": "handoff", "status": "connected" if entry.get("status") == "completed" else "failed",
            "reason": entry.get("status")})
        out.on_playing = lambda playing: leg.gone.is_set() or call.tell(
            {"type": "state", "state": "speaking" if playing else "listening"})
        self.calls[session_id] = call  # counted from now: a flood of offers meets the limit at once
        try:
            self._wire(call)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise OfferError(400, f"the offer cannot be used: {exc}") from None
            transceiver = next((t for t in pc.getTransceivers() if t.kind == "audio"), None)
            if transceiver is None:
                raise OfferError(400, "the offer has no audio")
            self._prefer_codecs(transceiver)
            hand_over_without_prefetch(transceiver.receiver)
            pc.addTrack(out)
            await pc.setLocalDescription(await pc.createAnswer())
            if not _has_candidates(pc.localDescription.sdp):
                raise ServiceUnavailable("no address to offer ICE candidates on ([webrtc] ice_host_addresses)", 60)
        except BaseException:
            self.calls.pop(session_id, None)
            await pc.close()
            raise
        call.task = asyncio.get_running_loop().create_task(self._run(call, runtime, offer),
                                                           name=f"webrtc-{session_id}")
        log.info("webrtc %s: offer from %s (origin %s, codecs %s)", session_id, mask_pii(remote), origin or "-",
                 ",".join(offer.codecs))
        return session_id, pc.localDescription.sdp

    def _prefer_codecs(self, transceiver) -> None:
        want = [c.lower() for c in self.web.codecs]
        caps = RTCRtpSender.getCapabilities("audio").codecs
        ordered = [c for name in want for c in caps if c.mimeType.lower() == f"audio/{name}"]
        if ordered:
            transceiver.setCodecPreferences(ordered)

    def _wire(self, call: BrowserCall) -> None:
        pc, leg = call.pc, call.leg

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                leg.attach(track)

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label != "events":
                return
            call.channel = channel

            @channel.on("message")
            def on_message(message) -> None:
                self._from_page(call, message)

            def flush() -> None:
                for text in call.pending:
                    channel.send(text)
                call.pending.clear()

            if channel.readyState == "open":
                flush()
            else:
                channel.on("open", flush)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.info("webrtc %s: connection %s", call.session_id, state)
            if state == "connected":
                call.connected.set()
            elif state in ("failed", "closed"):
                leg.close(f"connection_{state}")

    def _from_page(self, call: BrowserCall, message) -> None:
        """A page's message: hangup or a key. Anything else is logged and ignored."""
        try:
            doc = json.loads(message) if isinstance(message, str) and len(message) < 4096 else None
        except json.JSONDecodeError:
            doc = None
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "hangup":
            call.leg.close("browser_hangup")
        elif kind == "dtmf" and isinstance(doc.get("digit"), str) and doc["digit"] in DIGITS:
            call.leg.key(doc["digit"])
        else:
            log.info("webrtc %s: page message ignored: %.60r", call.session_id, message)

    # -- the call -----------------------------------------------------------------------------
    async def _run(self, call: BrowserCall, runtime: Runtime, offer: Offer) -> None:
        leg, pc = call.leg, call.pc
        try:
            connected = asyncio.ensure_future(call.connected.wait())
            gone = asyncio.ensure_future(leg.gone.wait())
            await asyncio.wait([connected, gone], timeout=self.web.connect_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            connected.cancel(), gone.cancel()
            if not call.connected.is_set():
                self.counters["connect_timeouts"] += not leg.gone.is_set()
                log.info("webrtc %s: never connected (%s)", call.session_id, leg.end_reason or "ICE/DTLS timeout")
                return
            call.codec = _codec_of(pc.localDescription.sdp)
            greet_in = offer.page_language if offer.language == "auto" else None  # the caller's speech decides after

            def started(session) -> None:
                call.call_id = session.call_id
                call.tell({"type": "hello", "session_id": call.session_id, "call_id": session.call_id})
                call.tell({"type": "state", "state": "listening"})

            async def release() -> None:
                if leg.human is not None:  # bridged to a person: the page stays on until either side ends
                    call.tell({"type": "state", "state": "human"})
                    await leg.wait_done()

            def describe() -> dict:
                return {"kind": "webrtc", "session_id": call.session_id, "origin": call.origin,
                        "remote": mask_pii(call.remote), "codec": call.codec, "end_reason": leg.end_reason,
                        "media": leg.stats(), "transfers": leg.transfer_log}

            # as long as [call] max_call_s at most, like a phone call
            record = await run_call(runtime, leg, SessionOptions(language=offer.language, call=self.config.call,
                                                                 greeting_language=greet_in),
                                    Channel("webrtc", describe, started, release,
                                            observers=(lambda event: self._on_event(call, event),),
                                            records=self.records), self.store)
            call.record = record
            call.tell({"type": "ended", "by": record.outcome.ended_by, "reason": record.outcome.end_reason,
                       "call_id": record.call_id})
            self.counters["completed"] += 1
            log.info("webrtc %s: call %s ended (%s)", call.session_id, record.call_id, leg.end_reason)
        except Exception:
            log.exception("webrtc %s: session failed", call.session_id)
        finally:
            call.tell({"type": "state", "state": "ended"})
            await asyncio.sleep(0.1)  # let the last events leave before the channel closes
            await leg.aclose()
            await pc.close()
            self.calls.pop(call.session_id, None)

    def _on_event(self, call: BrowserCall, event: Event) -> None:
        if isinstance(event, PartialTranscript) and event.text.strip():
            call.tell({"type": "transcript", "role": "caller", "text": event.text, "final": False,
                       "language": event.language})
        elif isinstance(event, FinalTranscript):
            call.tell({"type": "transcript", "role": "caller", "text": event.text, "final": True,
                       "language": event.language})
            call.tell({"type": "state", "state": "thinking"})
        elif isinstance(event, ReplyText):
            call.tell({"type": "transcript", "role": "agent", "text": event.text, "turn": event.turn})
        elif isinstance(event, Interruption):
            call.tell({"type": "interrupted", "heard": event.heard_text})
        elif isinstance(event, TransferRequested):
            call.tell({"type": "handoff", "status": "connecting", "reason": event.reason})
        # "speaking" comes from the track, when the agent's audio is actually going out; how a
        # transfer went, from the leg (on_transfer)

    def _can_bridge(self) -> bool:
        return self.phone is not None and bool(self.phone.queues)

    def _connector(self, session_id: str):
        async def connect(target: str, summary: dict | None):
            phone = self.phone
            uri = phone.queues.get(target, target)
            if not uri.startswith(("sip:", "sips:")) or not phone.ua.transfer_allowed(uri):
                raise TransferRefused(f"{uri} is not in the transfer allow-list")
            call_id = str((summary or {}).get("call_id", session_id))
            return await phone.ua.invite(uri, ring_timeout_s=phone.sip.ring_timeout_s,
                                         headers=[("X-Voiceagent-Call", call_id)])
        return connect

    async def hangup(self, session_id: str) -> bool:
        call = self.calls.get(session_id)
        if call is None:
            return False
        call.leg.close("browser_hangup")
        return True

    def status(self) -> dict:
        return {"active": len(self.calls), "max_sessions": self.web.max_sessions, **self.counters}

    async def close(self) -> None:
        """Shutdown: every browser call ends (its record is kept)."""
        calls = list(self.calls.values())
        for call in calls:
            call.leg.close("shutdown")
        tasks = [c.task for c in calls if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)


def _codec_of(answer_sdp: str) -> str:
    """The codec our answer chose: the first format of its audio line."""
    lines = answer_sdp.splitlines()
    for line in lines:
        if line.startswith("m=audio "):
            fields = line.split()
            pt = fields[3] if len(fields) > 3 else ""
            for rtpmap in lines:
                if rtpmap.startswith(f"a=rtpmap:{pt} "):
                    return rtpmap.split(" ", 1)[1].split("/", 1)[0]
    return ""


def _has_candidates(sdp: str) -> bool:
    return "a=candidate:" in sdp


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def use_ice_hosts(addresses: list[str]) -> None:
    """Which local addresses ICE offers. aioice offers every interface's address but 127.0.0.1 and
    has no setting for it; a server on loopback (the default, and the tests' network namespace)
    has only 127.0.0.1 to offer, and a server with several interfaces may want to offer one."""
    import aioice.ice

    original = getattr(aioice.ice, "_voiceagent_original_hosts", None) or aioice.ice.get_host_addresses
    aioice.ice._voiceagent_original_hosts = original
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
            a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
    else:
        aioice.ice.get_host_addresses = original
