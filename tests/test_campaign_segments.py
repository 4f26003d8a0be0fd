"""RFM segments of the shop's customers and the A/B experiments on campaign scripts."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from voiceagent.campaigns.experiments import (Assigner, NoEligibleVariant, Variant, two_proportion_test,
                                              variant_report, wilson_interval)
from voiceagent.campaigns.rfm import (NO_ORDERS, SEGMENT_IDS, SEGMENTS, RfmConfig, compute_rfm, segment_counts,
                                      thresholds)

SCHEMA = Path(__file__).resolve().parent.parent / "voiceagent" / "shop" / "schema.sql"


@pytest.fixture(scope="module")
def shop():
    from voiceagent.shop.repository import open_shop

    return open_shop("")


@pytest.fixture(scope="module")
def demo_rfm(shop):
    return compute_rfm(shop.db_path, shop.today)


def _counted(shop) -> dict[str, tuple[str, int, float]]:
    """customer -> (last order day, orders, amount) over the orders that were not cancelled, straight from SQL."""
    with sqlite3.connect(shop.db_path) as db:
        rows = db.execute("SELECT customer_id, MAX(created_at), COUNT(*), SUM(amount) FROM orders "
                          "WHERE status != 'cancelled' GROUP BY customer_id").fetchall()
    return {cid: (last, n, amount) for cid, last, n, amount in rows}


def test_segments_are_eight_with_readable_names():
    assert len(SEGMENT_IDS) == len(set(SEGMENT_IDS)) == 8
    assert {"champions", "loyal", "potential", "new", "at_risk", "cant_lose", "hibernating", "lost"} == set(SEGMENT_IDS)
    # the eight high/low combinations, each named once
    assert len({(s.r_high, s.f_high, s.m_high) for s in SEGMENTS}) == 8
    names = {s.id: s for s in SEGMENTS}
    assert names["champions"].name("zh") == "重要价值客户" and names["at_risk"].name("zh") == "重要挽留客户"
    assert all(s.name_en and s.name_zh for s in SEGMENTS)


def test_every_customer_with_orders_is_in_exactly_one_segment(shop, demo_rfm):
    counted = _counted(shop)
    with sqlite3.connect(shop.db_path) as db:
        customers = {r[0] for r in db.execute("SELECT customer_id FROM customers")}
    assert set(demo_rfm) == customers
    for cid, c in demo_rfm.items():
        if cid in counted:
            assert c.segment in SEGMENT_IDS
            seg = next(s for s in SEGMENTS if s.id == c.segment)
            assert (seg.r_high, seg.f_high, seg.m_high) == (c.r_high, c.f_high, c.m_high)
            last, n, amount = counted[cid]
            assert c.frequency == n and c.monetary == pytest.approx(amount)
            assert c.recency_days == (shop.today - date.fromisoformat(last)).days
        else:  # no order, or only cancelled ones
            assert c.segment is None and c.frequency == 0 and c.recency_days is None
    counts = segment_counts(demo_rfm)
    assert list(counts) == [*SEGMENT_IDS, NO_ORDERS]
    assert sum(counts.values()) == len(customers)
    assert sum(counts[s] for s in SEGMENT_IDS) == len(counted)
    assert counts[NO_ORDERS] == len(customers) - len(counted) > 0
    assert sum(1 for s in SEGMENT_IDS if counts[s]) >= 6  # the demo shop spreads over the groups


def test_thresholds_are_the_configured_quantiles(shop, demo_rfm):
    bought = [c for c in demo_rfm.values() if c.segment]
    days = [c.recency_days for c in bought]
    orders = [c.frequency for c in bought]
    spent = [c.monetary for c in bought]
    cuts = thresholds(demo_rfm)
    assert cuts.customers_with_orders == len(bought)
    assert (cuts.recency_days, cuts.frequency, cuts.monetary) == pytest.approx(
        (np.median(days), np.median(orders), np.median(spent)))
    assert cuts.as_dict()["monetary"]["source"] == "quantile 0.5"

    config = RfmConfig(r_quantile=0.8, f_quantile=0.25, m_quantile=0.8)
    rfm = compute_rfm(shop.db_path, shop.today, config)
    cuts = thresholds(rfm, config)
    # R: high is the most recent fifth, so the cut is the 20th percentile of days since the last order
    assert cuts.recency_days == pytest.approx(np.percentile(days, 20))
    assert cuts.frequency == pytest.approx(np.percentile(orders, 25))
    assert cuts.monetary == pytest.approx(np.percentile(spent, 80))
    m_high = [c for c in rfm.values() if c.m_high]
    assert abs(len(m_high) / len(bought) - 0.2) < 0.01  # amounts rarely tie: the top fifth
    assert all((c.m_high == (c.monetary >= cuts.monetary)) and (c.r_high == (c.recency_days <= cuts.recency_days))
               for c in rfm.values() if c.segment)


def test_demo_shop_champion_and_lost_customer(shop, demo_rfm):
    counted = _counted(shop)
    median_spent = np.median([amount for _, _, amount in counted.values()])
    yesterday = (shop.today - timedelta(days=1)).isoformat()
    # the most frequent, biggest spender among those who ordered yesterday
    champion = max((cid for cid, (last, _, _) in counted.items() if last >= yesterday),
                   key=lambda cid: counted[cid][1:])
    assert demo_rfm[champion].segment == "champions"
    # the one-time small buyer whose order is the oldest
    gone = min((cid for cid, (_, n, amount) in counted.items() if n == 1 and amount < median_spent),
               key=lambda cid: counted[cid][0])
    assert (shop.today - date.fromisoformat(counted[gone][0])).days > 20
    assert demo_rfm[gone].segment == "lost"


def test_config_changes_move_customers(shop, demo_rfm):
    stricter = compute_rfm(shop.db_path, shop.today, RfmConfig(m_quantile=0.9))
    moved = [cid for cid, c in demo_rfm.items() if c.segment == "champions" and stricter[cid].segment == "loyal"]
    assert moved and all(stricter[cid].monetary < thresholds(stricter, RfmConfig(m_quantile=0.9)).monetary
                         for cid in moved)
    assert segment_counts(stricter)["champions"] < segment_counts(demo_rfm)["champions"]

    # fixed thresholds: everyone who ordered within 30 days counts as recent
    fixed = RfmConfig(recent_within_days=30, frequent_from_orders=5, big_from_amount=3000)
    rfm = compute_rfm(shop.db_path, shop.today, fixed)
    cuts = thresholds(rfm, fixed)
    assert (cuts.recency_days, cuts.frequency, cuts.monetary) == (30, 5, 3000) and cuts.r_source == "fixed"
    assert all(c.r_high == (c.recency_days <= 30) and c.f_high == (c.frequency >= 5) for c in rfm.values() if c.segment)
    assert sum(c.r_high for c in rfm.values()) > sum(c.r_high for c in demo_rfm.values())

    # a lookback window: older orders do not count, and who ordered only before it has no segment
    week = compute_rfm(shop.db_path, shop.today, RfmConfig(lookback_days=7))
    assert all(c.recency_days is None or c.recency_days < 7 for c in week.values())
    assert segment_counts(week)[NO_ORDERS] > segment_counts(demo_rfm)[NO_ORDERS]
    # today from the config, when not given
    earlier = compute_rfm(shop.db_path, config=RfmConfig(today=shop.today - timedelta(days=10)))
    assert all(c.recency_days is None or c.recency_days >= 0 for c in earlier.values())
    assert segment_counts(earlier)[NO_ORDERS] > segment_counts(demo_rfm)[NO_ORDERS]


def _tiny_shop(path: Path, today: date, orders: list[tuple[str, int, float, str]]) -> str:
    """A shop with customers C1..C6 and orders (customer, days ago, amount, status)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.read_text(encoding="utf-8"))
    db.executemany("INSERT INTO customers VALUES (?, ?, '13800000000', 'regular', 'zh', 0)",
                   [(f"C{i}", f"n{i}") for i in range(1, 7)])
    db.execute("INSERT INTO products (sku, name_zh, name_en, category, keywords, price, stock, material_zh, "
               "material_en, sizes, colors_zh, colors_en, size_advice_zh, size_advice_en) "
               "VALUES ('P1', '衣', 'shirt', 'top', '', 1, 1, '', '', '', '', '', '', '')")
    for i, (cid, days_ago, amount, status) in enumerate(orders):
        created = (today - timedelta(days=days_ago)).isoformat()
        db.execute("INSERT INTO orders (order_id, customer_id, sku, quantity, amount, status, created_at, ship_by) "
                   "VALUES (?, ?, 'P1', 1, ?, ?, ?, ?)", (f"O{i}", cid, amount, status, created, created))
    db.execute("INSERT INTO meta VALUES ('today', ?)", (today.isoformat(),))
    db.commit()
    db.close()
    return str(path)


