"""What every flow is made of: the turn it reads (`Turn`), what it returns (`FlowResult` with a
`StateUpdate`), the table that picks it (`Route`, `Router`), and the one function that writes a
flow's result onto the reply and the dialog state (`apply`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

from ...config import EscalationConfig
from ...llm import LanguageModel
from ...shop.repository import Customer, ShopRepository
from ..escalation import Escalation
from ..nlu import Understanding
from .state import DialogState, OwnershipProof, Reply, Task


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()  # a StateUpdate field the flow leaves as it is


@dataclass(frozen=True)
class StateUpdate:
    """The changes a flow wants in the dialog state. `slots`: a value sets the slot, None removes it."""
    pending_intent: str | None = UNCHANGED
    awaiting: str | None = UNCHANGED
    slots: dict[str, str | None] = field(default_factory=dict)
    turn_intent: str | None = None  # what this turn is recorded as in `state.intents` (a refusal: "other")
    apologized: bool | None = None
    tried: tuple[str, ...] = ()  # what the agent did, for the handoff summary
    task: Task | None = UNCHANGED  # the task the conversation is on (flows/tasks.py)
    suspended: tuple[Task, ...] = UNCHANGED  # tasks left for another, to come back to
    more: str | None = UNCHANGED  # details left out of a voice reply, said on request
    marketing: dict | None = None  # fields of the marketing call that change (flows/marketing.py)
    proof: OwnershipProof | None = UNCHANGED  # the last four digits asked for (flows/ownership.py)
    complaint_ticket: str | None = None  # a complaint ticket opened (once a conversation)

    def then(self, later: StateUpdate) -> StateUpdate:
        """This update followed by `later` (later values win)."""
        pick = lambda mine, theirs: mine if theirs is UNCHANGED else theirs  # noqa: E731
        return StateUpdate(pick(self.pending_intent, later.pending_intent), pick(self.awaiting, later.awaiting),
                           {**self.slots, **later.slots}, later.turn_intent or self.turn_intent,
                           later.apologized if later.apologized is not None else self.apologized,
                           self.tried + later.tried, pick(self.task, later.task), pick(self.suspended, later.suspended),
                           pick(self.more, later.more),
                           {**(self.marketing or {}), **(later.marketing or {})} or None,
                           pick(self.proof, later.proof), later.complaint_ticket or self.complaint_ticket)


@dataclass(frozen=True)
class FlowResult:
    """A flow's reply to the turn, and what it changes. `llm_reply`, when set, speaks the reply with
    the LLM: called with the turn's Reply, it yields checked clauses and, once consumed, sets the
    reply's text, source and first-token time (a streamed reply is spoken as it comes, after the turn)."""
    text: str = ""
    resolved: bool = False
    grounding: tuple[str, ...] = ()  # the records and passages the text states ("orders:38512074")
    keeps_pending: bool = False
    progress: bool = False  # not answered yet, but a task moved on (a value taken, a read-back): no failure
    intent: str | None = None  # the intent the reply answers, when not the turn's ("the other order")
    handoff: bool = False
    handoff_reason: str | None = None
    handoff_target: str | None = None
    escalation: Escalation | None = None  # replaces the policy's decision for this turn
    llm_reply: Callable[[Reply], Iterator[str]] | None = None
    end_call: str | None = None  # the agent ends the call after saying this, for this reason
    state: StateUpdate = field(default_factory=StateUpdate)

    def after(self, lead: str, sep: str, update: StateUpdate, intent: str | None = None) -> FlowResult:
        """This result said after `lead`, with `update` applied before its own state changes."""
        return replace(self, text=lead + sep + self.text, state=update.then(self.state), intent=intent or self.intent)


@dataclass(frozen=True)
class Tools:
    """The shop's systems a flow may call. Built per turn from the engine, so a swapped LLM is used."""
    shop: ShopRepository
    kb: Any  # the knowledge base (FAQ and policies), or None
    llm: LanguageModel | None
    grounding_checker: Callable[[], Any]  # built on first use
    escalation: EscalationConfig


@dataclass(frozen=True)
class Turn:
    """One caller turn as the flows see it. `state` is read, never written: flows say what changes
    in their FlowResult. `slots` is the state's slots with this turn's added (a flow that hands on
    to another with an order switched passes a Turn with its own `slots`)."""
    text: str
    understanding: Understanding
    intent: str  # read in the conversation's context (a bare number continues the open question)
    language: str
    customer: Customer | None
    state: DialogState
    slots: dict[str, str]
    tools: Tools
    decision: Escalation  # the escalation policy's decision for this turn
    unsure: bool  # the classifier is unsure and the context does not settle it
    streaming: bool  # an LLM reply may be spoken clause by clause

    @property
    def sep(self) -> str:
        return "" if self.language == "zh" else " "


@dataclass(frozen=True)
class Route:
    """`flow` answers the turn when `when` holds and no earlier route's did."""
    name: str
    when: Callable[[Turn], Any]
    flow: Callable[[Turn], FlowResult]


class Router:
    """Picks the flow for a turn: the first route whose condition holds, in the order given. A
    conversation type is a list of routes (see flows/customer_service.py); another one (a marketing
    call) is its own list, or its routes put before these: `Router([*marketing.ROUTES, *ROUTES])`."""

    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names repeat: {names}")

    def choose(self, turn: Turn) -> Route:
        for route in self.routes:
            if route.when(turn):
                return route
        raise LookupError(f"no route takes the turn {turn.text!r} ({turn.intent}); end the table with a catch-all")

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.routes]


def apply(result: FlowResult, reply: Reply, state: DialogState) -> None:
    """The one place a flow's result is written: onto the turn's reply and the dialog state."""
    reply.grounding.extend(result.grounding)
    reply.resolved = result.resolved
    reply.keeps_pending = result.keeps_pending
    reply.progress = result.progress
    if result.intent is not None:
        reply.intent = result.intent
    if result.escalation is not None:
        reply.escalation = result.escalation
    if result.handoff:
        reply.handoff, reply.handoff_reason, reply.handoff_target = True, result.handoff_reason, result.handoff_target
    reply.text = result.text
    reply.end_call = result.end_call
    if result.llm_reply is not None:
        if reply.streaming:
            reply.pieces = result.llm_reply(reply)  # the caller's session speaks each piece as it is checked
            reply.text = ""
        else:
            reply.text = " ".join(result.llm_reply(reply))
    update_state(result.state, state)


def update_state(update: StateUpdate, state: DialogState) -> None:
    """The one place a flow's StateUpdate is written onto the dialog state."""
    if update.pending_intent is not UNCHANGED:
        state.pending_intent = update.pending_intent
    if update.awaiting is not UNCHANGED:
        state.awaiting = update.awaiting
    for slot, value in update.slots.items():
        if value is None:
            state.slots.pop(slot, None)
        else:
            state.slots[slot] = value
    if update.turn_intent is not None:
        state.intents[-1] = update.turn_intent
    if update.apologized is not None:
        state.apologized = update.apologized
    state.tried.extend(update.tried)
    if update.task is not UNCHANGED:
        state.task = update.task
    if update.suspended is not UNCHANGED:
        state.suspended = list(update.suspended)
    if update.more is not UNCHANGED:
        state.more = update.more
    if update.proof is not UNCHANGED:
        state.proof = update.proof
    if update.complaint_ticket is not None:
        state.complaint_ticket = update.complaint_ticket
    if update.marketing and state.marketing is not None:
        for name, value in update.marketing.items():
            setattr(state.marketing, name, value)
