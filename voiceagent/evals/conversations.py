"""Scripted multi-turn conversations (tests/conversations/*.toml) played through a DialogEngine,
each on a fresh copy of the demo shop; every turn's expectations are checked (intent, words,
citations, tickets, coupons, state) and so is the grounding of every reply
(dialog.grounding.GroundingChecker). Used by tests/test_conversations.py and
benchmarks/eval_conversations.py: an evaluation harness, kept out of the live call path.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
import tomllib
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..dialog.cache import HotCache
from ..dialog.engine import DialogEngine, DialogState
from ..dialog.grounding import GroundingChecker, GroundingResult
from ..shop import demo
from ..shop.repository import ShopRepository

CONVERSATIONS_DIR = Path(__file__).resolve().parents[2] / "tests" / "conversations"


@dataclass
class TurnOutcome:
    conversation: str
    index: int  # 1-based
    said: str
    reply: object  # Reply
    failures: list[str]
    grounding: GroundingResult

    def label(self) -> str:
        return f"{self.conversation} turn {self.index} ({self.said[:40]!r})"


def load_conversations(directory: Path = CONVERSATIONS_DIR) -> list[dict]:
    conversations = []
    for path in sorted(directory.glob("*.toml")):
        for conv in tomllib.loads(path.read_text(encoding="utf-8")).get("conversation", []):
            conv["file"] = path.name
            conversations.append(conv)
    return conversations


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def _contains(text: str, needle: str) -> bool:
    return needle.lower() in text.lower()


def _counts(shop) -> dict[str, dict[str, int]]:
    with closing(sqlite3.connect(f"file:{shop.db_path}?mode=ro", uri=True)) as conn:
        tickets = dict(conn.execute("SELECT kind, COUNT(*) FROM tickets GROUP BY kind").fetchall())
        coupons = conn.execute("SELECT COUNT(*) FROM coupons").fetchone()[0]
    return {"tickets": tickets, "coupons": {"all": coupons}}


def check_requirements(conv: dict, shop) -> list[str]:
    """The demo-shop facts a conversation relies on (the demo shop is generated, so say so when it changed)."""
    problems = []
    for req in conv.get("requires", []):
        if "order" in req:
            order = shop.order(req["order"])
            if order is None:
                problems.append(f"order {req['order']} is not in the shop")
                continue
            if "status" in req and order.status not in _as_list(req["status"]):
                problems.append(f"order {order.order_id} is {order.status}, not {req['status']}")
            if "customer" in req and order.customer_id != req["customer"]:
                problems.append(f"order {order.order_id} belongs to {order.customer_id}, not {req['customer']}")
            if "not_customer" in req and order.customer_id == req["not_customer"]:
                problems.append(f"order {order.order_id} belongs to {req['not_customer']}")
            if "delivered_within" in req or "delivered_before" in req:
                age = (shop.today - date.fromisoformat(order.delivered_at)).days if order.delivered_at else None
                if age is None or ("delivered_within" in req and age > req["delivered_within"]) or \
                        ("delivered_before" in req and age <= req["delivered_before"]):
                    problems.append(f"order {order.order_id} delivered {age} days ago, outside what the script needs")
        if "customer" in req and "order" not in req:
            c = shop.customer(req["customer"])
            if c is None:
                problems.append(f"customer {req['customer']} is not in the shop")
            elif "tier" in req and c.tier != req["tier"]:
                problems.append(f"customer {c.customer_id} is {c.tier}, not {req['tier']}")
            elif "phone" in req and c.phone != req["phone"]:
                problems.append(f"customer {c.customer_id} has phone {c.phone}, not {req['phone']}")
        if "absent_order" in req and shop.order(req["absent_order"]) is not None:
            problems.append(f"order {req['absent_order']} exists, the script needs it not to")
        if "product" in req:
            p = shop.product(req["product"])
            if p is None:
                problems.append(f"product {req['product']} is not in the shop")
            elif "in_stock" in req and (p.stock > 0) != req["in_stock"]:
                problems.append(f"product {p.sku} stock is {p.stock}")
    return problems


def check_turn(turn: dict, reply, state, shop, before: dict, after: dict) -> list[str]:
    """The turn's expectations; each failure is one line."""
    fails = []
    text = reply.text
    if "intent" in turn and reply.intent not in _as_list(turn["intent"]):
        fails.append(f"intent {reply.intent}, expected {' or '.join(_as_list(turn['intent']))}")
    for needle in _as_list(turn.get("contains", [])):
        if not _contains(text, needle):
            fails.append(f"reply lacks {needle!r}")
    if turn.get("contains_any") and not any(_contains(text, n) for n in turn["contains_any"]):
        fails.append(f"reply has none of {turn['contains_any']}")
    for needle in _as_list(turn.get("not_contains", [])):
        if _contains(text, needle):
            fails.append(f"reply must not say {needle!r}")
    for prefix in _as_list(turn.get("grounding", [])):
        if not any(g == prefix or g.startswith(prefix) for g in reply.grounding):
            fails.append(f"grounding {reply.grounding} lacks {prefix!r}")
    if turn.get("grounding_any") and not any(g == p or g.startswith(p) for p in turn["grounding_any"]
                                             for g in reply.grounding):
        fails.append(f"grounding {reply.grounding} has none of {turn['grounding_any']}")
    if "orders_of" in turn:
        for g in reply.grounding:
            order = shop.order(g.split(":", 1)[1]) if g.startswith("orders:") else None
            if order is not None and order.customer_id != turn["orders_of"]:
                fails.append(f"cites {g} of customer {order.customer_id}, expected only orders of {turn['orders_of']}")
    for prefix in _as_list(turn.get("no_grounding", [])):
        if any(g.startswith(prefix) for g in reply.grounding):
            fails.append(f"grounding {reply.grounding} must not include {prefix!r}")
    handoff = turn.get("handoff", False)
    if handoff != "any" and reply.handoff != handoff:
        fails.append(f"handoff {reply.handoff} ({reply.handoff_reason}), expected {handoff}")
    if "handoff_reason" in turn and reply.handoff_reason not in _as_list(turn["handoff_reason"]):
        fails.append(f"handoff reason {reply.handoff_reason}, expected {turn['handoff_reason']}")
    if "resolved" in turn and reply.resolved != turn["resolved"]:
        fails.append(f"resolved {reply.resolved}, expected {turn['resolved']}")
    new_tickets = {k: after["tickets"].get(k, 0) - before["tickets"].get(k, 0) for k in after["tickets"]}
    made = sorted(k for k, n in new_tickets.items() if n > 0)
    want = turn.get("ticket", False)
    if want is False and made:
        fails.append(f"created a {'/'.join(made)} ticket, none expected")
    elif want not in (False, "any") and made != [want]:
        fails.append(f"created tickets {made or 'none'}, expected one {want} ticket")
    coupons = after["coupons"]["all"] - before["coupons"]["all"]
    want_coupon = turn.get("coupon", False)
    if want_coupon != "any" and bool(coupons) != want_coupon:
        fails.append(f"{coupons} coupon(s) issued, expected {'one' if want_coupon else 'none'}")
    for key, expected in turn.get("state", {}).items():
        actual = getattr(state, key)
        ok = actual in expected if isinstance(expected, list) else (actual == (expected or None))
        if not ok:
            fails.append(f"state.{key} is {actual!r}, expected {expected!r}")
    for slot, expected in turn.get("slots", {}).items():
        if state.slots.get(slot) != expected:
            fails.append(f"slot {slot} is {state.slots.get(slot)!r}, expected {expected!r}")
    for slot in _as_list(turn.get("no_slots", [])):
        if slot in state.slots:
            fails.append(f"slot {slot} should be gone, is {state.slots[slot]!r}")
    return fails