def test_tiny_shop_segments_and_cancelled_orders(tmp_path):
    today = date(2026, 3, 1)
    orders = [("C1", 1, 900, "delivered"), ("C1", 5, 800, "paid"), ("C1", 9, 700, "returned"),  # champion
              ("C2", 120, 20, "delivered"),                                                  # long gone, once, small
              ("C3", 2, 30, "delivered"), ("C3", 60, 5000, "cancelled"),                     # recent, once, small
              ("C4", 90, 2000, "delivered"), ("C4", 80, 1500, "shipped"), ("C4", 70, 900, "paid"),  # can't lose
              ("C5", 3, 10000, "cancelled"),                                                 # only cancelled
              ("C6", -2, 50, "paid")]                                                        # after today
    rfm = compute_rfm(_tiny_shop(tmp_path / "shop.db", today, orders))
    assert rfm["C1"].segment == "champions" and rfm["C1"].frequency == 3
    assert rfm["C2"].segment == "lost"
    assert rfm["C3"].segment == "new" and rfm["C3"].monetary == 30  # the cancelled big order is not money spent
    assert rfm["C4"].segment == "cant_lose"
    assert rfm["C5"].segment is None and rfm["C6"].segment is None
    assert segment_counts(rfm)[NO_ORDERS] == 2
    # cancelled orders counted when the operator says so
    with_cancelled = compute_rfm(tmp_path / "shop.db", config=RfmConfig(excluded_statuses=()))
    assert with_cancelled["C5"].segment is not None and with_cancelled["C3"].monetary == 5030


