"""How a campaign's call is placed: through the agent's own SIP stack (`dial = "sip:{phone}@host"`)
or by Asterisk Originate over AMI (`dial = "asterisk:PJSIP/{phone}@trunk"`), both already built
for single calls (PhoneService.dial, AsteriskService.originate). Either way the answered call runs
through `run_call` with the campaign's options (its screen, its marketing call).

`capacity()` is what the engine can still take: at most `engine_calls` calls at once in the process,
inbound ones included (3 calls at once hold voice to voice p95 <= 1.5 s on a 2-core machine). A
placer counts its own dials from the moment `place` is called (ringing, answered, talking), and the
transport's other calls (inbound) as the transport reports them."""

from __future__ import annotations

import logging
import weakref

from telephony.sip.address import AddressError, SipUri
from telephony.sip.ua import CallFailed

from ..engine import SessionOptions
from .dialer import Placed

log = logging.getLogger(__name__)

# Asterisk's Originate outcomes -> the campaign's
_ORIGINATE = {"answered": "answered", "busy": "busy", "no_answer": "no_answer", "timeout": "no_answer",
              "congestion": "failed", "failed": "failed", "error": "failed"}


# Campaign calls in flight per transport service, shared by every campaign's placer on it: two
# campaigns in one `serve` share the engine's calls, not get them each.
_IN_FLIGHT: "weakref.WeakKeyDictionary[object, list[int]]" = weakref.WeakKeyDictionary()


def _counter(service) -> list[int]:
    return _IN_FLIGHT.setdefault(service, [0])


class _CountedPlacer:
    """What both placers share: the engine's slots (`engine_calls`, the transport's own limit, its
    other calls) and counting each dial in flight from the moment `place` is called."""

    def __init__(self, service, engine_calls: int, limit: int):
        self.engine_calls = engine_calls
        self._limit = limit
        self._in_flight = _counter(service)

    def _other_calls(self) -> int:
        raise NotImplementedError

    def capacity(self) -> int:
        return max(0, min(self.engine_calls, self._limit) - self._other_calls() - self._in_flight[0])

    async def place(self, number: str, options: SessionOptions, ring_timeout_s: float) -> Placed:
        self._in_flight[0] += 1
        try:
            return await self._place(number, options, ring_timeout_s)
        finally:
            self._in_flight[0] -= 1

    async def _place(self, number: str, options: SessionOptions, ring_timeout_s: float) -> Placed:
        raise NotImplementedError


class SipPlacer(_CountedPlacer):
    def __init__(self, phone, template: str, engine_calls: int = 3):
        """`phone`: a started PhoneService; `template`: "sip:{phone}@host:port"."""
        super().__init__(phone, engine_calls, phone.ua.max_calls)
        self.phone = phone
        self.template = template

    def _other_calls(self) -> int:
        return sum(1 for call in self.phone.ua.calls.values() if call.direction == "inbound")

    async def _place(self, number: str, options: SessionOptions, ring_timeout_s: float) -> Placed:
        target = self.template.replace("{phone}", number)
        try:
            SipUri.parse(target)
        except AddressError as exc:
            return Placed("failed", detail=f"not a SIP URI: {exc}")
        try:
            call = await self.phone.ua.invite(target, ring_timeout_s=ring_timeout_s)
        except CallFailed as exc:
            return Placed(exc.outcome, exc.status, detail=str(exc))
        record = await self.phone.run_call(call, options)
        return Placed("answered", 200, record)


class AsteriskPlacer(_CountedPlacer):
    def __init__(self, service, template: str, engine_calls: int = 3):
        """`service`: a started AsteriskService with AMI; `template`: "asterisk:PJSIP/{phone}@trunk"."""
        super().__init__(service, engine_calls, service.ast.max_calls)
        self.service = service
        self.channel = template.split(":", 1)[1].replace("{phone}", "{number}")

    def _other_calls(self) -> int:
        # AudioSocket calls the agent originated (connected ones among `active`) are in _outbound
        active = self.service.server.status()["active_calls"]
        return max(0, active - len(self.service._outbound))

    async def _place(self, number: str, options: SessionOptions, ring_timeout_s: float) -> Placed:
        try:
            call = await self.service.originate(number, options, channel=self.channel, ring_timeout_s=ring_timeout_s)
        except ValueError as exc:
            return Placed("failed", detail=str(exc))
        status = _ORIGINATE.get(call.result.outcome, "failed")
        return Placed(status, None, call.record, detail=call.result.message or call.result.outcome)
