"""Order flows: status, tracking, cancel/modify, return and exchange (eligibility, reason, ticket),
refund, a rules question on the way to an order, and "no, the other order"."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from ...shop import Order
from .. import templates
from . import keypad
from .base import FlowResult, StateUpdate, Turn
from .facts import find_order, knowledge, order_values, policy
from .patterns import DEFAULT_WINDOW_DAYS, MY_ORDER, ORDER_INTENTS, POLICY_QUESTION_INTENTS, is_question


def order_question(turn: Turn) -> FlowResult:
    return answer_about_order(turn, turn.intent)


def answer_about_order(turn: Turn, intent: str) -> FlowResult:
    """`intent`'s answer for the order the caller means (asked for when not known yet)."""
    lang, tools = turn.language, turn.tools
    asked = turn.understanding.text
    cites: list[str] = []
    known = None  # the knowledge base's answer to this turn: looked up at most once, for either use below
    if about_the_rules(turn, cites):
        known = knowledge(tools, asked, lang, cites, intent)
        if known:
            return general_answer(intent, lang, known, cites)
    found = find_order(turn, cites)
    if found == "ask":
        # a policy question ("who pays return shipping?") gets its answer before the order is asked for
        if known is None and intent in POLICY_QUESTION_INTENTS and is_question(asked):
            known = knowledge(tools, asked, lang, cites, intent)
        lead = known or templates.ack(lang, intent)
        # the number asked for already, and a try heard with none usable: on a call, the keypad
        failed = turn.state.pending_intent in ORDER_INTENTS and keypad.number_attempt(asked, turn.understanding.slots)
        ask, moved = keypad.ask_order_id(turn.state, lang, failed)
        return FlowResult((("" if failed else lead) + turn.sep + ask).strip(), grounding=tuple(cites), progress=moved,
                          state=StateUpdate(pending_intent=intent))
    if found == "missing":
        # the number that was not found is dropped (the order number, else the tracking number)
        bad = turn.slots.get("order_id")
        dropped: dict[str, str | None] = {"order_id": None} if "order_id" in turn.slots else {}
        if not bad:
            bad = turn.slots.get("tracking_no", "")
            dropped["tracking_no"] = None
        text, moved = keypad.order_not_found(turn.state, lang, bad)
        return FlowResult(text, grounding=tuple(cites), progress=moved,
                          state=StateUpdate(pending_intent=intent, slots=dropped))
    if found == "foreign":
        return FlowResult(templates.render(lang, "order_not_yours"), grounding=tuple(cites),
                          state=StateUpdate(pending_intent=intent, slots={"order_id": None}))
    order: Order = found

    def answered(key: str, **values) -> FlowResult:
        return FlowResult(templates.render(lang, key, **values), resolved=True, grounding=tuple(cites))

    v = order_values(tools, order, lang)
    if intent == "order.status" or (intent == "logistics.track" and not order.tracking_no):
        if intent == "logistics.track":
            return answered("tracking_none", **v)
        return answered(f"order_{order.status}", **v)
    if intent == "logistics.track":
        return answered("order_delivered" if order.status == "delivered" else "order_shipped", **v)
    if order.status in ("cancelled", "returned") and intent in ("order.cancel", "order.modify", "aftersales.return",
                                                               "aftersales.exchange"):
        return answered(f"order_{order.status}", **v)
    if intent in ("order.cancel", "order.modify"):
        rules = policy(tools, "cancel" if intent == "order.cancel" else "shipping", lang, cites)
        verb = "cancel" if intent == "order.cancel" else "modify"
        return answered(f"can_{verb}" if order.status == "paid" else f"cannot_{verb}", policy=rules, **v)
    if intent in ("aftersales.return", "aftersales.exchange"):
        kind = "return" if intent == "aftersales.return" else "exchange"
        rules = policy(tools, kind, lang, cites)
        window = tools.shop.window_days(kind) or DEFAULT_WINDOW_DAYS[kind]
        if order.status != "delivered" or not order.delivered_at:
            return answered(f"{kind}_not_delivered", policy=rules, **v)
        age = (tools.shop.today - date.fromisoformat(order.delivered_at)).days
        if age > window:
            return answered(f"{kind}_expired", policy=rules, window=window, **v)
        return after_sales_ticket(turn, intent, order, v, cites)
    if intent == "aftersales.refund":
        rules = policy(tools, "refund", lang, cites)
        return answered("refund_status" if order.refund_status else "refund_none", policy=rules, **v)
    return answered("clarify")


