"""Looking facts up for a reply: policies, knowledge-base passages, the caller's order. Each
lookup adds what it used to `cites`, the flow's own list of grounding references."""

from __future__ import annotations

from ...shop import Order
from ...textnorm import spoken_date
from .. import templates
from .base import Tools, Turn


def policy(tools: Tools, key: str, lang: str, cites: list[str]) -> str:
    found = tools.shop.policy(key, lang)
    if found is None:
        return ""
    if f"policies:{key}" not in cites:
        cites.append(f"policies:{key}")
    return found[1]


def knowledge(tools: Tools, question: str, lang: str, cites: list[str], intent: str | None = None) -> str:
    """A knowledge-base passage that answers the question (among those for `intent` when given); or ""."""
    if tools.kb is None:
        return ""
    hit = tools.kb.answer(question, lang, intent)
    if hit is None:
        return ""
    cites.append(f"kb:{hit.passage.id}")
    return hit.passage.answer


def find_order(turn: Turn, cites: list[str]) -> Order | str:
    """The order the caller means; 'ask' when we need the number, 'missing'/'foreign' on failure."""
    shop, slots, customer_id = turn.tools.shop, turn.slots, turn.state.customer_id
    if "order_id" in slots:
        order = shop.order(slots["order_id"])
        if order is None:
            return "missing"
    elif "tracking_no" in slots:
        order = shop.order_by_tracking(slots["tracking_no"])
        if order is None:
            return "missing"
    elif customer_id:
        orders = shop.orders_for_customer(customer_id)
        order = orders[0] if orders else None
        if order is None:
            return "ask"
    elif "phone" in slots and turn.state.phone_said_identifies:
        customer = shop.customer_by_phone(slots["phone"])
        orders = shop.orders_for_customer(customer.customer_id) if customer else []
        if not orders:
            return "ask"
        order = orders[0]
    else:
        return "ask"
    # Never reveal another customer's order to an identified caller.
    if customer_id and order.customer_id != customer_id:
        return "foreign"
    cites.append(f"orders:{order.order_id}")
    return order


def order_values(tools: Tools, order: Order, lang: str) -> dict:
    """The order's facts as the templates name them, spoken in `lang`."""
    events = tools.shop.tracking(order.tracking_no, lang) if order.tracking_no else []
    last = events[-1] if events else None
    last_event = f"{spoken_date(last.at[:10], lang)}{last.location}{last.event}" if last else ""
    if lang == "en" and last:
        last_event = f"{last.event} in {last.location} on {spoken_date(last.at[:10], lang)}"
    return {
        "order_id": order.order_id,
        "product": order.product(lang),
        "ship_by": spoken_date(order.ship_by, lang),
        "shipped_at": spoken_date(order.shipped_at, lang),
        "delivered_at": spoken_date(order.delivered_at, lang),
        "carrier": order.carrier(lang),
        "tracking_no": order.tracking_no,
        "last_event": last_event,
        "status": templates.value(lang, f"status_{order.status}"),
        "refund_status": templates.value(lang, f"refund_{order.refund_status}") if order.refund_status else "",
        "amount": f"{order.amount:g}",
    }
