"""What a call's dialog carries from turn to turn (`DialogState`) and what one turn answers (`Reply`).

Flows read both and write neither: they return a `FlowResult`, and the engine applies it
(`voiceagent.dialog.flows.base.apply`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from ...perception import CallerEmotion, LanguageTracker, TurnEmotion
from ..escalation import Escalation
from ..nlu import Understanding


# The tasks a conversation carries over turns: each gathers its slots, may need the caller's order
# chosen, and (the actions) is read back and confirmed before the shop is changed.
ACTION_TASKS = {"aftersales.return", "aftersales.exchange", "order.modify", "order.cancel"}
INFO_TASKS = {"order.status", "logistics.track", "aftersales.refund"}
TASK_KINDS = ACTION_TASKS | INFO_TASKS


@dataclass
class Task:
    """One thing the caller wants done, held across turns until it is done or dropped.
    `slots`: what the task has gathered (order_id, reason, size, color, address, phone; `change` for
    an order change: which field). `awaiting`: what the last reply asked for (a slot, "order" (which
    of `candidates`), "confirm"). `done`: finished on some turn (answered, acted on, or refused)."""
    kind: str
    slots: dict[str, str] = field(default_factory=dict)
    awaiting: str | None = None
    candidates: list[str] = field(default_factory=list)  # order ids offered when asking which one
    done: bool = False
    result: str | None = None  # what was done: a ticket id, "address changed", "cancelled"
    asked: str | None = None  # the question the last reply ended on (asked again after a question on the side)

    def open(self) -> bool:
        return not self.done

    def as_record(self) -> dict:
        """The task as a call record and a handoff summary keep it."""
        return {"kind": self.kind, "slots": self.as_state()["slots"], "awaiting": self.awaiting, "done": self.done,
                "result": self.result}

    def as_state(self) -> dict:
        """The task as the evaluation reads it: kind and its slots."""
        return {"task": self.kind, "slots": {k: v for k, v in self.slots.items() if k != "change" and not k.startswith("_")}}


@dataclass
class OwnershipProof:
    """The last four digits of the account's phone, asked for before an order's details are told to a
    caller not known to own it (flows/ownership.py): whose account, which order, and the turn to
    answer once the digits match."""
    customer_id: str
    order_id: str
    text: str


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
    channel: str = "text"  # "voice" (a call: short replies for the ear) or "text" (chat: may say more)
    keypad: bool = False  # the caller can key digits (a call: DTMF); a number is then asked by the keypad (flows/keypad.py)
    task: Task | None = None  # the task the conversation is on (open, or finished on the last turn)
    suspended: list[Task] = field(default_factory=list)  # tasks left for another, to resume (latest last)
    tier_greeted: bool = False  # the tier's touch ("尊敬的VIP会员") is said once a call
    said: list[str] = field(default_factory=list)  # sentences the agent said, not to be said again
    more: str | None = None  # what a short voice reply left out, said when the caller asks for details
    more_grounding: list[str] = field(default_factory=list)  # the records and passages `more` states
    marketing: Any = None  # a campaign call's script and progress (flows/marketing.py: MarketingCall)
    # Who the caller is: `customer_id` only from what the caller cannot forge (the caller ID of a call,
    # an identity the shop signed for a chat); other accounts only once proven (flows/ownership.py).
    # a phone number said finds the account: no, by default (a phone number is no secret; a caller is
    # known by their caller ID, a chat by the shop's signed identity; others prove an order they name)
    phone_said_identifies: bool = False
    verified_customers: set[str] = field(default_factory=set)  # accounts proven by their phone's last four digits
    proof: OwnershipProof | None = None  # the last four digits asked for, answer awaited
    proof_failures: int = 0  # wrong digits given; at ownership.MAX_TRIES no more tries
    complaint_ticket: str | None = None  # the complaint logged in this conversation (one at most)

    def open_task(self) -> Task | None:
        return self.task if self.task is not None and self.task.open() else None


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
    progress: bool = False  # a task moved on without being answered yet (not a failed turn)
    source: str = "template"  # "template" or "llm"
    grounding: list[str] = field(default_factory=list)
    llm_first_token_ms: float | None = None
    dialog_ms: float = 0.0
    keeps_pending: bool = False  # answered, and still open for the value it offered to take (an order number)
    streaming: bool = False  # the caller speaks the reply as it comes: an LLM reply arrives in `pieces`
    pieces: Iterator[str] | None = None  # checked clauses of a streamed reply; fills `text` when consumed
    end_call: str | None = None  # the agent hangs up once this reply is said (a marketing call's end)
