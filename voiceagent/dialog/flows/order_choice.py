"""Which of the caller's orders a task means: the orders the task can apply to (a return: delivered
within the return window; an address change: not shipped yet...), narrowed by what the caller
mentions (a product, a colour, "the first one", an order number), most recent first. One fits: it is
taken. Several: the caller is asked, each named briefly. None: the most relevant order is explained."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from ...shop import Order
from ...shop.repository import ShopRepository, match_product
from .patterns import DEFAULT_WINDOW_DAYS

ORDINALS = [(re.compile(r"第一(个|单|件|条|双)|头一个|\b(the )?first (one|order)\b|\bthe former\b"), 0),
            (re.compile(r"第二(个|单|件|条|双)|\b(the )?second (one|order)\b|\bthe latter\b"), 1),
            (re.compile(r"第三(个|单|件|条|双)|\b(the )?third (one|order)\b"), 2)]
LATEST = re.compile(r"最近|最新|刚买|刚下|这周|这几天|\b(latest|most recent|newest|last one|recent)\b", re.I)


def delivered_within(order: Order, today: date, days: int) -> bool:
    return order.status == "delivered" and bool(order.delivered_at) \
        and 0 <= (today - date.fromisoformat(order.delivered_at)).days <= days


def fits(kind: str, order: Order, shop: ShopRepository) -> bool:
    """The task can be done on this order (or, for questions, the order is the one likely meant)."""
    if kind in ("aftersales.return", "aftersales.exchange"):
        window_kind = "return" if kind == "aftersales.return" else "exchange"
        window = shop.window_days(window_kind) or DEFAULT_WINDOW_DAYS[window_kind]
        return delivered_within(order, shop.today, window)
    if kind in ("order.modify", "order.cancel"):
        return order.status == "paid"
    if kind == "logistics.track":
        return order.status == "shipped"
    if kind == "order.status":
        return order.status in ("paid", "shipped")
    if kind == "aftersales.refund":
        return bool(order.refund_status)
    return False


def fallback(kind: str, orders: list[Order]) -> Order | None:
    """No order fits: the one to explain the answer on (the latest delivered for a return, the latest
    shipped for a change or a cancellation, the latest for a question)."""
    prefer = {"aftersales.return": ("delivered",), "aftersales.exchange": ("delivered",),
              "order.modify": ("shipped", "delivered"), "order.cancel": ("shipped", "delivered"),
              "logistics.track": ("delivered",), "aftersales.refund": ("returned", "cancelled")}.get(kind, ())
    return next((o for o in orders if o.status in prefer), orders[0] if orders else None)


def mentioned(text: str, orders: list[Order], shop: ShopRepository, products_only: bool = False) -> list[Order]:
    """The orders the words point at: a product named, a colour, an ordinal among `orders`, "the latest".
    `products_only`: a product must be named ("换成灰色的" names the colour wanted, not an order)."""
    if not orders:
        return []
    rows = shop.product_rows({o.sku for o in orders})
    # every product the words fit ("针织毛衣裙" fits the classic line and the base one); a full name
    # said ("经典款针织毛衣裙") picks its own line
    lowered = text.lower()
    exact = {sku for sku, _, zh, en in rows if zh in text or en.lower() in lowered}
    skus = exact or {row[0] for row in rows if match_product(text, [row]) is not None}
    if skus:
        by_product = [o for o in orders if o.sku in skus]
        narrowed = _by_colour(text, by_product)
        narrowed = _by_size(text, narrowed or by_product) or narrowed
        return narrowed or by_product
    if products_only:
        return []
    by_colour = _by_colour(text, orders)
    if by_colour:
        return _by_size(text, by_colour) or by_colour
    by_size = _by_size(text, orders)
    if by_size:
        return by_size
    for pattern, index in ORDINALS:
        if pattern.search(text) and index < len(orders):
            return [orders[index]]
    if LATEST.search(text):
        return [orders[0]]
    return []


def _by_size(text: str, orders: list[Order]) -> list[Order]:
    """"the medium one": the orders bought in the size named (when the sizes tell them apart)."""
    from .wanted import wanted as _wanted

    size = _wanted(text)[0]
    found = [o for o in orders if size and o.size == size]
    return found if found and len(found) < len(orders) else []


def _by_colour(text: str, orders: list[Order]) -> list[Order]:
    lowered = text.lower()
    return [o for o in orders if (o.color_zh and o.color_zh in text) or (o.color_zh and o.color_zh[:-1] + "的" in text)
            or (o.color_en and re.search(rf"\b{re.escape(o.color_en)}\b", lowered))]


@dataclass(frozen=True)
class Choice:
    order: Order | None = None  # the order meant
    candidates: tuple[Order, ...] = ()  # several fit: ask which
    fallback: Order | None = None  # none fits: explain on this one


def choose(kind: str, orders: list[Order], text: str, shop: ShopRepository) -> Choice:
    """The order `kind` means among the caller's `orders` (newest first), given the turn's words."""
    named = mentioned(text, orders, shop)
    if len(named) == 1:
        return Choice(order=named[0])
    fitting = [o for o in (named or orders) if fits(kind, o, shop)]
    if len(fitting) == 1:
        return Choice(order=fitting[0])
    if fitting:
        return Choice(candidates=tuple(fitting))
    if named:  # the caller named it: explain on the one named (the latest of them)
        return Choice(fallback=named[0])
    return Choice(fallback=fallback(kind, orders))


def pick(text: str, candidates: list[Order], shop: ShopRepository) -> Order | None:
    """The caller's answer to "which one?": one of `candidates`, or None."""
    named = mentioned(text, candidates, shop)
    return named[0] if len(named) == 1 else None


def brief(order: Order, lang: str, siblings: list[Order]) -> str:
    """An order named so the caller recognises it: the product, with its colour or date when another
    candidate has the same product."""
    name = order.product(lang)
    same = [o for o in siblings if o is not order and o.sku == order.sku]
    if same:
        colour = order.color_zh if lang == "zh" else order.color_en
        if colour and all((o.color_zh if lang == "zh" else o.color_en) != colour for o in same):
            return f"{colour}的{name}" if lang == "zh" else f"the {colour} {name}"
        if order.size and all(o.size != order.size for o in same):
            return f"{order.size}码的{name}" if lang == "zh" else f"the {name} in size {order.size}"
        if any(o.created_at == order.created_at for o in same):
            return f"订单{order.order_id}的{name}" if lang == "zh" else f"the {name} on order {order.order_id}"
        month, day = order.created_at[5:7], order.created_at[8:10]
        return f"{int(month)}月{int(day)}日买的{name}" if lang == "zh" \
            else f"the {name} ordered on {order.created_at}"
    return name if lang == "zh" else f"the {name}"