class ConversationRunner:
    """Plays scripted conversations through a DialogEngine, each on a fresh copy of the demo shop."""

    def __init__(self, nlu, kb, low_confidence: float = 0.45, workdir: str | Path | None = None, use_cache: bool = True):
        self.nlu, self.kb, self.low_confidence, self.use_cache = nlu, kb, low_confidence, use_cache
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="conversations-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.pristine = self.workdir / "pristine-shop.db"
        if not self.pristine.exists():
            demo.build(self.pristine)

    def fresh_shop(self, name: str) -> ShopRepository:
        path = self.workdir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.db"
        shutil.copyfile(self.pristine, path)
        return ShopRepository(path)

    def run(self, conv: dict) -> tuple[list[TurnOutcome], list[str]]:
        """The outcome of each turn, and the conversation-level failures."""
        shop = self.fresh_shop(conv["id"])
        problems = [f"precondition: {p}" for p in check_requirements(conv, shop)]
        engine = DialogEngine(self.nlu, shop, None, self.low_confidence, kb=self.kb,
                              cache=HotCache() if self.use_cache else None)
        checker = GroundingChecker(shop, self.kb)
        customer = conv.get("customer_id")
        state = DialogState(language=conv.get("lang", "zh"), customer_id=customer)
        said: list[str] = []
        outcomes = []
        forbid = _as_list(conv.get("forbid", []))
        for i, turn in enumerate(conv["turns"], 1):
            text = turn["say"] * turn.get("repeat", 1)
            said.append(text)
            hint = turn.get("hint", conv.get("hint"))
            before = _counts(shop)
            reply = engine.respond(text, state, hint if hint in ("zh", "en") else None)
            after = _counts(shop)
            fails = check_turn(turn, reply, state, shop, before, after)
            for needle in forbid:
                if _contains(reply.text, needle):
                    fails.append(f"reveals {needle!r}, which this caller must never hear")
            if not reply.text.strip():
                fails.append("empty reply")
            result = checker.check(reply.text, state.language, reply.grounding, caller_said=said, customer_id=customer)
            outcomes.append(TurnOutcome(conv["id"], i, text, reply, fails, result))
        return outcomes, problems


