"""A SIP call as the session's CallLeg: 8 kHz frames from RTP, key presses from RFC 4733 and SIP
INFO, the agent's frames paced out as RTP, transfer by REFER with a bridged fallback."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import numpy as np

from telephony.audio import AudioFrame, resample
from telephony.leg import Clock, DtmfDigit, LegClosed, TransferResult, played_out

from .call import KeyPress, SipCall, TransferOutcome
from .ua import CallFailed, UserAgent

log = logging.getLogger(__name__)

RATE = 8000
FRAME = RATE // 50


class SipLeg:
    sample_rate = RATE

    def __init__(self, call: SipCall, ua: UserAgent, targets: dict[str, str] | None = None,
                 bridge_ring_timeout_s: float = 30.0, transfer_method: str = "refer"):
        """`targets` maps the dialog's transfer targets ("human-queue") to SIP URIs; a target that
        is already a URI is used as it is. Both must pass the user agent's allow-list."""
        self.call = call
        self.ua = ua
        self.clock = Clock(realtime=True)
        self.targets = targets or {}
        self.bridge_ring_timeout_s = bridge_ring_timeout_s
        self.transfer_method = transfer_method  # "refer" (bridged when the peer refuses) or "bridge"
        self.transfer_log: list[dict] = []
        self._transferred = asyncio.Event()
        call.rtp.clock = self.clock.now  # media times on the call's own timeline

    async def receive(self) -> AsyncIterator[AudioFrame | DtmfDigit]:
        call = self.call
        ended = asyncio.ensure_future(call.ended.wait())
        transferred = asyncio.ensure_future(self._transferred.wait())
        media = asyncio.ensure_future(call.rtp.receive())
        key = asyncio.ensure_future(call.keys.get())
        try:
            while True:
                done, _ = await asyncio.wait({media, key, ended, transferred}, return_when=asyncio.FIRST_COMPLETED)
                if key in done:
                    press: KeyPress = key.result()
                    yield DtmfDigit(press.digit, self.clock.now())
                    key = asyncio.ensure_future(call.keys.get())
                if media in done:
                    item = media.result()
                    if item is None:  # stream closed, or the RTP timeout: the caller is gone
                        if call.rtp.timed_out and call.active:
                            await call.bye("rtp_timeout")
                        return
                    if isinstance(item, AudioFrame):
                        yield item
                    else:  # an RFC 4733 key press
                        yield DtmfDigit(item.digit, item.at_s)
                    media = asyncio.ensure_future(call.rtp.receive())
                if (ended in done or transferred in done) and media not in done:
                    return
        finally:
            for waiting in (media, key, ended, transferred):
                waiting.cancel()

    async def send(self, frame: AudioFrame) -> None:
        if not self.call.active or self._transferred.is_set():
            raise LegClosed("call ended")
        samples = frame.samples if frame.sample_rate == RATE else resample(frame.samples, frame.sample_rate, RATE)
        for i in range(0, len(samples), FRAME):
            chunk = samples[i:i + FRAME]
            if len(chunk) < FRAME:
                chunk = np.pad(chunk, (0, FRAME - len(chunk)))
            self.call.rtp.send(chunk.astype(np.float32, copy=False), frame.start_s + i / RATE)

    def clear_output(self) -> None:
        self.call.rtp.clear_output()

    async def hangup(self) -> None:
        await self.call.bye("agent_bye")

    async def transfer(self, target: str, summary: dict | None = None) -> TransferResult:
        uri = self.targets.get(target, target)
        entry = {"target": target, "uri": uri}
        self.transfer_log.append(entry)
        if not uri.startswith(("sip:", "sips:", "tel:")) or not self.ua.transfer_allowed(uri):
            log.warning("call %s: transfer to %r refused: not in the transfer allow-list", self.call.call_id, uri)
            entry["status"] = "refused"
            return TransferResult(False, "refused")
        await played_out(self.call.rtp.queued_s)  # the bridge sentence is heard before the caller moves
        if self.transfer_method == "bridge":
            outcome = TransferOutcome(False, "refused_by_peer")
        else:
            outcome = await self.call.refer(uri)
            entry.update(method="refer", status=outcome.status, sip_status=outcome.sip_status)
        if outcome.status == "refused_by_peer":
            outcome = await self._bridge(uri, summary)
            entry.update(method="bridge", status=outcome.status, sip_status=outcome.sip_status)
        if outcome.ok:
            self._transferred.set()
        return TransferResult(outcome.ok, outcome.status)

    async def _bridge(self, uri: str, summary: dict | None) -> TransferOutcome:
        """B2BUA fallback: call the human ourselves and relay audio both ways until either side
        hangs up. The human's INVITE names the call it bridges (X-Voiceagent-Call) so their desk can
        fetch the handoff summary."""
        headers = [("X-Voiceagent-Call", str((summary or {}).get("call_id", self.call.call_id)))]
        try:
            human = await self.ua.invite(uri, ring_timeout_s=self.bridge_ring_timeout_s, headers=headers)
        except CallFailed as exc:
            return TransferOutcome(False, exc.outcome, "bridge", exc.status)
        self.call.bridged_to, human.bridged_to = human, self.call
        self.ua.spawn(relay(self.call, human))
        return TransferOutcome(True, "completed", "bridge", 200)


async def relay(a: SipCall, b: SipCall) -> None:
    """Carry audio and key presses both ways between two answered calls until one ends; then end
    the other."""
    async def pump(src: SipCall, dst: SipCall) -> None:
        while src.active and dst.active:
            item = await src.rtp.receive()
            if item is None:
                return
            if isinstance(item, AudioFrame):  # RTP frames are already 8 kHz
                dst.rtp.send(item.samples, dst.rtp.clock())
            else:
                dst.rtp.send_dtmf(item.digit)

    tasks = [asyncio.ensure_future(pump(a, b)), asyncio.ensure_future(pump(b, a)),
             asyncio.ensure_future(a.ended.wait()), asyncio.ensure_future(b.ended.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for call in (a, b):
            if call.active:
                await call.bye("bridge_ended")
