"""RFM segments: the shop's customers split into eight groups by their orders.

Each customer with orders gets three measures, from the orders that were not cancelled (returned
orders still count: the customer bought and came back to the shop):

- R, recency: days from their last order to `today` (fewer is better);
- F, frequency: how many orders;
- M, monetary: what those orders came to.

Each measure is split into high and low at a cut point: by default the median of the customers'
values (a quantile per dimension, configurable), or a fixed threshold (days, orders, amount). A
customer is high when at least as good as the cut: R when `recency_days <= cut`, F when
`frequency >= cut`, M when `monetary >= cut`. The three high/low bits name the segment:

    R     F     M     id           zh            en                   what to say
    high  high  high  champions    重要价值客户   Champions            new arrivals first
    high  high  low   loyal        一般价值客户   Loyal customers      new arrivals
    high  low   high  potential    重要发展客户   Potential loyalists  new arrivals
    high  low   low   new          一般发展客户   New customers        welcome offer
    low   high  high  cant_lose    重要保持客户   Can't lose them      coupon
    low   low   high  at_risk      重要挽留客户   At risk              coupon
    low   high  low   hibernating  一般保持客户   Hibernating          coupon
    low   low   low   lost         一般挽留客户   Lost                 coupon

Customers without a counted order in the window have no segment (`segment` None); `segment_counts`
counts them under `NO_ORDERS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    id: str
    name_zh: str
    name_en: str
    r_high: bool
    f_high: bool
    m_high: bool
    action: str  # what a campaign offers this group: "new_arrivals", "welcome" or "coupon"

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


SEGMENTS: tuple[Segment, ...] = (
    Segment("champions", "重要价值客户", "Champions", True, True, True, "new_arrivals"),
    Segment("loyal", "一般价值客户", "Loyal customers", True, True, False, "new_arrivals"),
    Segment("potential", "重要发展客户", "Potential loyalists", True, False, True, "new_arrivals"),
    Segment("new", "一般发展客户", "New customers", True, False, False, "welcome"),
    Segment("cant_lose", "重要保持客户", "Can't lose them", False, True, True, "coupon"),
    Segment("at_risk", "重要挽留客户", "At risk", False, False, True, "coupon"),
    Segment("hibernating", "一般保持客户", "Hibernating", False, True, False, "coupon"),
    Segment("lost", "一般挽留客户", "Lost", False, False, False, "coupon"),
)
SEGMENT_IDS: tuple[str, ...] = tuple(s.id for s in SEGMENTS)
NO_ORDERS = "no_orders"  # segment_counts' key for customers without a counted order

_BY_BITS = {(s.r_high, s.f_high, s.m_high): s.id for s in SEGMENTS}
_BY_ID = {s.id: s for s in SEGMENTS}


def segment_by_id(segment_id: str) -> Segment | None:
    return _BY_ID.get(segment_id)


@dataclass(frozen=True)
class RfmConfig:
    """How high and low are split. A fixed threshold, when set, replaces that dimension's quantile.

    A quantile q means: high is the best (1 - q) share of the customers with orders, ties at the cut
    included; q = 0.5 is the median, q = 0.8 keeps the top fifth. For R "best" is most recent, so
    its cut is the (1 - q) quantile of days since the last order.
    """

    r_quantile: float = 0.5
    f_quantile: float = 0.5
    m_quantile: float = 0.5
    recent_within_days: float | None = None  # fixed R: high when the last order is this many days ago or fewer
    frequent_from_orders: float | None = None  # fixed F: high from this many orders
    big_from_amount: float | None = None  # fixed M: high from this much spent
    lookback_days: int | None = None  # only orders of the last N days; None: all
    today: date | None = None  # None: the shop's own today (meta), else the calendar's
    excluded_statuses: tuple[str, ...] = ("cancelled",)

    def __post_init__(self) -> None:
        for name in ("r_quantile", "f_quantile", "m_quantile"):
            q = getattr(self, name)
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {q}")
        if self.lookback_days is not None and self.lookback_days < 1:
            raise ValueError(f"lookback_days must be at least 1, got {self.lookback_days}")


@dataclass(frozen=True)
class CustomerRfm:
    customer_id: str
    recency_days: int | None  # None: no counted order
    frequency: int
    monetary: float
    r_high: bool
    f_high: bool
    m_high: bool
    segment: str | None


@dataclass(frozen=True)
class RfmThresholds:
    """The cut points used, and where each came from ("quantile 0.5" or "fixed")."""

    recency_days: float | None  # None: no customer with orders to take a quantile of
    frequency: float | None
    monetary: float | None
    r_source: str
    f_source: str
    m_source: str
    customers_with_orders: int

    def as_dict(self) -> dict:
        return {
            "recency_days": {"cut": self.recency_days, "high_when": "<=", "source": self.r_source},
            "frequency": {"cut": self.frequency, "high_when": ">=", "source": self.f_source},
            "monetary": {"cut": self.monetary, "high_when": ">=", "source": self.m_source},
            "customers_with_orders": self.customers_with_orders,
        }


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, statistics' "inclusive")."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _cut(values: list[float], q: float, fixed: float | None, label: str) -> tuple[float | None, str]:
    if fixed is not None:
        return float(fixed), "fixed"
    return (quantile(values, q) if values else None), label


def thresholds(rfm: Mapping[str, CustomerRfm], config: RfmConfig | None = None) -> RfmThresholds:
    """The cut points `config` gives on these customers' measures (what `compute_rfm` splits at)."""
    bought = [c for c in rfm.values() if c.recency_days is not None]
    return _thresholds([c.recency_days for c in bought], [c.frequency for c in bought],
                       [c.monetary for c in bought], config or RfmConfig())


