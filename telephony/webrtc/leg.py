"""A browser session as the engine's CallLeg: the page's microphone (Opus or G.711, decoded by
aiortc) at 16 kHz in, the agent's voice out through a paced track, key presses from the page's
event channel, and transfer by bridging the browser to a human over SIP."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony.audio import AudioFrame, StreamResampler, resample
from telephony.leg import Clock, DtmfDigit, LegClosed, TransferResult, played_out

from .media import RATE, AgentAudioTrack, InboundAudio, InboundTimeline

log = logging.getLogger(__name__)

PHONE_FRAME = 160  # 20 ms at 8 kHz
INBOX_FRAMES = 500  # 10 s of audio: beyond, the session is stalled and the oldest frames go

# (target, summary) -> an answered call with the human (telephony.sip.call.SipCall), or raises
# telephony.sip.ua.CallFailed; TransferRefused when the target is not allowed
Connector = Callable[[str, "dict | None"], Awaitable[object]]


class TransferRefused(Exception):
    """The target is not one this agent may call (allow-list)."""


class WebRtcLeg:
    sample_rate = RATE

    def __init__(self, out: AgentAudioTrack, connector: Connector | None = None, media_timeout_s: float = 10.0):
        """`connector`: how a human joins (the SIP side's outbound call); None where no SIP target
        is configured, and then a transfer fails and the session offers a callback."""
        self.clock = Clock(realtime=True)
        self.out = out
        self.connector = connector
        self.media_timeout_s = media_timeout_s
        self.end_reason: str | None = None  # why the browser side ended
        self.transfer_log: list[dict] = []
        self.on_transfer: Callable[[dict], None] | None = None  # told how each transfer went
        self.human = None  # the bridged SIP call, once transferred
        self.frames_in = 0
        self.frames_bad = 0
        self.frames_dropped = 0
        self.gone = asyncio.Event()  # the browser left, hung up, or went quiet; or the bridge ended
        self._transferred = asyncio.Event()
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    # -- the browser side ---------------------------------------------------------------------
    def attach(self, track: MediaStreamTrack) -> None:
        """The page's microphone track (aiortc's "track" event)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._read(track), name="webrtc-mic"))

    async def _read(self, track: MediaStreamTrack) -> None:
        inbound, timeline = InboundAudio(), InboundTimeline()
        while not self.gone.is_set():
            try:
                # until the first frame, connecting is the service's connect timeout's business
                frame = await asyncio.wait_for(track.recv(), self.media_timeout_s if self.frames_in else None)
            except asyncio.TimeoutError:  # a tab frozen or closed without a goodbye: the browser sends audio all the time
                self.close("media_timeout")
                return
            except MediaStreamError:  # the peer connection closed
                self.close("browser_gone")
                return
            try:
                samples = inbound.convert(frame)
            except Exception as exc:  # a frame nothing can be made of: drop it, keep the call
                self.frames_bad += 1
                if self.frames_bad == 1:
                    log.warning("webrtc: unusable audio frame dropped: %s", exc)
                continue
            self.frames_in += 1
            start = timeline.place(frame, len(samples), self.clock.now())
            if len(samples):
                self._deliver(AudioFrame(samples, RATE, start))

    def key(self, digit: str) -> None:
        """A key pressed on the page's keypad (sent over the event channel)."""
        self._deliver(DtmfDigit(digit, self.clock.now()))

    def _deliver(self, item: AudioFrame | DtmfDigit | None) -> None:
        if item is not None and self._inbox.qsize() >= INBOX_FRAMES:
            self._inbox.get_nowait()
            self.frames_dropped += 1
        self._inbox.put_nowait(item)

    def close(self, reason: str) -> None:
        """The browser side is over (page hung up, connection lost, media timeout, shutdown)."""
        if not self.gone.is_set():
            self.end_reason = reason
            self.gone.set()
            self._deliver(None)  # wakes whoever reads the inbox

    # -- CallLeg ------------------------------------------------------------------------------
    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        while not self.gone.is_set() and not self._transferred.is_set():
            item = await self._inbox.get()
            if item is None or self._transferred.is_set():
                return
            yield item

    async def send(self, frame: AudioFrame) -> None:
        if self.gone.is_set() or self._transferred.is_set():
            raise LegClosed(self.end_reason or "transferred")
        samples = frame.samples if frame.sample_rate == RATE else resample(frame.samples, frame.sample_rate, RATE)
        self.out.push(samples)

    def clear_output(self) -> None:
        self.out.clear()

    async def hangup(self) -> None:
        self.close("agent_hangup")

    async def transfer(self, target: str, summary: dict | None = None) -> TransferResult:
        entry: dict = {"target": target, "method": "bridge"}
        self.transfer_log.append(entry)
        result = await self._transfer(target, summary, entry)
        if self.on_transfer is not None:
            self.on_transfer(entry)
        return result

    async def _transfer(self, target: str, summary: dict | None, entry: dict) -> TransferResult:
        if self.connector is None:
            entry["status"] = "unavailable"
            return TransferResult(False, "unavailable")
        await played_out(self.out.queued_s, gone=self.gone)  # the bridge sentence first
        from telephony.sip.ua import CallFailed  # the SIP side is only needed where a human joins over SIP

        try:
            human = await self.connector(target, summary)
        except TransferRefused as exc:
            log.warning("webrtc: transfer to %r refused: %s", target, exc)
            entry["status"] = "refused"
            return TransferResult(False, "refused")
        except CallFailed as exc:
            entry.update(status=exc.outcome, sip_status=exc.status)
            return TransferResult(False, exc.outcome)
        if self.gone.is_set():  # the browser left while the human's phone rang
            await human.bye("caller_gone")
            entry["status"] = "caller_gone"
            return TransferResult(False, "failed")
        entry.update(status="completed", sip_status=200)
        self.human = human
        self._transferred.set()
        self._deliver(None)  # ends receive(): the session is over, the bridge carries the call
        self._tasks.append(asyncio.get_running_loop().create_task(self._bridge(human), name="webrtc-bridge"))
        return TransferResult(True, "completed")

    async def _bridge(self, human) -> None:
        """Browser audio to the human's phone (8 kHz RTP) and back, until either side ends."""
        up, down = StreamResampler(RATE, 8000), StreamResampler(8000, RATE)

        async def browser_to_human() -> None:
            pending = np.zeros(0, np.float32)
            while human.active:
                item = await self._inbox.get()
                if item is None:
                    if self.gone.is_set():
                        return
                    continue  # the sentinel that ended receive()
                if isinstance(item, DtmfDigit):
                    human.rtp.send_dtmf(item.digit)
                    continue
                pending = np.concatenate([pending, up.process(item.samples)])
                while len(pending) >= PHONE_FRAME:  # RTP takes whole 20 ms frames
                    human.rtp.send(pending[:PHONE_FRAME], human.rtp.clock())
                    pending = pending[PHONE_FRAME:]

        async def human_to_browser() -> None:
            while not self.gone.is_set():
                item = await human.rtp.receive()
                if item is None:
                    return
                if isinstance(item, AudioFrame):
                    self.out.push(down.process(item.samples))

        tasks = [asyncio.ensure_future(browser_to_human()), asyncio.ensure_future(human_to_browser()),
                 asyncio.ensure_future(human.ended.wait()), asyncio.ensure_future(self.gone.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.error("webrtc: the bridge failed: %r", t.exception())
        finally:
            for t in tasks:
                t.cancel()
            if human.active:
                await human.bye("bridge_ended")
            self.close("bridge_ended")

    async def wait_done(self) -> None:
        """Until the browser side is over (after a transfer, when the bridged call ends)."""
        await self.gone.wait()

    async def aclose(self) -> None:
        self.close(self.end_reason or "closed")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.human is not None and self.human.active:
            await self.human.bye("bridge_ended")

    def stats(self) -> dict:
        return {"frames_in": self.frames_in, "frames_bad": self.frames_bad, "frames_dropped": self.frames_dropped,
                "frames_out": self.out.frames_sent, "frames_spoken": self.out.frames_spoken}
