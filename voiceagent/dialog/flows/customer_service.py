"""The customer-service conversation: its routing table, read top to bottom. The first route whose
condition holds answers the turn, so the order is the precedence: the escalation decision first,
then refusals and changes of course, then the question the turn asks, and a catch-all last."""

from __future__ import annotations

from ..safety import is_injection
from . import control, orders, ownership, products, service, small_talk, tasks
from .base import Route, Turn
from .patterns import MORE_DETAILS
from .patterns import ACTION_CONFIDENCE, CODE_LIKE, COMPLAINT_CUE, COUPON_REQUEST, NEVER_MIND, OTHER_ORDER, \
    ORDER_INTENTS, PRODUCT_INTENTS
from .state import TASK_KINDS


def _wants_other_order(t: Turn) -> bool:
    if t.state.open_task() is not None:
        return False  # a task picks its order itself (tasks.gather)
    return bool(OTHER_ORDER.search(t.text)) and "order_id" not in t.understanding.slots and "order_id" in t.slots


def _change_of_mind(t: Turn) -> bool:
    # "算了，先帮我查物流": the open task is left (kept to come back to) for the new one
    if tasks.answers_reason(t):
        return False
    task = t.state.open_task()
    return task is not None and bool(NEVER_MIND.search(t.text)) and t.intent in TASK_KINDS and t.intent != task.kind \
        and t.understanding.confidence >= 0.5


def _complaint_on_a_guess(t: Turn) -> bool:
    # "I ordered a blender two weeks ago": no ticket unless the classifier is sure or the caller says so
    return t.intent == "aftersales.complaint" and t.understanding.confidence < ACTION_CONFIDENCE \
        and not COMPLAINT_CUE.search(t.understanding.text)


ROUTES = [
    Route("callback already booked", lambda t: t.decision.action == "transfer" and control.transfer_exhausted(t),
          control.callback_pending),
    Route("transfer to a person", lambda t: t.decision.action == "transfer", control.handoff),
    # an order's details only to its proven owner: the phone's last four digits asked first
    Route("prove the order is yours", lambda t: ownership.unproven_order(t) is not None, ownership.ask_proof),
    Route("details on request", lambda t: t.state.more and MORE_DETAILS.search(t.text) and len(t.text) < 30,
          control.details),
    Route("refuse an attempt on the rules", lambda t: is_injection(t.text) or CODE_LIKE.search(t.text), control.refuse),
    Route("change of mind", _change_of_mind, tasks.task_turn),
    Route("never mind", lambda t: (t.state.pending_intent or t.state.task) and NEVER_MIND.search(t.text)
          and not tasks.names_another_target(t) and not tasks.answers_reason(t),
          control.never_mind),
    Route("the other order", _wants_other_order, orders.other_order),
    Route("the same for another item", tasks.same_for_another, tasks.task_for_another),
    Route("not understood", lambda t: t.unsure, control.ask_to_clarify),
    Route("task", lambda t: t.intent in TASK_KINDS, tasks.task_turn),
    Route("order question", lambda t: t.intent in ORDER_INTENTS, orders.order_question),
    Route("product question", lambda t: t.intent in PRODUCT_INTENTS, products.product_question),
    Route("complaint on a guess", _complaint_on_a_guess, control.clarify),
    Route("complaint", lambda t: t.intent == "aftersales.complaint", service.complaint),
    Route("coupon request", lambda t: t.intent == "promo.coupon" and COUPON_REQUEST.search(t.understanding.text),
          service.coupon_request),
    Route("rules question", lambda t: t.intent in service.RULES_POLICY, service.rules_question),
    Route("account", lambda t: t.intent == "account.info", service.account),
    Route("shop question or small talk", lambda t: t.intent == "other", service.shop_question),
    Route("greeting or goodbye", lambda t: t.intent in small_talk.CHITCHAT_TEMPLATE, small_talk.chitchat),
    Route("anything else", lambda t: True, control.clarify),
]
