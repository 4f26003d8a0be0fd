"""What a call's dialog carries from turn to turn (`DialogState`) and what one turn answers (`Reply`).

Flows read both and write neither: they return a `FlowResult`, and the engine applies it
(`voiceagent.dialog.flows.base.apply`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ...perception import CallerEmotion, LanguageTracker, TurnEmotion
from ..escalation import Escalation
from ..nlu import Understanding


@dataclass
class DialogState:
    language: str = "zh"
    customer_id: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    pending_intent: str | None = None  # a question waiting for a slot (e.g. the order number)
    awaiting: str | None = None  # the slot the last reply asked for, when it is not the order ("reason")
    customer_tier: str | None = None  # looked up once per call ("" when not a known customer)
    failed_turns: int = 0  # unanswered turns in a row
    unclear_turns: int = 0  # turns not understood in a row (a clarifying question asked)
    intents: list[str] = field(default_factory=list)
    emotion: CallerEmotion = field(default_factory=CallerEmotion)  # per turn and running
    languages: LanguageTracker = field(default_factory=LanguageTracker)  # the steady dialect
    apologized: bool = False  # the first dissatisfaction was met with an apology (and a coupon)
    transfer_failures: int = 0
    callback_ticket: str | None = None
    escalations: list[dict] = field(default_factory=list)  # every turn's decision, with its reason
    tried: list[str] = field(default_factory=list)  # what the agent did, for the handoff summary
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), the last turns


@dataclass
class Reply:
    text: str
    understanding: Understanding
    intent: str
    slots: dict[str, str]
    handoff: bool = False
    handoff_reason: str | None = None
    handoff_target: str | None = None
    handoff_summary: dict | None = None
    escalation: Escalation = field(default_factory=Escalation)
    emotion: TurnEmotion | None = None  # the turn's emotion from words and voice
    resolved: bool = False  # the turn answered the caller's question
    source: str = "template"  # "template" or "llm"
    grounding: list[str] = field(default_factory=list)
    llm_first_token_ms: float | None = None
    dialog_ms: float = 0.0
    keeps_pending: bool = False  # answered, and still open for the value it offered to take (an order number)
    streaming: bool = False  # the caller speaks the reply as it comes: an LLM reply arrives in `pieces`
    pieces: Iterator[str] | None = None  # checked clauses of a streamed reply; fills `text` when consumed
