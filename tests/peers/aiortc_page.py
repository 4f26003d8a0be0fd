"""A browser page played by aiortc: what the widget does (offer with gathered candidates posted to
``/api/webrtc/offer``, a microphone track, the "events" data channel, the agent's audio heard),
with the same DTLS-SRTP, Opus and SCTP a browser uses, at a fraction of a browser's CPU.

The whole-call tests use it where Chromium is not the point, and ``benchmarks/bench_webrtc.py
--peer aiortc`` uses it to load the agent with many sessions without Chromium's half a core per page.
The microphone is paced at 20 ms and everything heard is kept with its arrival time, so both sides'
levels can be put on one clock (``levels``), as the Chromium page does with Web Audio."""

from __future__ import annotations

import asyncio
import fractions
import json
import time

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony.webrtc.media import FRAME, RATE, InboundAudio, hand_over_without_prefetch
from voiceagent.audio import float_to_pcm16, load_audio
from voiceagent.audio.frames import window_rms
from voiceagent.browser import use_ice_hosts


def recording(path, lead_s: float, tail_s: float) -> np.ndarray:
    """A caller's recording as a page's microphone plays it: 16 kHz, `lead_s` of silence before
    (the call connects) and `tail_s` after (time for the answer)."""
    audio = load_audio(path, RATE).samples
    return np.concatenate([np.zeros(int(lead_s * RATE), np.float32), audio, np.zeros(int(tail_s * RATE), np.float32)])


class WavTrack(MediaStreamTrack):
    """A page's microphone playing a recording (16 kHz), then silence, paced at 20 ms."""

    kind = "audio"

    def __init__(self, samples: np.ndarray):
        super().__init__()
        self.samples = samples
        self.pcm = float_to_pcm16(samples)
        self.pos = 0
        self.started: float | None = None  # time.monotonic() of the first frame

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        due = self.started + self.pos / RATE
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        chunk = self.pcm[self.pos:self.pos + FRAME]
        chunk = np.pad(chunk, (0, FRAME - len(chunk))) if len(chunk) < FRAME else chunk
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.pos, fractions.Fraction(1, RATE)
        self.pos += FRAME
        return frame

    @property
    def done(self) -> bool:
        return self.pos >= len(self.pcm)


class Page:
    """What the widget does, with aiortc: microphone, "events" channel, the agent's audio heard."""

    def __init__(self, samples: np.ndarray | None = None, media: bool = True):
        use_ice_hosts(["127.0.0.1"])  # aioice leaves loopback out, and loopback is all a peer here has
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = WavTrack(samples if samples is not None else np.zeros(RATE, np.float32))
        if media:
            self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events")
        self.messages: list[dict] = []
        self.heard: list[np.ndarray] = []
        self.heard_at: list[float] = []  # time.monotonic() when each piece of `heard` arrived
        self.session_id = None
        self._readers = []
        self.channel.on("message", lambda m: self.messages.append(json.loads(m)))

        @self.pc.on("track")
        def on_track(track):
            self._readers.append(asyncio.ensure_future(self._hear(track)))

    async def _hear(self, track):
        inbound = InboundAudio()
        try:
            while True:
                samples = inbound.convert(await track.recv())
                self.heard.append(samples)
                self.heard_at.append(time.monotonic())
        except MediaStreamError:
            pass

    async def offer(self, http, **extra):
        """POST the offer (an httpx.AsyncClient on the agent's base URL); the answer is applied."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await http.post("/api/webrtc/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer",
                                                              **extra})
        if response.status_code == 200:
            self.session_id = response.json()["session_id"]
            await self.pc.setRemoteDescription(RTCSessionDescription(response.json()["sdp"], "answer"))
            for transceiver in self.pc.getTransceivers():  # hears as soon as a browser would, not 80 ms later
                hand_over_without_prefetch(transceiver.receiver)
        return response

    def said(self, role: str, final_only: bool = True) -> list[str]:
        return [m["text"] for m in self.messages if m.get("type") == "transcript" and m["role"] == role
                and (m.get("final", True) or not final_only)]

    def states(self) -> list[str]:
        return [m["state"] for m in self.messages if m.get("type") == "state"]

    @property
    def call_id(self) -> str | None:
        return next((m.get("call_id") for m in self.messages if m.get("type") == "hello"), None)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.float32)

    def levels(self, frame_s: float = 0.01) -> tuple[list[float], list[float]]:
        """RMS per `frame_s` of the microphone (as sent) and of the agent's audio (as it arrived),
        on one clock from the microphone's first frame: what chromium.voice_to_voice takes."""
        if self.mic.started is None:
            return [], []
        step = int(RATE * frame_s)
        local = window_rms(self.mic.samples[:self.mic.pos], step).tolist()
        remote = np.zeros(len(local) + int(30 / frame_s), np.float32)
        for samples, arrived in zip(self.heard, self.heard_at):
            start = arrived - len(samples) / RATE - self.mic.started
            for i, level in enumerate(window_rms(samples, step)):
                k = int(round(start / frame_s)) + i
                if 0 <= k < len(remote):
                    remote[k] = max(remote[k], level)
        return local, remote.tolist()

    async def close(self):
        await self.pc.close()
        for r in self._readers:
            r.cancel()
