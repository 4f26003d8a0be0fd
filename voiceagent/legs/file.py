"""A leg driven by a recording of the caller: `voiceagent call` and the tests.

Frames are released at the pace of the call's clock (real time, or fast-forward); the agent's
audio is laid on the same timeline where the session says it is heard, so agent.wav lines up
sample for sample with the input.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterable

import numpy as np

from ..audio import AudioFrame
from ..audio.frames import split_frames
from .base import Clock, DtmfDigit, ScriptedTransfer


class FileLeg(ScriptedTransfer):
    def __init__(self, samples: np.ndarray, sample_rate: int, realtime: bool = True, frame_ms: int = 20,
                 dtmf: Iterable[tuple[float, str]] = ()):
        self.samples = samples
        self.sample_rate = sample_rate
        self.clock = Clock(realtime)
        self.frame_ms = frame_ms
        self.dtmf = sorted(dtmf)  # (time, key) the caller presses, on the input's timeline
        self._agent = np.zeros(0, dtype=np.float32)
        self._length = 0  # samples of _agent in use (it grows ahead)
        self._play_end_s = 0.0
        self.hung_up = False
        self._init_transfers()

    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        keys = list(self.dtmf)
        for frame in split_frames(self.samples, self.sample_rate, self.frame_ms):
            if self.hung_up:
                return
            await self.clock.wait_until(frame.end_s)
            while keys and keys[0][0] <= frame.start_s:
                at, key = keys.pop(0)
                yield DtmfDigit(key, at)
            yield frame

    async def send(self, frame: AudioFrame) -> None:
        start = int(round(frame.start_s * self.sample_rate))
        end = start + len(frame.samples)
        if end > len(self._agent):  # grow by half again, not by a frame: no copy of the track per frame
            grown = np.zeros(max(end, len(self._agent) * 3 // 2), np.float32)
            grown[: self._length] = self._agent[: self._length]
            self._agent = grown
        self._agent[start:end] += frame.samples
        self._length = max(self._length, end)
        self._play_end_s = max(self._play_end_s, end / self.sample_rate)

    def clear_output(self) -> None:
        """Audio scheduled after now is never heard: take it off the track."""
        now = max(0, int(round(self.clock.now() * self.sample_rate)))
        if now < self._length:
            self._agent[now : self._length] = 0.0
            self._length = now
        self._play_end_s = min(self._play_end_s, max(self.clock.now(), 0.0))

    @property
    def play_end_s(self) -> float:
        return self._play_end_s

    async def hangup(self) -> None:
        self.hung_up = True

    def agent_track(self, min_duration_s: float = 0.0) -> np.ndarray:
        """The agent's side of the call, at the leg's rate, at least as long as the input."""
        agent = self._agent[: self._length]
        length = max(len(agent), len(self.samples), int(min_duration_s * self.sample_rate))
        return np.pad(agent, (0, length - len(agent)))
