"""What the stages of one call share: the call's identity, its leg and clock, the models, the record
being written, the dialog's state and the call's language. Stages read these; they change each
other's behaviour only through events (`emit`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..config import CallConfig
from ..dialog.engine import DialogState
from ..events import Event
from ..latency import LatencyObserver
from ..legs import CallLeg, Clock
from ..playout import Playout
from ..record import CallRecord
from ..runtime import Runtime
from .language import CallLanguage


@dataclass
class SessionOptions:
    language: str = "auto"  # "zh", "en" or "auto"
    customer_id: str | None = None
    handoff_target: str | None = None  # None: [escalation] targets
    greeting: bool | None = None  # None: as configured ([call] greeting)
    call: CallConfig | None = None  # None: the runtime's [call] section
    greeting_language: str | None = None  # "auto" calls: greet in this one until the caller is heard (a page's language)
    marketing: Any = None  # a campaign call (dialog/flows/marketing.py MarketingCall): its opening, pitch, outcome
    # Before the agent speaks on an outbound call: given the answered leg, returns the leg to run the
    # call on, or None with a reason to end it there (answering-machine detection, campaigns/screening.py)
    screen: Callable[[Any], Awaitable[tuple[Any, str | None]]] | None = None
    # after the caller's goodbye, ask for a 1-5 score on the keypad (phone calls; the widget asks with stars)
    ask_rating: bool = False


@dataclass
class CallContext:
    call_id: str
    runtime: Runtime
    leg: CallLeg
    options: SessionOptions
    call: CallConfig
    record: CallRecord
    state: DialogState
    language: CallLanguage
    latency: LatencyObserver
    playout: Playout
    emit: Callable[[Event], None]
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set by the conductor alone
    # the operator who has taken the call over (the agent is silent and only listens), or None
    supervisor: str | None = None
    rating_asked_s: float | None = None  # when the agent asked for a 1-5 score on the keypad

    @property
    def clock(self) -> Clock:
        return self.leg.clock
