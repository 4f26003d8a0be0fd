"""Service flows that are not about one order: a complaint (ticket, goodwill coupon), a coupon
asked for, warranty/invoice/coupon rules, the caller's account, and shop questions the intents do
not name (answered from the knowledge base)."""

from __future__ import annotations

import re

from ...textnorm import spoken_date
from .. import templates
from ..slots import reason_category
from . import order_choice
from .base import FlowResult, StateUpdate, Turn
from .state import Task
from .facts import knowledge, policy
from .small_talk import small_talk


def complaint(turn: Turn) -> FlowResult:
    """Log the complaint (once a call: a second "log it" is told the ticket it has); a known customer
    also gets the goodwill coupon policy allows. Not resolved: a person follows it up. The order is
    the one named, by number or by product."""
    shop, slots, lang, state = turn.tools.shop, turn.slots, turn.language, turn.state
    last = state.task if state.task is not None and state.task.kind == "aftersales.complaint" else None
    task_slots = dict(last.slots) if last is not None else {}
    order = shop.order(slots["order_id"]) if "order_id" in turn.understanding.slots else None
    if order is None and state.customer_id:
        # a complaint already on an order moves to another only when that one's product is named
        named = order_choice.mentioned(turn.text, shop.orders_for_customer(state.customer_id), shop,
                                       products_only="order_id" in task_slots)
        order = named[0] if len(named) == 1 else None
    if order is None and "order_id" in task_slots:
        order = shop.order(task_slots["order_id"])
    if order is None and "order_id" in slots:
        order = shop.order(slots["order_id"])
    if order is not None and state.customer_id and order.customer_id != state.customer_id:
        order = None
    if order is not None:
        task_slots["order_id"] = order.order_id
    if (reason := reason_category(turn.text)) != "other":
        task_slots["reason"] = reason
    cites = [f"orders:{order.order_id}"] if order is not None else []
    logged = last.result if last is not None and last.result else state.complaint_ticket
    if logged:  # logged already in this conversation: one complaint ticket at most, however angry the turns
        cites.append(f"tickets:{logged}")
        return FlowResult(templates.render(lang, "complaint_logged", ticket_id=logged), resolved=True,
                          grounding=tuple(cites), state=StateUpdate(task=Task("aftersales.complaint", task_slots,
                                                                                    done=True, result=logged)))
    ticket = shop.create_ticket("complaint", order, task_slots.get("reason") or slots.get("reason"),
                                detail=turn.understanding.text)
    cites.append(f"tickets:{ticket.ticket_id}")
    done = StateUpdate(task=Task("aftersales.complaint", task_slots, done=True, result=ticket.ticket_id),
                       complaint_ticket=ticket.ticket_id)
    grant = shop.issue_coupon(turn.customer, reason="complaint") if turn.customer else None
    if grant is not None and grant.coupon_id:
        cites.append(f"coupons:{grant.coupon_id}")
        return FlowResult(templates.render(lang, "complaint_coupon", ticket_id=ticket.ticket_id,
                                           amount=f"{grant.amount:g}", min_spend=f"{grant.min_spend:g}"),
                          grounding=tuple(cites), state=done)
    return FlowResult(templates.render(lang, "complaint_ticket", ticket_id=ticket.ticket_id), grounding=tuple(cites),
                      state=done)


def coupon_task(turn: Turn) -> StateUpdate:
    """A coupon asked about is the conversation's task, unless it is a question beside an open one."""
    return StateUpdate() if turn.state.open_task() is not None else StateUpdate(task=Task("promo.coupon", done=True))


def coupon_request(turn: Turn) -> FlowResult:
    """A coupon asked for: issued within the coupon policy, or the policy's reason why not."""
    shop, lang, text = turn.tools.shop, turn.language, turn.understanding.text
    cites: list[str] = []
    rules = policy(turn.tools, "coupon", lang, cites)
    grant = shop.issue_coupon(turn.customer, reason="caller request")
    if grant.coupon_id is None:
        key = {"cooldown": "coupon_cooldown", "budget": "coupon_budget"}.get(grant.refusal or "")
        said = templates.render(lang, key, policy=rules, cooldown_days=shop.coupon_policy.cooldown_days) \
            if key else rules
        return FlowResult(said, resolved=True, grounding=tuple(cites), state=coupon_task(turn))
    cites.append(f"coupons:{grant.coupon_id}")
    issued = templates.render(lang, "coupon_issued", amount=f"{grant.amount:g}", min_spend=f"{grant.min_spend:g}",
                              expires_at=spoken_date(grant.expires_at, lang))
    asked = re.search(r"(\d+)\s*(元|块|yuan|rmb)", text, re.I)
    if asked and float(asked.group(1)) > grant.amount:  # more than policy allows: say so
        issued = templates.render(lang, "coupon_limit", amount=f"{grant.amount:g}") + turn.sep + issued
    return FlowResult(issued, resolved=True, grounding=tuple(cites), state=coupon_task(turn))


RULES_POLICY = {"aftersales.warranty": "warranty", "aftersales.invoice": "invoice", "promo.coupon": "coupon"}


def rules_question(turn: Turn) -> FlowResult:
    """Warranty, invoices, coupons in general: the knowledge base's passage, else the policy text."""
    cites: list[str] = []
    text = knowledge(turn.tools, turn.understanding.text, turn.language, cites, turn.intent) \
        or policy(turn.tools, RULES_POLICY[turn.intent], turn.language, cites)
    update = coupon_task(turn) if turn.intent == "promo.coupon" else StateUpdate()
    return FlowResult(text, resolved=True, grounding=tuple(cites), state=update)


def account(turn: Turn) -> FlowResult:
    """The caller's tier and points with the membership rules (the rules alone for an unknown caller)."""
    lang, customer = turn.language, turn.customer
    cites: list[str] = []
    rules = policy(turn.tools, "membership", lang, cites)
    if not customer:
        return FlowResult(rules, resolved=True, grounding=tuple(cites))
    cites.append(f"customers:{customer.customer_id}")
    return FlowResult(templates.render(lang, "account", tier=templates.value(lang, f"tier_{customer.tier}"),
                                       points=customer.points, policy=rules), resolved=True, grounding=tuple(cites))


def shop_question(turn: Turn) -> FlowResult:
    """A turn no intent names: a knowledge-base answer when there is one, else small talk that steers
    back to the shop (not resolved)."""
    cites: list[str] = []
    found = knowledge(turn.tools, turn.understanding.text, turn.language, cites)
    if found:
        return FlowResult(found, resolved=True, grounding=tuple(cites))
    return small_talk(turn, "other", resolved=False)
