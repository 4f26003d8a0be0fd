"""A person on a live call: listen-in and takeover, on any channel.

Every call's leg is wrapped in a `SupervisedLeg` (engine/run.py, through the hub): it hands the
caller's frames to the session as before and copies both sides to whoever is watching (the
recorder, the listeners' mixed tracks). On a takeover the agent's audio is dropped at the leg (the
session has also dropped what it had queued) and the supervisor's microphone goes to the caller
instead; the caller keeps reaching the session, which transcribes them but does not answer.

    caller ─► leg.receive ─► SupervisedLeg ─┬─► session (ASR; answers unless taken over)
                                            ├─► recorder (left)   ├─► listeners' MixTrack
    session ─► send ─► SupervisedLeg ─┬─────┴─► recorder (right)  │   (browser, recvonly)
       (dropped while taken over)     └─► leg ─► caller           │
    supervisor's mic (WebRTC) ─► resample ─► leg ─► caller, recorder (right), listeners
"""

from __future__ import annotations

import fractions
import logging
from typing import AsyncIterator

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony.audio import AudioFrame, float_to_pcm16, pcm16_to_float
from telephony.webrtc.media import FramePacer
from telephony.leg import CallLeg, DtmfDigit, LegWrapper

log = logging.getLogger(__name__)

RATE = 16000  # what the supervisor's browser is sent (Opus resamples it inside the codec)
FRAME = RATE // 50
MAX_BUFFER = RATE // 2  # a side more than 0.5 s ahead is trimmed: a listener never drifts behind the call


class LiveResampler:
    """A live stream's rate change with a few ms of delay, in steady 20 ms pieces (libswresample,
    through PyAV): soxr's streaming resampler hands its output out in ~100 ms bursts, which a
    person hears as a late, choppy voice."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._swr = None if src_rate == dst_rate else av.AudioResampler(format="s16", layout="mono", rate=dst_rate)

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self._swr is None or len(samples) == 0:
            return np.asarray(samples, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(float_to_pcm16(samples).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.src_rate
        out = [pcm16_to_float(f.to_ndarray().reshape(-1)) for f in self._swr.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class MixTrack(MediaStreamTrack):
    """What a supervisor hears: the caller and the agent mixed, 20 ms at a time, paced like a sound
    card (aiortc pulls `recv()` and sends at once)."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._sides: dict[str, np.ndarray] = {"caller": np.zeros(0, np.float32), "agent": np.zeros(0, np.float32)}
        self._resamplers: dict[tuple[str, int], LiveResampler] = {}
        self._pace = FramePacer(RATE, FRAME)
        self.frames_sent = 0

    def push(self, side: str, frame: AudioFrame) -> None:
        samples = np.asarray(frame.samples, dtype=np.float32)
        if frame.sample_rate != RATE:
            key = (side, frame.sample_rate)
            if key not in self._resamplers:
                self._resamplers[key] = LiveResampler(frame.sample_rate, RATE)
            samples = self._resamplers[key].process(samples)
        buf = np.concatenate([self._sides[side], samples])
        self._sides[side] = buf[-MAX_BUFFER:] if len(buf) > MAX_BUFFER else buf

    def _take(self, side: str) -> np.ndarray:
        buf = self._sides[side]
        chunk, self._sides[side] = buf[:FRAME], buf[FRAME:]
        return np.pad(chunk, (0, FRAME - len(chunk))) if len(chunk) < FRAME else chunk

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pace.next_pts()
        mixed = np.clip(self._take("caller") + self._take("agent"), -1.0, 1.0)
        frame = av.AudioFrame.from_ndarray(float_to_pcm16(mixed).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.frames_sent += 1
        return frame


class SupervisedLeg(LegWrapper):
    """A CallLeg around the transport's, with taps for the recorder and listeners and a switch that
    puts a supervisor's voice on the line instead of the agent's."""

    def __init__(self, inner: CallLeg, recorder=None):
        super().__init__(inner)  # (its clock and rate are the inner leg's)
        self.recorder = recorder  # ops.recordings.CallRecorder or None
        self.listeners: set[MixTrack] = set()
        self.taken_over = False  # the agent's audio goes nowhere
        self.supervisor_track: MixTrack | None = None  # what the supervisor who took over hears
        self.agent_frames_dropped = 0
        self._to_leg: LiveResampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._next_s: float | None = None  # where the supervisor's next frame goes on the call's timeline

    # -- taps ---------------------------------------------------------------------------------
    def _tap(self, side: str, frame: AudioFrame) -> None:
        try:
            if self.recorder is not None:
                (self.recorder.caller if side == "caller" else self.recorder.agent)(frame)
            for track in self.listeners:
                track.push(side, frame)
            if side == "caller" and self.supervisor_track is not None:
                self.supervisor_track.push("caller", frame)
        except Exception:  # watching a call never breaks it
            log.exception("supervision tap failed")

    # -- CallLeg ------------------------------------------------------------------------------
    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        async for item in self.inner.receive():
            if isinstance(item, AudioFrame):
                self._tap("caller", item)
            yield item

    async def send(self, frame: AudioFrame) -> None:
        if self.taken_over:
            self.agent_frames_dropped += 1
            return
        self._tap("agent", frame)
        await self.inner.send(frame)

    # -- the supervisor -----------------------------------------------------------------------
    def take_over(self, track: MixTrack) -> None:
        self.taken_over = True
        self.supervisor_track = track
        self._next_s = None
        try:
            self.inner.clear_output()  # what the transport still holds of the agent's voice
        except Exception:
            log.debug("leg cannot clear output", exc_info=True)

    def give_back(self) -> None:
        self.taken_over = False
        self.supervisor_track = None
        self._pending = np.zeros(0, np.float32)

    async def send_supervisor(self, samples: np.ndarray, rate: int) -> None:
        """The supervisor's microphone, as it comes (any rate), to the caller in the leg's 20 ms frames."""
        if not self.taken_over:
            return
        if self._to_leg is None or self._to_leg.src_rate != rate:
            self._to_leg = LiveResampler(rate, self.sample_rate)
        self._pending = np.concatenate([self._pending, self._to_leg.process(samples)])
        step = self.sample_rate // 50
        now = self.clock.now()
        if self._next_s is None or self._next_s < now or self._next_s > now + 0.5:
            self._next_s = now + 0.02  # (re)start just ahead of now: late audio is not queued up
        while len(self._pending) >= step:
            chunk, self._pending = self._pending[:step], self._pending[step:]
            frame = AudioFrame(chunk, self.sample_rate, self._next_s)
            self._next_s += 0.02
            try:
                if self.recorder is not None:
                    self.recorder.supervisor(frame)
                for track in self.listeners:
                    track.push("agent", frame)
            except Exception:
                log.exception("supervision tap failed")
            await self.inner.send(frame)
