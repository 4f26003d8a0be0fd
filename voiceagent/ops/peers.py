"""A supervisor's browser on a live call (WebRTC, aiortc): it hears the call through a MixTrack
and, on a takeover, its microphone is sent to the caller through the SupervisedLeg.

A browser that never connects, or vanishes, is noticed (connect timeout, media timeout, the peer
connection's state) and `on_gone` is called: a vanished supervisor gives the call back to the agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from telephony.webrtc.media import hand_over_without_prefetch, to_mono

from .supervision import LiveResampler, MixTrack, SupervisedLeg

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
MEDIA_TIMEOUT_S = 10.0  # a supervisor's microphone sends all the time; this long without a frame: gone
SPEECH_KEPT_S = 120.0  # of the supervisor's speech (its last), kept for the agent's context on release
VOICED_RMS = 0.005  # a 20 ms frame of the supervisor's microphone louder than this is kept as speech
ASR_RATE = 16000


class PeerError(ValueError):
    """The offer cannot be used (no audio, garbage SDP)."""


class SupervisorPeer:
    def __init__(self, operator: str, leg: SupervisedLeg, talk: bool, ice_servers: list[str] | None = None):
        self.operator = operator
        self.leg = leg
        self.talk = talk
        self.track = MixTrack()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in ice_servers or []]))
        self.on_gone: Callable[[], object] | None = None
        self.silenced_ms: float | None = None
        self.first_audio_sent = asyncio.Event()  # the caller was first sent the supervisor's voice
        self.connected = asyncio.Event()
        self._speech: deque[np.ndarray] = deque()
        self._speech_span: tuple[float, float] | None = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def answer(self, offer_sdp: str) -> str:
        pc = self.pc

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio" and self.talk:
                self._tasks.append(asyncio.ensure_future(self._microphone(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self._gone(f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PeerError(f"the offer cannot be used: {exc}") from None
        transceiver = next((t for t in pc.getTransceivers() if t.kind == "audio"), None)
        if transceiver is None:
            raise PeerError("the offer has no audio")
        if self.talk:
            hand_over_without_prefetch(transceiver.receiver)
        transceiver.sender.replaceTrack(self.track)
        transceiver.direction = "sendrecv" if self.talk else "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        self._tasks.append(asyncio.ensure_future(self._watch_connect()))
        return pc.localDescription.sdp

    async def _watch_connect(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._gone("never connected")

    async def _microphone(self, track) -> None:
        """The supervisor's voice: to the caller, and kept (16 kHz) for the agent's context."""
        to_asr: LiveResampler | None = None
        kept = 0
        while not self._closed:
            try:
                frame = await asyncio.wait_for(track.recv(), MEDIA_TIMEOUT_S)
            except (asyncio.TimeoutError, MediaStreamError):
                self._gone("microphone gone")
                return
            try:
                samples = to_mono(frame)
            except ValueError:
                continue
            rate = frame.sample_rate
            try:
                await self.leg.send_supervisor(samples, rate)
            except Exception:  # the caller is gone: the call's end closes this peer
                log.debug("supervisor audio not sent", exc_info=True)
                continue
            if not self.first_audio_sent.is_set():
                self.first_audio_sent.set()
            if to_asr is None:
                to_asr = LiveResampler(rate, ASR_RATE)
            down = to_asr.process(samples)
            if float(np.sqrt(np.mean(np.square(samples)))) > VOICED_RMS:  # their words, not the room
                now = self.leg.clock.now()
                self._speech_span = (self._speech_span[0] if self._speech_span else now, now)
                self._speech.append(down)
                kept += len(down)
                while kept > SPEECH_KEPT_S * ASR_RATE:  # the latest words matter most (what was promised)
                    kept -= len(self._speech.popleft())

    def speech(self) -> tuple[np.ndarray | None, float, float]:
        """What the supervisor's microphone gave while they held the call (16 kHz), and when they spoke."""
        if not self._speech or self._speech_span is None:
            return None, 0.0, 0.0
        return np.concatenate(self._speech), self._speech_span[0], self._speech_span[1]

    def _gone(self, why: str) -> None:
        if self._closed:
            return
        log.info("supervisor %s: %s", self.operator, why)
        if self.on_gone is not None:
            self.on_gone()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.leg.listeners.discard(self.track)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.track.stop()
        try:
            await self.pc.close()
        except Exception:
            log.debug("closing a supervisor's peer connection failed", exc_info=True)
