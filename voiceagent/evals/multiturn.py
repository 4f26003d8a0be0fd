"""Multi-turn conversations with the dialog state expected after every turn
(benchmarks/data/multiturn/*.jsonl), played through a DialogEngine on a fresh copy of the demo shop
each: joint goal accuracy per turn (the task and all its slots right), task success per
conversation (the tickets and order changes the shop ends with, the orders talked about), reply
length on voice channels, sentences repeated within a call, ungrounded facts and the dialog step's
time. Used by benchmarks/eval_multiturn.py and tests/test_multiturn.py.
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ..dialog.cache import HotCache
from ..dialog.engine import DialogEngine, DialogState
from ..dialog.flows.finishing import sentence_key, split_sentences
from ..dialog.grounding import GroundingChecker
from .conversations import ConversationRunner

DATA_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "multiturn"


def load(name: str) -> list[dict]:
    """One data set: "dev" (looked at while building) or "heldout" (measured, not looked at)."""
    path = DATA_DIR / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _same_value(key: str, expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    if key == "address":
        a, b = sentence_key(expected), sentence_key(actual)
        return bool(a) and (a == b or (a in b and len(a) >= 0.8 * len(b)) or (b in a and len(b) >= 0.8 * len(a)))
    if key == "color":
        return {"gray": "grey"}.get(expected.lower(), expected.lower()) == {"gray": "grey"}.get(actual.lower(), actual.lower())
    return str(expected).strip().upper() == str(actual).strip().upper()


def predicted_state(state: DialogState) -> dict:
    return state.task.as_state() if state.task is not None else {"task": None, "slots": {}}


def state_matches(expected: dict, actual: dict) -> list[str]:
    """Where the dialog state differs from the expected one (empty: the turn's joint goal is met)."""
    diffs = []
    if expected.get("task") != actual.get("task"):
        diffs.append(f"task {actual.get('task')} != {expected.get('task')}")
    want, got = expected.get("slots", {}), actual.get("slots", {})
    for key in sorted(set(want) | set(got)):
        if key not in want:
            diffs.append(f"extra {key}={got[key]!r}")
        elif not _same_value(key, want[key], got.get(key)):
            diffs.append(f"{key} {got.get(key)!r} != {want[key]!r}")
    return diffs


def _effects(shop) -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    with closing(sqlite3.connect(f"file:{shop.db_path}?mode=ro", uri=True)) as conn:
        tickets = [(k, o or "") for k, o in conn.execute("SELECT kind, order_id FROM tickets ORDER BY rowid")]
        changes: dict[str, dict[str, str]] = {}
        for order_id, fld, new in conn.execute("SELECT order_id, field, new_value FROM order_changes ORDER BY rowid"):
            changes.setdefault(order_id, {})[fld] = new
    return tickets, changes


def effects_match(expected: dict, tickets, changes, cited: set[str]) -> list[str]:
    problems = []
    want_tickets = sorted((t["kind"], t.get("order_id") or "") for t in expected.get("tickets", []))
    if sorted(tickets) != want_tickets:
        problems.append(f"tickets {sorted(tickets)} != {want_tickets}")
    want_orders = expected.get("orders", {})
    for order_id in sorted(set(want_orders) | set(changes)):
        want, got = want_orders.get(order_id, {}), changes.get(order_id, {})
        for key in sorted(set(want) | set(got)):
            if key not in want:
                problems.append(f"order {order_id}: unexpected change {key}={got[key]!r}")
            elif not _same_value(key, want[key], got.get(key)):
                problems.append(f"order {order_id}: {key} {got.get(key)!r} != {want[key]!r}")
    for order_id in expected.get("cites", []):
        if order_id not in cited:
            problems.append(f"order {order_id} never talked about")
    return problems


def reply_size(text: str, lang: str) -> int:
    """Chinese characters (no spaces or punctuation) or English words."""
    if lang == "zh":
        return len(re.sub(r"[\s\W_]", "", text))
    return len(text.split())


@dataclass
class MultiTurnReport:
    conversations: int = 0
    turns: int = 0
    joint_goal_hits: int = 0
    successes: int = 0
    voice_sizes: dict = field(default_factory=lambda: {"zh": [], "en": []})
    text_sizes: dict = field(default_factory=lambda: {"zh": [], "en": []})
    sentences: int = 0
    repeated: int = 0  # statements said again in the same call
    repeated_questions: int = 0  # questions asked again (a read-back after a question on the side)
    facts: int = 0
    ungrounded: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "id turn N: diffs" and "id: effects"
    by_group: dict = field(default_factory=dict)  # (lang, identified) -> [turns, hits, convs, successes]

    @property
    def joint_goal_accuracy(self) -> float:
        return self.joint_goal_hits / self.turns if self.turns else 0.0

    @property
    def task_success(self) -> float:
        return self.successes / self.conversations if self.conversations else 0.0

    def median_voice(self, lang: str) -> float:
        sizes = self.voice_sizes[lang]
        return statistics.median(sizes) if sizes else 0.0

    def latency(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def summary(self) -> dict:
        return {"conversations": self.conversations, "turns": self.turns,
                "joint_goal_accuracy": round(self.joint_goal_accuracy, 3), "task_success": round(self.task_success, 3),
                "median_voice_reply": {"zh_chars": self.median_voice("zh"), "en_words": self.median_voice("en")},
                "median_text_reply": {lang: statistics.median(v) if v else 0 for lang, v in self.text_sizes.items()},
                "repeated_sentences": self.repeated, "repeated_questions": self.repeated_questions,
                "sentences": self.sentences,
                "ungrounded_facts": len(self.ungrounded), "facts": self.facts,
                "dialog_ms_p50": round(self.latency(0.5), 1), "dialog_ms_p95": round(self.latency(0.95), 1),
                "by_group": {f"{k[0]}-{'identified' if k[1] else 'anonymous'}":
                             {"jga": round(v[1] / v[0], 3) if v[0] else 0, "success": round(v[3] / v[2], 3) if v[2] else 0,
                              "conversations": v[2]} for k, v in sorted(self.by_group.items())}}


def run(conversations: list[dict], runner: ConversationRunner, transcript=None) -> MultiTurnReport:
    """Play each conversation on a fresh shop; `transcript(line)` receives every turn when given."""
    report = MultiTurnReport()
    for conv in conversations:
        shop = runner.fresh_shop(f"mt-{conv['id']}")
        engine = DialogEngine(runner.nlu, shop, None, runner.low_confidence, kb=runner.kb,
                              cache=HotCache() if runner.use_cache else None)
        checker = GroundingChecker(shop, runner.kb)
        customer, lang = conv.get("customer_id"), conv.get("lang", "zh")
        state = DialogState(language=lang, customer_id=customer, channel=conv.get("channel", "text"))
        group = report.by_group.setdefault((lang, bool(customer)), [0, 0, 0, 0])
        said, seen, cited = [], set(), set()
        if transcript:
            transcript(f"== {conv['id']} ({customer or 'anonymous'}, {state.channel}): {conv.get('title', '')}")
        for i, turn in enumerate(conv["turns"], 1):
            said.append(turn["say"])
            reply = engine.respond(turn["say"], state, lang if conv.get("hint") else None)
            report.turns += 1
            group[0] += 1
            report.latencies_ms.append(reply.dialog_ms)
            cited.update(g.partition(":")[2] for g in reply.grounding if g.startswith("orders:"))
            diffs = state_matches(turn["state"], predicted_state(state))
            if diffs:
                report.failures.append(f"{conv['id']} turn {i} ({turn['say'][:30]!r}): {'; '.join(diffs)}")
            else:
                report.joint_goal_hits += 1
                group[1] += 1
            reply_lang = "zh" if state.language == "zh" else "en"
            (report.voice_sizes if state.channel == "voice" else report.text_sizes)[reply_lang].append(
                reply_size(reply.text, reply_lang))
            for sentence in split_sentences(reply.text, reply_lang):
                key = sentence_key(sentence)
                report.sentences += 1
                if key in seen:
                    if sentence.rstrip().endswith(("?", "？")):
                        report.repeated_questions += 1
                    else:
                        report.repeated += 1
                seen.add(key)
            result = checker.check(reply.text, state.language, reply.grounding, caller_said=said, customer_id=customer)
            report.facts += len(result.atoms)
            report.ungrounded += [f"{conv['id']} turn {i}: {u}" for u in result.ungrounded]
            if transcript:
                transcript(f"  caller: {turn['say']}\n  agent:  {reply.text}\n"
                           f"          [{reply.intent}] state={predicted_state(state)}" + (f"  !! {diffs}" if diffs else ""))
        tickets, changes = _effects(shop)
        problems = effects_match(conv.get("effects", {}), tickets, changes, cited)
        report.conversations += 1
        group[2] += 1
        if problems:
            report.failures.append(f"{conv['id']}: {'; '.join(problems)}")
            if transcript:
                transcript(f"  !! effects: {problems}")
        else:
            report.successes += 1
            group[3] += 1
    return report
