"""The contract between transports and the session. A transport (SIP, AudioSocket, WebRTC, a file)
adapts its protocol to a CallLeg; the session knows nothing else about it.

It is defined here, with the transports, because they implement it and `telephony/` stands alone
(it imports nothing from `voiceagent/`); the agent imports it from here (re-exported as
`voiceagent.legs`). The dependency runs one way: voiceagent -> telephony.

Audio crosses the boundary in frames at the leg's own rate (8 kHz for a G.711 phone, 48 kHz for a
browser); the session resamples. The session paces its audio: it hands the leg each 20 ms frame a
little before the frame is due (`AudioFrame.start_s` is when it should be heard), so a transport
sends what it is given, when it is given it.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

from .audio import AudioFrame


class Clock:
    """The call's own timeline in seconds from the call's start.

    Real time for live calls. Simulated calls (`voiceagent call --fast`) run on simulated time: it
    runs at the pace of the wall clock while anything is being computed (so latencies are real),
    and jumps ahead when every stage of the call is only waiting for time to pass (the caller's
    next frame, the next 20 ms of agent audio). The call then plays out exactly as it would live,
    barge-ins included, in a fraction of the time. CPU-heavy work goes through `run_in_thread`, so
    the clock knows when something is being computed.
    """

    # Scheduler passes that must find nothing runnable before simulated time jumps: each pass lets
    # every ready task run until it blocks, and an event handed from task to task takes a pass.
    _SETTLE_PASSES = 20

    def __init__(self, realtime: bool = True):
        self.realtime = realtime
        self._t0 = time.perf_counter()
        self._offset = 0.0
        self._busy = 0
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._seq = 0
        self._scheduler: asyncio.Task | None = None

    def now(self) -> float:
        return time.perf_counter() - self._t0 + self._offset

    async def wait_until(self, t: float) -> None:
        delay = t - self.now()
        if delay <= 0:
            return
        if self.realtime:
            await asyncio.sleep(delay)
            return
        future = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (t, self._seq, future))
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = asyncio.get_running_loop().create_task(self._advance())
        await future

    async def run_in_thread(self, fn, /, *args):
        """`asyncio.to_thread`, counted: simulated time does not jump while it runs."""
        self._busy += 1
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._busy -= 1

    async def _advance(self) -> None:
        while self._waiters:
            for _ in range(self._SETTLE_PASSES):
                await asyncio.sleep(0)
            self._waiters = [w for w in self._waiters if not w[2].done()]  # waiters cancelled meanwhile
            heapq.heapify(self._waiters)
            if not self._waiters:
                return
            now = self.now()
            if self._waiters[0][0] > now:
                if self._busy:
                    await asyncio.sleep(0.001)
                    continue
                self._offset += self._waiters[0][0] - now  # nothing to compute: skip to the next deadline
                now = self.now()
            while self._waiters and self._waiters[0][0] <= now:
                heapq.heappop(self._waiters)[2].set_result(None)


async def played_out(queued_s: Callable[[], float], limit_s: float = 8.0,
                     gone: asyncio.Event | None = None) -> None:
    """Until a transport's queued agent audio has been sent (at most `limit_s`, or until the far end
    is `gone`): before a transfer, the bridge sentence ("connecting you to a colleague") is heard
    whole."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while queued_s() > 0 and loop.time() < end and not (gone is not None and gone.is_set()):
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class DtmfDigit:
    """A key the caller pressed (RFC 4733 event, SIP INFO, AudioSocket 0x03...)."""

    digit: str
    at_s: float


class LegClosed(ConnectionError):
    """The far end is gone: sending to it is pointless."""


class CallLeg(Protocol):
    clock: Clock
    sample_rate: int  # the rate frames arrive at and are sent at

    def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        """Caller audio (20 ms frames, as they come) and key presses, until the caller hangs up."""

    async def send(self, frame: AudioFrame) -> None:
        """One frame of agent audio at the leg's rate, to be heard at `frame.start_s`.
        Raises LegClosed when the far end is gone."""

    def clear_output(self) -> None:
        """Drop agent audio handed over but not yet played out (barge-in)."""

    async def hangup(self) -> None: ...

    async def transfer(self, target: str, summary: dict | None = None) -> "TransferResult | bool":
        """Hand the caller to `target` (a transport may pass `summary`, or a reference to it, to the
        human's side). Not ok when the transfer failed and the caller is still here."""


class LegWrapper:
    """A CallLeg around another: everything as the inner leg does it (its clock, rate, hang-up,
    transfer, and whatever else a channel's own code asks of it), for a subclass to change one part
    (campaigns/screening.ScreenedLeg: the stream after detection; ops/supervision.SupervisedLeg:
    taps and takeover)."""

    def __init__(self, inner: CallLeg):
        self.inner = inner

    # the two the session reads on every frame, without the lookup below
    clock = property(lambda self: self.inner.clock)
    sample_rate = property(lambda self: self.inner.sample_rate)

    def __getattr__(self, name):
        if name == "inner":  # not set yet: no recursion through the lookup below
            raise AttributeError(name)
        return getattr(self.inner, name)

    def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        return self.inner.receive()

    async def send(self, frame: AudioFrame) -> None:
        await self.inner.send(frame)

    def clear_output(self) -> None:
        self.inner.clear_output()

    async def hangup(self) -> None:
        await self.inner.hangup()

    async def transfer(self, target: str, summary: dict | None = None) -> "TransferResult | bool":
        return await self.inner.transfer(target, summary)


@dataclass(frozen=True)
class TransferResult:
    """How a transfer went. `status`: "completed"; or, with the caller still on the line, "busy",
    "no_answer", "rejected", "refused" (the target is not allowed) or "failed"."""

    ok: bool
    status: str = "completed"

    @classmethod
    def of(cls, value: "TransferResult | bool") -> "TransferResult":
        if isinstance(value, TransferResult):
            return value
        return cls(True, "completed") if value else cls(False, "failed")