@dataclass
class SuiteReport:
    conversations: int = 0
    turns: int = 0
    facts: int = 0
    echoed: int = 0
    expectations: int = 0
    expectation_failures: list[str] = field(default_factory=list)
    ungrounded: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    by_lang: dict = field(default_factory=dict)

    def pass_rate(self) -> float:
        return 1 - len(self.expectation_failures) / self.expectations if self.expectations else 1.0

    def latency(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


_EXPECTATION_KEYS = ("intent", "contains", "contains_any", "not_contains", "grounding", "grounding_any", "no_grounding",
                     "orders_of", "handoff",
                     "handoff_reason", "resolved", "ticket", "coupon", "state", "slots", "no_slots")


def count_expectations(conv: dict) -> int:
    n = 0
    for turn in conv["turns"]:
        for key in _EXPECTATION_KEYS:
            if key in ("handoff", "ticket", "coupon") and key not in turn:
                n += 1  # checked by default: no handoff, no ticket, no coupon
            elif key in turn:
                v = turn[key]
                n += len(v) if isinstance(v, (list, dict)) and key not in ("intent", "contains_any", "grounding_any") else 1
        n += 1 + len(_as_list(conv.get("forbid", [])))  # a non-empty reply; the forbidden strings
    return n


def run_suite(runner: ConversationRunner, conversations: list[dict]) -> SuiteReport:
    report = SuiteReport()
    for conv in conversations:
        outcomes, problems = runner.run(conv)
        report.conversations += 1
        report.expectations += count_expectations(conv)
        report.expectation_failures += [f"{conv['id']}: {p}" for p in problems]
        lang = conv.get("lang", "zh")
        stats = report.by_lang.setdefault(lang, {"conversations": 0, "turns": 0})
        stats["conversations"] += 1
        for o in outcomes:
            report.turns += 1
            stats["turns"] += 1
            report.facts += len(o.grounding.atoms)
            report.echoed += len(o.grounding.echoed)
            report.latencies_ms.append(o.reply.dialog_ms)
            report.expectation_failures += [f"{o.label()}: {f}" for f in o.failures]
            report.ungrounded += [f"{o.label()}: {f} -- reply: {o.reply.text[:160]!r}" for f in o.grounding.ungrounded]
    return report
