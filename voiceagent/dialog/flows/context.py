"""Reading a turn in the conversation's context, before a flow is chosen: which intent the turn
carries on ("it's 38512074" after "where is my parcel?"), and whether the classifier is too unsure
to act on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..intents import group_probability
from ..nlu import Understanding
from ..slots import reason_category
from .patterns import is_question
from .patterns import (AFTER_SALES_FLOWS, BARE_VALUE, COMPLAINT_CUE, CONTINUATION_INTENTS, CORRECTION, FLOW_WORDS,
                       NEVER_MIND, ORDER_INTENTS, PRODUCT_INTENTS, SWITCH, WANTS_PERSON_CONFIDENCE)
from .state import DialogState


@dataclass(frozen=True)
class InContext:
    intent: str
    reason: str | None = None  # the turn answers "why do you want to return it?"
    resume: bool = False  # the caller comes back to a task left for another ("继续刚才的退货")


RESUME = re.compile(r"继续|接着|回到刚才|刚才(那个|的)(退|换|改|取消|事)|还是(先)?(把|办)|back to|continue|go on with|resume|"
                    r"finish (the|my|that)|where were we", re.I)


def read_for_task(u: Understanding, state: DialogState, text: str) -> InContext | None:
    """The turn read as the answer to what the open task asked, before anything else: "尺码太小了"
    is the return's reason, "5 Main Street" the new address, "the dress" the order, "对" the go-ahead.
    None: the turn is not about the open task (a new request, a question on the side)."""
    from .tasks import ADDRESS_WORDS, NO, YES, answer_as_address, spoken_address

    task = state.open_task()
    if task is None:
        done = state.task
        if state.suspended and (RESUME.search(text) or (done is not None and done.done and YES.search(text)
                                                        and state.history and _offered_resume(state))):
            named = next((t for t in reversed(state.suspended) if FLOW_WORDS.get(t.kind, _NEVER).search(text)), None)
            return InContext((named or state.suspended[-1]).kind, resume=True)
        return None
    if u.cue is not None or NEVER_MIND.search(text):
        return None  # a person asked for, or the task dropped (maybe for another: the router sees the rest)
    if state.suspended and RESUME.search(text) and u.intent != task.kind:
        named = next((t for t in reversed(state.suspended) if FLOW_WORDS.get(t.kind, _NEVER).search(text)), None)
        if named is not None:
            return InContext(named.kind, resume=True)
    explicit_other = u.intent != task.kind and u.intent not in CONTINUATION_INTENTS and u.confidence >= 0.6
    awaiting = task.awaiting
    values = {"order_id", "phone", "tracking_no", "size", "color", "address"} & u.slots.keys()
    if awaiting == "confirm" or awaiting == "change_confirm":
        if YES.search(text) or NO.search(text) or values or reason_category(text) != "other":
            return InContext(task.kind)
    if awaiting == "order" and ("product" in u.slots or values or _points_at_one(text)):
        return InContext(task.kind)
    if awaiting == "order_id" and {"order_id", "phone", "tracking_no"} & u.slots.keys():
        return InContext(task.kind)
    if awaiting == "reason":
        if u.intent in AFTER_SALES_FLOWS and u.intent != task.kind and (
                SWITCH.search(text) or (explicit_other and FLOW_WORDS[u.intent].search(text))):
            return InContext(u.intent)
        if not (explicit_other and is_question(text)) and not (u.intent == "aftersales.complaint" and COMPLAINT_CUE.search(text)):
            return InContext(task.kind, reason_category(text))
    if awaiting == "address" and not is_question(text) and answer_as_address(text):
        return InContext(task.kind)
    if awaiting == "phone" and "phone" in u.slots:
        return InContext(task.kind)
    if awaiting in ("target", "change") and ({"size", "color"} & u.slots.keys() or ADDRESS_WORDS.search(text)
                                             or spoken_address(text) or reason_category(text) != "other"):
        return InContext(task.kind)
    if awaiting == "change" and re.search(r"尺码|颜色|地址|size|colou?r|address", text, re.I):
        return InContext(task.kind)
    # a correction of a value the task holds ("不对，是XL", "no, the address is ..."), whatever is awaited
    if CORRECTION.search(text) and (values or spoken_address(text)) and not explicit_other:
        return InContext(task.kind)
    return None


_NEVER = re.compile(r"(?!x)x")


def _points_at_one(text: str) -> bool:
    from .order_choice import LATEST, ORDINALS

    return bool(LATEST.search(text)) or any(p.search(text) for p, _ in ORDINALS)


def _offered_resume(state: DialogState) -> bool:
    from .. import templates

    last = next((said for role, said in reversed(state.history) if role == "agent"), "")
    return any(templates.render(lang, "resume_offer", task="").rstrip("？?") in last for lang in ("zh", "en")) \
        if last else False


def read_in_context(u: Understanding, state: DialogState, text: str) -> InContext:
    """The turn's intent given the conversation so far: a value continues the question waiting for
    it, a reason answers "why?", a switch between return and exchange moves the flow, and a
    corrected order number re-asks the last order question."""
    for_task = read_for_task(u, state, text)
    if for_task is not None:
        return for_task
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


def reason_from(text: str) -> str:
    return reason_category(text)
