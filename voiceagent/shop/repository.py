"""Read access to the shop: orders, parcels, products, customers and policies."""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from .. import paths
from .demo import DEMO_VERSION, build as build_demo_shop


@dataclass(frozen=True)
class Product:
    sku: str
    name_zh: str
    name_en: str
    category: str
    price: float
    stock: int
    restock_date: str | None
    material_zh: str
    material_en: str
    sizes: list[str]
    colors_zh: list[str]
    colors_en: list[str]
    size_advice_zh: str
    size_advice_en: str

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    sku: str
    product_zh: str
    product_en: str
    size: str | None
    color_zh: str | None
    color_en: str | None
    quantity: int
    amount: float
    status: str
    created_at: str
    ship_by: str
    shipped_at: str | None
    delivered_at: str | None
    carrier_zh: str | None
    carrier_en: str | None
    tracking_no: str | None
    refund_status: str | None
    address: str | None = None

    def product(self, lang: str) -> str:
        return self.product_zh if lang == "zh" else self.product_en

    def carrier(self, lang: str) -> str:
        return (self.carrier_zh if lang == "zh" else self.carrier_en) or ""


@dataclass(frozen=True)
class TrackingEvent:
    at: str
    location: str
    event: str


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    kind: str
    order_id: str | None
    reason: str | None


class TicketKeeper(Protocol):
    """Where tickets go when not into the shop file: shop/tickets.py's TicketBook (the call store)."""

    def create(self, kind: str, order: "Order | None", reason: str | None, detail: str = "",
               call_id: str | None = None, day: date | None = None) -> Ticket: ...

    def open_ticket(self, order_id: str, kind: str) -> Ticket | None: ...

    def get(self, ticket_id: str) -> dict | None: ...


@dataclass(frozen=True)
class CouponGrant:
    coupon_id: str | None  # None: refused by policy
    amount: float
    min_spend: float
    expires_at: str
    refusal: str | None = None  # "cooldown", "budget", "unknown_customer"


def match_product(text: str, rows) -> str | None:
    """The sku of the catalog item `text` names, from rows of (sku, keywords, name_zh, name_en): the
    longest keyword or name match wins, exact names beat category words, among equals the first row."""
    lowered = text.lower()
    # English words match whole words (and plurals): "dress" is not in "address"
    words = f" {re.sub(r'[^a-z0-9]+', ' ', lowered)} "
    best, best_len = None, 0
    for sku, keywords, name_zh, name_en in rows:
        for word in [name_zh, name_en.lower(), *keywords.lower().split()]:
            if len(word) < 2:
                continue
            if word.isascii():
                w = " " + word.replace("-", " ")
                found = w + " " in words or w + "s " in words or w + "es " in words
            else:
                found = word in lowered
            if found:
                score = len(word) + (100 if word in (name_zh, name_en.lower()) else 0)
                if score > best_len:
                    best, best_len = sku, score
    return best


@dataclass(frozen=True)
class CouponPolicy:
    """The limits every coupon the agent hands out must fit in (operators set their own)."""

    max_by_tier: tuple[tuple[str, float], ...] = (("new", 20.0), ("regular", 30.0), ("vip", 50.0))
    min_spend: float = 199.0
    valid_days: int = 7
    cooldown_days: int = 30  # one goodwill coupon per customer per month
    daily_budget: float = 3000.0  # all coupons the agent issues in one day
    max_campaign_amount: float = 100.0  # a marketing campaign's coupon (one per customer per campaign)

    def max_for(self, tier: str) -> float:
        return dict(self.max_by_tier).get(tier, 0.0)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    phone: str
    tier: str
    language: str
    points: int