def about_the_rules(turn: Turn, cites: list[str]) -> bool:
    """A question about the rules ("退货运费谁出", "how soon do you ship?"), not about one order of
    the caller's. An order already on the table ("什么时候能送到" after a parcel answer, "那能取消吗"
    after the caller's latest order was read out) is the one asked about."""
    text = turn.understanding.text
    intents = turn.state.intents
    previous = intents[-2] if len(intents) > 1 else None
    return not (cites or {"order_id", "phone", "tracking_no"} & turn.slots.keys()
                or previous in ORDER_INTENTS or not is_question(text) or MY_ORDER.search(text))


def general_answer(intent: str, lang: str, known: str, cites: list[str]) -> FlowResult:
    """The knowledge base's answer to a rules question; the order flow stays open for a number."""
    return FlowResult(known + ("" if lang == "zh" else " ") + templates.render(lang, "policy_offer"), resolved=True,
                      keeps_pending=True, grounding=tuple(cites), state=StateUpdate(pending_intent=intent))


def after_sales_ticket(turn: Turn, intent: str, order: Order, v: dict, cites: list[str]) -> FlowResult:
    """The seeds' return flow: order, eligibility, reason, then the ticket."""
    lang, tools = turn.language, turn.tools
    kind = "return" if intent == "aftersales.return" else "exchange"
    existing = tools.shop.open_ticket(order.order_id, kind)
    if existing is not None:
        cites.append(f"tickets:{existing.ticket_id}")
        return FlowResult(templates.render(lang, "ticket_exists", ticket_id=existing.ticket_id, **v), resolved=True,
                          grounding=tuple(cites))
    if "reason" not in turn.slots:
        return FlowResult(templates.render(lang, "ask_reason", **v), grounding=tuple(cites),
                          state=StateUpdate(pending_intent=intent, awaiting="reason"))
    ticket = tools.shop.create_ticket(kind, order, turn.slots["reason"])
    cites.append(f"tickets:{ticket.ticket_id}")
    # what happens next is the policy's: refund times after a return, shipping the new item after an exchange
    rules = policy(tools, "refund" if kind == "return" else "exchange", lang, cites)
    return FlowResult(templates.render(lang, f"{kind}_ticket", ticket_id=ticket.ticket_id, policy=rules, **v),
                      resolved=True, grounding=tuple(cites))


def other_order(turn: Turn) -> FlowResult:
    """"No, the other order": the caller's next most recent order, or ask which one."""
    current = turn.slots["order_id"]
    state, lang = turn.state, turn.language
    last_order_question = state.pending_intent or next((i for i in reversed(state.intents[:-1]) if i in ORDER_INTENTS),
                                                       "order.status")
    if state.customer_id:
        others = [o for o in turn.tools.shop.orders_for_customer(state.customer_id) if o.order_id != current]
        if others:
            switched = {**turn.slots, "order_id": others[0].order_id}
            answer = answer_about_order(replace(turn, slots=switched), last_order_question)
            return answer.after(templates.render(lang, "other_order", order_id=others[0].order_id), turn.sep,
                                StateUpdate(slots={"order_id": others[0].order_id}), intent=last_order_question)
    return FlowResult(templates.render(lang, "which_order"),
                      state=StateUpdate(pending_intent=last_order_question, slots={"order_id": None}))