def _thresholds(days: list[int], orders: list[int], spent: list[float], config: RfmConfig) -> RfmThresholds:
    # R's cut is stated in the config's terms ("quantile 0.5"), taken on days at 1 - q: fewer is better
    r, r_src = _cut(days, 1.0 - config.r_quantile, config.recent_within_days, f"quantile {config.r_quantile:g}")
    f, f_src = _cut(orders, config.f_quantile, config.frequent_from_orders, f"quantile {config.f_quantile:g}")
    m, m_src = _cut(spent, config.m_quantile, config.big_from_amount, f"quantile {config.m_quantile:g}")
    return RfmThresholds(r, f, m, r_src, f_src, m_src, len(days))


def _shop_today(conn: sqlite3.Connection) -> date:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='today'").fetchone()
    except sqlite3.Error:
        row = None
    return date.fromisoformat(row[0]) if row else date.today()


# One pass over the orders, grouped in a temporary b-tree (a full scan beats an index lookup per
# customer: 0.6 s against 1.3 s for 100 000 customers and 400 000 orders), then every customer, with
# or without counted orders. Dates compare as ISO text, so created_at may carry a time of day.
_AGGREGATE_SQL = """
SELECT c.customer_id,
       CAST(julianday(:today) - julianday(substr(a.last, 1, 10)) AS INTEGER),
       COALESCE(a.n, 0),
       COALESCE(a.spent, 0.0)
FROM customers c
LEFT JOIN (SELECT customer_id, MAX(created_at) AS last, COUNT(*) AS n, SUM(amount) AS spent
           FROM orders NOT INDEXED
           WHERE created_at < :after AND created_at >= :since {excluded}
           GROUP BY customer_id) a
       ON a.customer_id = c.customer_id
"""


def compute_rfm(shop_db_path: str | Path, today: date | None = None,
                config: RfmConfig | None = None) -> dict[str, CustomerRfm]:
    """Every customer of the shop by id, with their measures and segment, as of `today`
    (None: `config.today`, else the shop's today). Orders after `today` do not count."""
    config = config or RfmConfig()
    path = Path(shop_db_path)
    if not path.is_file():
        raise FileNotFoundError(f"shop database not found: {path}")
    uri = path.resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        today = today or config.today or _shop_today(conn)
        since = today - timedelta(days=config.lookback_days - 1) if config.lookback_days else date.min
        names = ", ".join(f":x{i}" for i in range(len(config.excluded_statuses)))
        excluded = f"AND status NOT IN ({names})" if names else ""
        args = {"today": today.isoformat(), "after": (today + timedelta(days=1)).isoformat(),
                "since": since.isoformat()}
        args.update({f"x{i}": s for i, s in enumerate(config.excluded_statuses)})
        rows = conn.execute(_AGGREGATE_SQL.format(excluded=excluded), args).fetchall()
    rows = [(cid, days, n, round(spent, 2)) for cid, days, n, spent in rows]
    bought = [r for r in rows if r[2]]
    cuts = _thresholds([r[1] for r in bought], [r[2] for r in bought], [r[3] for r in bought], config)
    rfm = {}
    for cid, days, n, spent in rows:
        if not n:
            rfm[cid] = CustomerRfm(cid, None, 0, 0.0, False, False, False, None)
            continue
        bits = (days <= cuts.recency_days, n >= cuts.frequency, spent >= cuts.monetary)
        rfm[cid] = CustomerRfm(cid, days, n, spent, *bits, _BY_BITS[bits])
    return rfm


def segment_counts(rfm: Mapping[str, CustomerRfm]) -> dict[str, int]:
    """Customers per segment, all eight in `SEGMENTS` order (zero when empty), then `NO_ORDERS`."""
    counts = dict.fromkeys((*SEGMENT_IDS, NO_ORDERS), 0)
    for c in rfm.values():
        counts[c.segment or NO_ORDERS] += 1
    return counts
