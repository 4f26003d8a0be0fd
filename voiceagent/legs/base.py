"""The contract between transports and the session. A transport (SIP, AudioSocket, WebRTC, a file)
adapts its protocol to a CallLeg; the session knows nothing else about it."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Protocol

import numpy as np

from ..audio import AudioFrame


class Clock:
    """The call's own timeline in seconds from the call's start.

    Real time for live calls. For simulated calls (`voiceagent call --fast`) time still runs
    during processing, so latencies are real, but waiting for the caller's next audio is skipped.
    """

    def __init__(self, realtime: bool = True):
        self.realtime = realtime
        self._t0 = time.perf_counter()
        self._offset = 0.0

    def now(self) -> float:
        return time.perf_counter() - self._t0 + self._offset

    async def wait_until(self, t: float) -> None:
        delay = t - self.now()
        if delay <= 0:
            return
        if self.realtime:
            await asyncio.sleep(delay)
        else:
            self._offset += delay


class CallLeg(Protocol):
    clock: Clock
    sample_rate: int  # the rate frames arrive at

    def frames(self) -> AsyncIterator[AudioFrame]:
        """Caller audio in 20 ms frames until the caller hangs up."""

    def play(self, samples: np.ndarray, sample_rate: int) -> float:
        """Queue agent audio after what is already queued; returns its start on the timeline."""

    def stop_playback(self) -> None:
        """Drop queued agent audio (barge-in)."""

    async def hangup(self) -> None: ...

    async def transfer(self, target: str) -> bool:
        """Hand the caller to `target`; False when the transfer failed and the caller is still here."""