class ShopRepository:
    """Thread-safe: one SQLite connection per thread, opened read-only on the shop file. `tickets`: where
    tickets are kept when not in the shop file (the call store every worker shares, shop/tickets.py)."""

    def __init__(self, db_path: str | Path, coupon_policy: CouponPolicy | None = None,
                 tickets: TicketKeeper | None = None):
        self.db_path = str(db_path)
        self.tickets = tickets
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.coupon_policy = coupon_policy or CouponPolicy()
        row = self._q1("SELECT value FROM meta WHERE key='today'")
        self.today = date.fromisoformat(row[0]) if row else date.today()

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._db().execute(sql, args).fetchall()

    def _q1(self, sql: str, args: tuple = ()) -> tuple | None:
        rows = self._q(sql, args)
        return rows[0] if rows else None

    _ORDER_SQL = """SELECT o.order_id, o.customer_id, o.sku, p.name_zh, p.name_en, o.size, o.color_zh, o.color_en,
        o.quantity, o.amount, o.status, o.created_at, o.ship_by, o.shipped_at, o.delivered_at, o.carrier,
        o.tracking_no, o.refund_status, o.address FROM orders o JOIN products p ON p.sku = o.sku"""

    @staticmethod
    def _order(row: tuple) -> Order:
        carrier = row[15] or ""
        czh, _, cen = carrier.partition("|")
        return Order(*row[:15], czh or None, cen or None, row[16], row[17], row[18])

    def order(self, order_id: str) -> Order | None:
        row = self._q1(self._ORDER_SQL + " WHERE o.order_id = ?", (order_id,))
        return self._order(row) if row else None

    def order_by_tracking(self, tracking_no: str) -> Order | None:
        row = self._q1(self._ORDER_SQL + " WHERE o.tracking_no = ?", (tracking_no.upper(),))
        return self._order(row) if row else None

    def orders_for_customer(self, customer_id: str) -> list[Order]:
        rows = self._q(self._ORDER_SQL + " WHERE o.customer_id = ? ORDER BY o.created_at DESC", (customer_id,))
        return [self._order(r) for r in rows]

    def customer(self, customer_id: str) -> Customer | None:
        row = self._q1("SELECT * FROM customers WHERE customer_id = ?", (customer_id,))
        return Customer(*row) if row else None

    def customer_by_phone(self, phone: str) -> Customer | None:
        row = self._q1("SELECT * FROM customers WHERE phone = ?", (re.sub(r"\D", "", phone),))
        return Customer(*row) if row else None

    def tracking(self, tracking_no: str, lang: str) -> list[TrackingEvent]:
        col = "zh" if lang == "zh" else "en"
        rows = self._q(f"SELECT at, location_{col}, event_{col} FROM tracking_events WHERE tracking_no = ? ORDER BY at",
                       (tracking_no,))
        return [TrackingEvent(*r) for r in rows]

    def policy(self, key: str, lang: str) -> tuple[str, str] | None:
        row = self._q1("SELECT title, body FROM policies WHERE key = ? AND lang = ?", (key, "zh" if lang == "zh" else "en"))
        return (row[0], row[1]) if row else None

    def window_days(self, kind: str) -> int | None:
        """Days after delivery within which a return ("return") or an exchange ("exchange") is
        accepted, as the shop's policy states them ("签收后7天内…"); None when no policy says."""
        for lang, pattern in (("zh", r"(\d+)\s*天内"), ("en", r"within (\d+) days")):
            policy = self.policy(kind, lang)
            m = re.search(pattern, policy[1]) if policy else None
            if m:
                return int(m.group(1))
        return None

    _PRODUCT_SQL = ("SELECT sku, name_zh, name_en, category, price, stock, restock_date, material_zh, material_en,"
                    " sizes, colors_zh, colors_en, size_advice_zh, size_advice_en FROM products")

    @staticmethod
    def _product(r: tuple) -> Product:
        return Product(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                       [s for s in r[9].split(",") if s], r[10].split(","), r[11].split(","), r[12], r[13])

    def products(self) -> list[Product]:
        return [self._product(r) for r in self._q(self._PRODUCT_SQL + " ORDER BY sku")]

    def product(self, sku: str) -> Product | None:
        row = self._q1(self._PRODUCT_SQL + " WHERE sku = ?", (sku,))
        return self._product(row) if row else None

    def find_product(self, text: str) -> Product | None:
        """The catalog item the caller names (see match_product); base line first."""
        rows = self._q("SELECT sku, keywords, name_zh, name_en FROM products ORDER BY sku")
        best = match_product(text, rows)
        return self.product(best) if best is not None else None

    def product_rows(self, skus) -> list[tuple]:
        """(sku, keywords, name_zh, name_en) of these products, for match_product among them."""
        skus = sorted(skus)
        if not skus:
            return []
        return self._q("SELECT sku, keywords, name_zh, name_en FROM products WHERE sku IN "
                       f"({','.join('?' * len(skus))}) ORDER BY sku", tuple(skus))

    # -- actions ------------------------------------------------------------------------------

    def _next_id(self, prefix: str, table: str, column: str) -> str:
        day = self.today.strftime("%y%m%d")
        row = self._q1(f"SELECT COUNT(*) FROM {table} WHERE {column} LIKE ?", (f"{prefix}{day}%",))
        return f"{prefix}{day}{row[0] + 1:04d}"

    def create_ticket(self, kind: str, order: Order | None, reason: str | None, detail: str = "",
                      call_id: str | None = None) -> Ticket:
        if self.tickets is not None:
            return self.tickets.create(kind, order, reason, detail, call_id=call_id, day=self.today)
        with self._write_lock:
            prefix = {"return": "RT", "exchange": "EX", "refund_review": "RF", "complaint": "CP", "callback": "CB"}[kind]
            ticket_id = self._next_id(prefix, "tickets", "ticket_id")
            with sqlite3.connect(self.db_path, timeout=10) as conn:
                conn.execute("INSERT INTO tickets VALUES (?,?,?,?,?,?,?,?)",
                             (ticket_id, kind, order.order_id if order else None, order.customer_id if order else None,
                              reason, detail[:500], "open", datetime.now().isoformat(timespec="seconds")))
        return Ticket(ticket_id, kind, order.order_id if order else None, reason)

    # What the agent may change on an order before it ships, and the column each change writes.
    CHANGEABLE = {"address": ("address",), "size": ("size",), "color": ("color_zh", "color_en")}

    def change_order(self, order_id: str, field: str, value: str | tuple[str, str], source: str = "agent") -> Order:
        """Change an unshipped order's address, size or colour (`value` for colour: (zh, en)), and keep
        the change in `order_changes`. Raises ValueError when the order has shipped or does not exist:
        the caller was told it could be changed, so a refusal here is a fault to report, not to hide."""
        columns = self.CHANGEABLE[field]
        values = value if isinstance(value, tuple) else (value,)
        with self._write_lock, sqlite3.connect(self.db_path, timeout=10) as conn:
            row = conn.execute(f"SELECT status, {columns[-1]} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None or row[0] != "paid":
                raise ValueError(f"order {order_id} cannot be changed ({row[0] if row else 'not found'})")
            conn.execute(f"UPDATE orders SET {', '.join(c + ' = ?' for c in columns)} WHERE order_id = ?",
                         (*values, order_id))
            conn.execute("INSERT INTO order_changes VALUES (?,?,?,?,?,?)",
                         (order_id, field, row[1], values[-1], source, datetime.now().isoformat(timespec="seconds")))
        return self.order(order_id)

    def cancel_order(self, order_id: str, source: str = "agent") -> Order:
        """Cancel an order that has not shipped: the payment goes back (refund processing)."""
        with self._write_lock, sqlite3.connect(self.db_path, timeout=10) as conn:
            row = conn.execute("SELECT status FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None or row[0] != "paid":
                raise ValueError(f"order {order_id} cannot be cancelled ({row[0] if row else 'not found'})")
            conn.execute("UPDATE orders SET status = 'cancelled', refund_status = 'processing' WHERE order_id = ?",
                         (order_id,))
            conn.execute("INSERT INTO order_changes VALUES (?,?,?,?,?,?)",
                         (order_id, "status", "paid", "cancelled", source, datetime.now().isoformat(timespec="seconds")))
        return self.order(order_id)

    def open_ticket(self, order_id: str, kind: str) -> Ticket | None:
        if self.tickets is not None:
            return self.tickets.open_ticket(order_id, kind)
        row = self._q1("SELECT ticket_id, kind, order_id, reason FROM tickets WHERE order_id = ? AND kind = ? "
                       "AND status = 'open'", (order_id, kind))
        return Ticket(*row) if row else None

    def issue_coupon(self, customer: Customer | None, reason: str) -> CouponGrant:
        """A goodwill coupon within policy: the tier's amount, once a month, within the daily budget."""
        policy = self.coupon_policy
        expires = (self.today + timedelta(days=policy.valid_days)).isoformat()
        if customer is None:
            return CouponGrant(None, 0.0, policy.min_spend, expires, "unknown_customer")
        amount = policy.max_for(customer.tier)
        since = (self.today - timedelta(days=policy.cooldown_days)).isoformat()
        with self._write_lock:
            recent = self._q1("SELECT COUNT(*) FROM coupons WHERE customer_id = ? AND issued_at > ?",
                              (customer.customer_id, since))[0]
            if recent:
                return CouponGrant(None, 0.0, policy.min_spend, expires, "cooldown")
            spent = self._q1("SELECT COALESCE(SUM(amount), 0) FROM coupons WHERE issued_at = ?",
                             (self.today.isoformat(),))[0]
            if spent + amount > policy.daily_budget:
                return CouponGrant(None, 0.0, policy.min_spend, expires, "budget")
            coupon_id = self._next_id("CPN", "coupons", "coupon_id")
            with sqlite3.connect(self.db_path, timeout=10) as conn:
                conn.execute("INSERT INTO coupons VALUES (?,?,?,?,?,?,?)",
                             (coupon_id, customer.customer_id, amount, policy.min_spend, reason,
                              self.today.isoformat(), expires))
        return CouponGrant(coupon_id, amount, policy.min_spend, expires)

    def issue_campaign_coupon(self, customer: Customer | None, amount: float, campaign: str,
                              min_spend: float | None = None, valid_days: int | None = None) -> CouponGrant:
        """A marketing campaign's coupon, taken by the customer on the call: at most the policy's
        campaign amount, one per customer per campaign (a second "yes" finds the first), within the
        day's budget. Refusals: "unknown_customer", "already_issued", "over_limit", "budget"."""
        policy = self.coupon_policy
        min_spend = policy.min_spend if min_spend is None else float(min_spend)
        expires = (self.today + timedelta(days=valid_days or policy.valid_days)).isoformat()
        if customer is None:
            return CouponGrant(None, 0.0, min_spend, expires, "unknown_customer")
        if amount <= 0 or amount > policy.max_campaign_amount:
            return CouponGrant(None, 0.0, min_spend, expires, "over_limit")
        with self._write_lock:
            found = self._q1("SELECT coupon_id, amount, min_spend, expires_at FROM coupons WHERE customer_id = ? "
                             "AND reason = ?", (customer.customer_id, _campaign_reason(campaign)))
            if found:
                return CouponGrant(None, found[1], found[2], found[3], "already_issued")
            spent = self._q1("SELECT COALESCE(SUM(amount), 0) FROM coupons WHERE issued_at = ?",
                             (self.today.isoformat(),))[0]
            if spent + amount > policy.daily_budget:
                return CouponGrant(None, 0.0, min_spend, expires, "budget")
            coupon_id = self._next_id("CPN", "coupons", "coupon_id")
            with sqlite3.connect(self.db_path, timeout=10) as conn:
                conn.execute("INSERT INTO coupons VALUES (?,?,?,?,?,?,?)",
                             (coupon_id, customer.customer_id, float(amount), min_spend, _campaign_reason(campaign),
                              self.today.isoformat(), expires))
        return CouponGrant(coupon_id, float(amount), min_spend, expires)

    def campaign_coupons(self, campaign: str) -> list[tuple]:
        """(coupon_id, customer_id, amount) of the coupons a campaign issued."""
        return self._q("SELECT coupon_id, customer_id, amount FROM coupons WHERE reason = ? ORDER BY coupon_id",
                       (_campaign_reason(campaign),))


def _campaign_reason(campaign: str) -> str:
    return f"campaign:{campaign}"


def open_shop(db_path: str = "", tickets: TicketKeeper | None = None) -> ShopRepository:
    """Open the configured shop, building the demo shop on first use. `tickets`: see ShopRepository."""
    path = Path(db_path) if db_path else paths.var_dir() / "shop.db"
    if not db_path:
        needs_build = not path.exists()
        if not needs_build:
            try:
                with sqlite3.connect(path) as conn:
                    row = conn.execute("SELECT value FROM meta WHERE key='demo_version'").fetchone()
                needs_build = row is None or row[0] != DEMO_VERSION
            except sqlite3.Error:
                needs_build = True
        if needs_build:
            build_demo_shop(path)
    elif not path.exists():
        from ..errors import ConfigError

        raise ConfigError(f"shop database not found: {path}")
    return ShopRepository(path, tickets=tickets)
