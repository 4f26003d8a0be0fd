"""A leg whose far end is code in the same process: tests, benchmarks and in-process bridges.

The far end pushes caller frames and key presses (`push`, `push_audio`), hangs up (`end`) or
vanishes (`vanish`: the next send fails, as a dead socket does); what the agent sent is kept with
its play times (`sent`, `agent_track`).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import numpy as np

from ..audio import AudioFrame
from .base import Clock, DtmfDigit, LegClosed, ScriptedTransfer


class MemoryLeg(ScriptedTransfer):
    def __init__(self, sample_rate: int = 16000, realtime: bool = True):
        self.sample_rate = sample_rate
        self.clock = Clock(realtime)
        self._incoming: asyncio.Queue[AudioFrame | DtmfDigit | None] = asyncio.Queue()
        self.sent: list[AudioFrame] = []
        self.closed = False
        self.hung_up = False
        self._init_transfers()

    # -- the far end --------------------------------------------------------------------------
    def push(self, item: AudioFrame | DtmfDigit) -> None:
        self._incoming.put_nowait(item)

    async def push_audio(self, samples: np.ndarray, frame_ms: int = 20, realtime: bool = True) -> None:
        """Speak `samples` into the call in frames, paced like a phone (or all at once)."""
        size = self.sample_rate * frame_ms // 1000
        for i in range(0, len(samples) - size + 1, size):
            start = self.clock.now()
            self.push(AudioFrame(samples[i : i + size].astype(np.float32), self.sample_rate, start))
            if realtime:
                await self.clock.wait_until(start + frame_ms / 1000)

    def end(self) -> None:
        """The caller hangs up."""
        self._incoming.put_nowait(None)

    def vanish(self) -> None:
        """The far end disappears without a word: input ends, sending fails."""
        self.closed = True
        self._incoming.put_nowait(None)

    def agent_track(self) -> np.ndarray:
        """What the agent sent, laid on the call's timeline."""
        if not self.sent:
            return np.zeros(0, np.float32)
        end = max(int(round(f.end_s * self.sample_rate)) for f in self.sent)
        track = np.zeros(end, np.float32)
        for f in self.sent:
            start = int(round(f.start_s * self.sample_rate))
            track[start : start + len(f.samples)] += f.samples[: max(0, end - start)]
        return track

    # -- the CallLeg side ---------------------------------------------------------------------
    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        while True:
            item = await self._incoming.get()
            if item is None:
                return
            if not self.clock.realtime:  # simulated time: frames pushed ahead arrive when they are due
                due = item.start_s + len(item.samples) / item.sample_rate if isinstance(item, AudioFrame) \
                    and item.sample_rate > 0 else getattr(item, "start_s", getattr(item, "at_s", 0.0))
                await self.clock.wait_until(due)
            yield item

    async def send(self, frame: AudioFrame) -> None:
        if self.closed:
            raise LegClosed("far end gone")
        self.sent.append(frame)

    def clear_output(self) -> None:
        now = self.clock.now()
        self.sent = [f for f in self.sent if f.start_s < now]

    async def hangup(self) -> None:
        self.hung_up = True
        self._incoming.put_nowait(None)
