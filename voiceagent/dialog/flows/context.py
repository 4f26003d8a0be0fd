"""Reading a turn in the conversation's context, before a flow is chosen: which intent the turn
carries on ("it's 38512074" after "where is my parcel?"), and whether the classifier is too unsure
to act on."""

from __future__ import annotations

from dataclasses import dataclass

from ..intents import group_probability
from ..nlu import Understanding
from .patterns import (AFTER_SALES_FLOWS, BARE_VALUE, COMPLAINT_CUE, CONTINUATION_INTENTS, CORRECTION, FLOW_WORDS,
                       NEVER_MIND, ORDER_INTENTS, PRODUCT_INTENTS, SWITCH, WANTS_PERSON_CONFIDENCE)
from .state import DialogState


@dataclass(frozen=True)
class InContext:
    intent: str
    reason: str | None = None  # the turn answers "why do you want to return it?"


def read_in_context(u: Understanding, state: DialogState, text: str) -> InContext:
    """The turn's intent given the conversation so far: a value continues the question waiting for
    it, a reason answers "why?", a switch between return and exchange moves the flow, and a
    corrected order number re-asks the last order question."""
    intent = u.intent
    if intent == "handoff.human" and u.cue is None and u.confidence < WANTS_PERSON_CONFIDENCE:
        # no words asking for a person and an unsure classifier ("no, I meant 38512074"): not a request
        intent = "other"
    explicit = intent not in CONTINUATION_INTENTS and u.confidence >= 0.6
    gives_order = bool({"order_id", "phone", "tracking_no"} & u.slots.keys())
    pending = state.pending_intent
    # nothing but a value, maybe as a correction ("订单号是32755708", "sorry, I meant 20241108"):
    # whatever the classifier makes of so few words, the caller answers the open question
    bare = not BARE_VALUE.sub("", CORRECTION.sub("", text))
    if state.awaiting == "reason" and pending:
        if NEVER_MIND.search(text) or intent == "handoff.human":
            return InContext(intent)
        # "actually, exchange it instead": the same order, the other flow (its reason is asked anew)
        if intent in AFTER_SALES_FLOWS and intent != pending and (
                SWITCH.search(text) or (explicit and FLOW_WORDS[intent].search(text))):
            return InContext(intent)
        if intent != "aftersales.complaint" or not COMPLAINT_CUE.search(text):
            # the answer to "why do you want to return it?" is the reason, whatever it sounds like
            return InContext(pending, reason_from(text))
        return InContext(intent)
    if pending:
        # a value after "which order?" / "which product?" continues the question, unless the
        # caller plainly asks something else ("I want to return 38512074")
        supplies = gives_order if pending in ORDER_INTENTS else "product" in u.slots
        if supplies and (bare or not (explicit and intent in ORDER_INTENTS | PRODUCT_INTENTS | {"aftersales.complaint"})):
            return InContext(pending)
        return InContext(intent)
    last = state.intents[-1] if state.intents else None
    if "order_id" in u.slots and last in ORDER_INTENTS and (bare or (not explicit and CORRECTION.search(text))):
        return InContext(last)  # "不对，是55120963" / "it's 32755708" after an answer about another order
    if intent in ("other", "chitchat.greeting") and gives_order and u.confidence < 0.6:
        # an order or tracking number with no clear question around it: the caller wants it looked up
        return InContext("logistics.track" if "tracking_no" in u.slots else "order.status")
    return InContext(intent)


def is_unsure(u: Understanding, intent: str, low_confidence: float) -> bool:
    """Ask a clarifying question rather than answer a question the caller may not have asked."""
    if intent != u.intent or intent == "other":
        return False
    if intent in ("chitchat.greeting", "chitchat.goodbye"):
        return u.confidence < low_confidence
    if u.confidence >= low_confidence:
        return False
    # a value the answer needs (an order number, a product) makes the caller's aim plain enough
    if intent in ORDER_INTENTS and {"order_id", "tracking_no", "phone"} & u.slots.keys():
        return False
    if intent in PRODUCT_INTENTS and "product" in u.slots:
        return False
    return group_probability(intent, u.scores) < low_confidence


_REASON_WORDS = [("尺码", "does_not_fit"), ("大了", "too_big"), ("小了", "too_small"), ("质量", "quality"), ("坏", "damaged"),
                 ("不喜欢", "changed_mind"), ("size", "does_not_fit"), ("big", "too_big"), ("small", "too_small"),
                 ("quality", "quality"), ("broken", "damaged"), ("don't like", "changed_mind"), ("fit", "does_not_fit")]


def reason_from(text: str) -> str:
    lowered = text.lower()
    return next((reason for word, reason in _REASON_WORDS if word in lowered), "other")
