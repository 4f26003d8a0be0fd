"""Service flows that are not about one order: a complaint (ticket, goodwill coupon), a coupon
asked for, warranty/invoice/coupon rules, the caller's account, and shop questions the intents do
not name (answered from the knowledge base)."""

from __future__ import annotations

import re

from ...textnorm import spoken_date
from .. import templates
from .base import FlowResult, Turn
from .facts import knowledge, policy
from .small_talk import small_talk


def complaint(turn: Turn) -> FlowResult:
    """Log the complaint; a known customer also gets the goodwill coupon policy allows. Not resolved:
    a person follows it up."""
    shop, slots, lang = turn.tools.shop, turn.slots, turn.language
    order = shop.order(slots["order_id"]) if "order_id" in slots else None
    if order is not None and turn.state.customer_id and order.customer_id != turn.state.customer_id:
        order = None
    ticket = shop.create_ticket("complaint", order, slots.get("reason"), detail=turn.understanding.text)
    cites = [f"tickets:{ticket.ticket_id}"]
    grant = shop.issue_coupon(turn.customer, reason="complaint") if turn.customer else None
    if grant is not None and grant.coupon_id:
        cites.append(f"coupons:{grant.coupon_id}")
        return FlowResult(templates.render(lang, "complaint_coupon", ticket_id=ticket.ticket_id,
                                           amount=f"{grant.amount:g}", min_spend=f"{grant.min_spend:g}"),
                          grounding=tuple(cites))
    return FlowResult(templates.render(lang, "complaint_ticket", ticket_id=ticket.ticket_id), grounding=tuple(cites))


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
        return FlowResult(said, resolved=True, grounding=tuple(cites))
    cites.append(f"coupons:{grant.coupon_id}")
    issued = templates.render(lang, "coupon_issued", amount=f"{grant.amount:g}", min_spend=f"{grant.min_spend:g}",
                              expires_at=spoken_date(grant.expires_at, lang))
    asked = re.search(r"(\d+)\s*(元|块|yuan|rmb)", text, re.I)
    if asked and float(asked.group(1)) > grant.amount:  # more than policy allows: say so
        issued = templates.render(lang, "coupon_limit", amount=f"{grant.amount:g}") + turn.sep + issued
    return FlowResult(issued, resolved=True, grounding=tuple(cites))


RULES_POLICY = {"aftersales.warranty": "warranty", "aftersales.invoice": "invoice", "promo.coupon": "coupon"}


def rules_question(turn: Turn) -> FlowResult:
    """Warranty, invoices, coupons in general: the knowledge base's passage, else the policy text."""
    cites: list[str] = []
    text = knowledge(turn.tools, turn.understanding.text, turn.language, cites, turn.intent) \
        or policy(turn.tools, RULES_POLICY[turn.intent], turn.language, cites)
    return FlowResult(text, resolved=True, grounding=tuple(cites))


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
