"""An Asterisk call over AudioSocket as the engine's CallLeg: Asterisk's signed-linear frames in,
key presses from 0x03 messages, the agent's frames paced out at 20 ms (Asterisk writes what it gets
straight to the channel, with no jitter buffer to absorb a burst), hang-up as 0x00, and transfer
through the AMI side (`transfer_via`: Redirect of this call's channel to an allow-listed place)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from telephony.audio import AudioFrame, float_to_pcm16, pcm16_to_float, resample
from telephony.leg import Clock, DtmfDigit, LegClosed, TransferResult, played_out

from .audiosocket import Audio, Dtmf
from .server import AudioSocketConnection

log = logging.getLogger(__name__)

# (target, summary, log entry to fill) -> how the transfer went; None where no AMI is configured
TransferVia = Callable[[str, "dict | None", dict], Awaitable[TransferResult]]


class AudioSocketLeg:
    def __init__(self, conn: AudioSocketConnection, transfer_via: TransferVia | None = None):
        self.conn = conn
        self.sample_rate = conn.sample_rate
        self.frame = self.sample_rate // 50
        self.clock = Clock(realtime=True)
        self.transfer_via = transfer_via
        self.transfer_log: list[dict] = []
        self.late_frames = 0  # frames the pacer sent after they were due (> 20 ms late)
        self._out: deque[tuple[float, bytes]] = deque()
        self._wake = asyncio.Event()
        self._transferred = False
        self._next_in: float | None = None  # where the next frame from Asterisk starts on the call clock
        self._pacer = asyncio.get_running_loop().create_task(self._pace(), name=f"audiosocket-{conn.uuid}-out")

    @property
    def transferred(self) -> bool:
        return self._transferred

    # -- in -----------------------------------------------------------------------------------
    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        try:
            async for message in self.conn.messages():
                now = self.clock.now()
                if isinstance(message, Audio):
                    samples = pcm16_to_float(message.pcm)
                    if message.sample_rate != self.sample_rate:  # Asterisk changed format mid-call
                        samples = resample(samples, message.sample_rate, self.sample_rate)
                    # TCP carries no timestamps but loses nothing: frames are contiguous, even when
                    # several arrive in one read; only a real pause in the stream (later than the
                    # audio so far can explain) moves the timeline on
                    duration = len(samples) / self.sample_rate
                    start = max(0.0, now - duration)
                    if self._next_in is not None and self._next_in > start - 0.1:
                        start = self._next_in
                    self._next_in = start + duration
                    yield AudioFrame(samples, self.sample_rate, start)
                elif isinstance(message, Dtmf):
                    yield DtmfDigit(message.digit, now)
        finally:
            self._stop_pacer()

    # -- out ----------------------------------------------------------------------------------
    async def send(self, frame: AudioFrame) -> None:
        if not self.conn.active or self._transferred:
            raise LegClosed(self.conn.end_reason or "transferred")
        samples = frame.samples if frame.sample_rate == self.sample_rate else \
            resample(frame.samples, frame.sample_rate, self.sample_rate)
        pcm = float_to_pcm16(samples)
        for i in range(0, len(pcm), self.frame):
            chunk = pcm[i:i + self.frame]
            if len(chunk) < self.frame:  # whole 20 ms frames only, never an empty message
                chunk = np.pad(chunk, (0, self.frame - len(chunk)))
            self._out.append((frame.start_s + i / self.sample_rate, chunk.tobytes()))
        self._wake.set()

    def clear_output(self) -> None:
        self._out.clear()

    def queued_s(self) -> float:
        if not self._out:
            return 0.0
        return max(0.0, self._out[-1][0] + self.frame / self.sample_rate - self.clock.now())

    async def _pace(self) -> None:
        """Each frame goes out when it is due (its start_s on the call clock)."""
        while self.conn.active:
            if not self._out:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, pcm = self._out[0]
            await self.clock.wait_until(due)
            if not self._out or self._out[0][1] is not pcm:  # cleared (barge-in) while waiting
                continue
            self._out.popleft()
            if self.clock.now() - due > 0.02:
                self.late_frames += 1
            self.conn.send_pcm(pcm)

    def _stop_pacer(self) -> None:
        if not self._pacer.done():
            self._pacer.cancel()

    # -- control ------------------------------------------------------------------------------
    async def hangup(self) -> None:
        await played_out(self.queued_s, gone=self.conn.ended)  # the goodbye is heard whole
        self.conn.hangup("agent_hangup")
        self._stop_pacer()

    async def transfer(self, target: str, summary: dict | None = None) -> TransferResult:
        entry: dict = {"target": target}
        self.transfer_log.append(entry)
        if self.transfer_via is None:
            log.warning("audiosocket %s: transfer to %r impossible: no AMI connection configured", self.conn.uuid,
                        target)
            entry["status"] = "unavailable"
            return TransferResult(False, "failed")
        await played_out(self.queued_s, gone=self.conn.ended)  # the bridge sentence is heard before the move
        result = await self.transfer_via(target, summary, entry)
        entry["status"] = result.status
        if result.ok:
            self._transferred = True
            self._stop_pacer()
        return result

    def stats(self) -> dict:
        return {**self.conn.stats.as_dict(), "late_frames": self.late_frames}