def test_shop_without_orders_does_not_crash(tmp_path):
    rfm = compute_rfm(_tiny_shop(tmp_path / "empty.db", date(2026, 3, 1), []))
    assert all(c.segment is None for c in rfm.values()) and len(rfm) == 6
    counts = segment_counts(rfm)
    assert counts[NO_ORDERS] == 6 and all(counts[s] == 0 for s in SEGMENT_IDS)
    assert thresholds(rfm).monetary is None


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="m_quantile"):
        RfmConfig(m_quantile=1.5)
    with pytest.raises(ValueError, match="lookback_days"):
        RfmConfig(lookback_days=0)
    assert replace(RfmConfig(), r_quantile=0.7).r_quantile == 0.7


# --- experiments -------------------------------------------------------------------------------

def test_wilson_interval_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(150, 1000)
    assert lo < 0.15 < hi and hi - lo < 0.05


def test_two_proportion_test_flags_real_differences_only():
    clear = two_proportion_test(100, 1000, 150, 1000)
    assert clear["significant"] and clear["p_value"] < 0.001 and clear["z"] < 0
    assert not two_proportion_test(10, 100, 12, 100)["significant"]
    assert two_proportion_test(10, 100, 12, 100)["p_value"] > 0.5
    assert two_proportion_test(1, 0, 5, 10) == {"z": 0.0, "p_value": 1.0, "significant": False}
    assert not two_proportion_test(0, 50, 0, 50)["significant"]


def test_variant_report_says_when_a_difference_is_significant():
    report = variant_report({"A": {"contacts": 1500, "answered": 1000, "converted": 100},
                             "B": {"contacts": 1500, "answered": 1000, "converted": 150},
                             "C": {"contacts": 10, "answered": 0, "converted": 0}})
    assert report["best"] == "B"
    assert report["variants"]["B"]["conversion_rate"] == pytest.approx(0.15)
    assert report["variants"]["C"]["conversion_rate"] is None
    lo, hi = report["variants"]["A"]["ci95"]
    assert lo < 0.10 < hi
    by_other = {c["other"]: c for c in report["comparison"]}
    assert by_other["A"]["significant"] and by_other["A"]["verdict"].startswith("B converts better than A")
    assert not by_other["C"]["significant"]
    close = variant_report({"A": {"contacts": 100, "answered": 100, "converted": 10},
                            "B": {"contacts": 100, "answered": 100, "converted": 12}})
    assert not close["comparison"][0]["significant"]
    assert close["comparison"][0]["verdict"].startswith("no significant difference")
    assert variant_report({"A": {"contacts": 3, "answered": 0, "converted": 0}}) == {
        "variants": {"A": {"contacts": 3, "answered": 0, "converted": 0, "conversion_rate": None, "ci95": [0.0, 1.0]}},
        "best": None, "comparison": []}


def _run(method: str, rates: dict[str, float], contacts: int, seed: int) -> dict[str, int]:
    """A campaign where every contact answers and converts at its variant's rate: contacts per variant."""
    assigner = Assigner([Variant(v) for v in rates], method, seed=seed)
    dice = random.Random(seed + 1)
    stats = {v: [0, 0] for v in rates}
    given = dict.fromkeys(rates, 0)
    for _ in range(contacts):
        v = assigner.choose("champions", {k: tuple(s) for k, s in stats.items()})
        given[v] += 1
        stats[v][0] += 1
        stats[v][1] += dice.random() < rates[v]
    return given


def test_thompson_shifts_traffic_to_the_better_variant():
    shares = [_run("thompson", {"A": 0.05, "B": 0.20}, 1000, seed)["B"] / 1000 for seed in range(5)]
    assert min(shares) > 0.7 and np.mean(shares) > 0.8


def test_random_assignment_stays_near_even():
    given = _run("random", {"A": 0.05, "B": 0.20}, 4000, seed=3)
    assert abs(given["B"] / 4000 - 0.5) < 0.04


def test_assignment_is_deterministic_with_a_seed():
    stats = {"A": (20, 2), "B": (20, 3)}  # close enough that the draws decide
    a, b = (Assigner([Variant("A"), Variant("B")], "thompson", seed=9) for _ in range(2))
    picks = [a.choose("new", stats) for _ in range(50)]
    assert picks == [b.choose("new", stats) for _ in range(50)] and len(set(picks)) == 2


def test_segment_restricted_variants_go_to_their_segments_only():
    variants = [Variant("arrivals", ("champions", "loyal")), Variant("coupon", ("at_risk",)), Variant("plain")]
    for method in ("random", "thompson"):
        assigner = Assigner(variants, method, seed=1)
        assert [v.id for v in assigner.eligible("at_risk")] == ["coupon", "plain"]
        assert [v.id for v in assigner.eligible(None)] == ["plain"]
        for segment in (*SEGMENT_IDS, None):
            # the restricted variants look far better: they must still not leak into other segments
            stats = {"arrivals": (100, 90), "coupon": (100, 90), "plain": (100, 1)}
            picks = {assigner.choose(segment, stats) for _ in range(200)}
            allowed = {v.id for v in variants if not v.segments or segment in v.segments}
            assert picks <= allowed
    with pytest.raises(NoEligibleVariant):
        Assigner([Variant("coupon", ("at_risk",))]).choose("champions", {})
    with pytest.raises(ValueError):
        Assigner([Variant("A")], method="greedy")


def test_missing_shop_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="shop database not found"):
        compute_rfm(tmp_path / "nope.db")
