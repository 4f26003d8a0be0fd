#!/usr/bin/env python3
"""The dialog step's own time: p50/p95 of DialogEngine.respond per turn, by intent and by how the
reply was made (template, knowledge base, cache), and where the time goes (intent encoder, base
encoder, knowledge base, emotion, slots, perception, the flow, templates, finishing, the shop).

Caller turns come from the scripted conversations (tests/conversations/*.toml, both languages),
each conversation on a fresh copy of the demo shop with the real models, as a voice call. Only
timing is measured here; nothing is tuned on these turns.

    .venv/bin/python benchmarks/bench_dialog_step.py [--turns 80] [--profile] [--threads 1]

Two passes over the same turns: as they come (the encoders run inside the step), and prepared
(DialogEngine.prepare on the turn first, as a call can do with the recogniser's transcript at the
pause, during the silence window). Spans are exclusive (a span's own time, its children's taken
out), per turn on average; the base encoder's work beside the intent encoder (another thread) is
listed apart, as it overlaps.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Spans:
    """Exclusive wall time per named span on the main thread; inclusive elsewhere (marked)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # the children's time of each open span
        self._main = threading.main_thread()

    def wrap(self, owner, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if threading.current_thread() is not self._main:
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.total[name + " (other thread)"] += time.perf_counter() - t0
                    self.calls[name + " (other thread)"] += 1
            self._stack.append([0.0])
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - t0
                children = self._stack.pop()[0]
                self.total[name] += took - children
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += took

        setattr(owner, attr, timed)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def instrument(spans: Spans, rt, engine_cls) -> None:
    from voiceagent.dialog import engine as engine_mod
    from voiceagent.dialog import grounding, nlu as nlu_mod, templates
    from voiceagent.dialog.flows import base as flows_base
    from voiceagent.shop import repository

    nlu = rt.nlu
    spans.wrap(nlu, "understand", "nlu (rest)")
    spans.wrap(nlu.classifier.embedder, "embed", "intent encoder")
    if rt.embedder is not nlu.classifier.embedder:
        spans.wrap(rt.embedder, "embed", "base encoder (kb, anger)")
    spans.wrap(nlu_mod, "detect_emotion", "text emotion (rest)")
    spans.wrap(nlu_mod, "extract_slots", "slots")
    spans.wrap(nlu_mod, "detect_dialect", "dialect")
    spans.wrap(nlu_mod, "repair_misheard_service_words", "misheard-word repair")
    spans.wrap(nlu_mod, "lexical", "lexical n-grams")
    spans.wrap(rt.kb, "search", "knowledge base (rest)")
    spans.wrap(engine_cls, "_perceive", "perception")
    spans.wrap(engine_mod, "read_in_context", "read in context")
    spans.wrap(engine_mod, "styled", "finishing: style")
    spans.wrap(engine_mod, "for_the_ear", "finishing: for the ear")
    spans.wrap(engine_mod, "filter_output", "safety filter")
    spans.wrap(engine_mod, "build_summary", "handoff summary")
    spans.wrap(engine_cls, "_after_turn", "after turn (rest)")
    spans.wrap(flows_base.Router, "choose", "router: choose")
    spans.wrap(grounding.GroundingChecker, "check", "grounding check")
    spans.wrap(templates, "render", "templates")
    for name in ("order", "orders_for_customer", "customer", "customer_by_phone", "tracking", "policy", "window_days",
                 "products", "product", "find_product", "product_rows", "create_ticket", "open_ticket",
                 "issue_coupon", "change_order", "cancel_order"):
        spans.wrap(repository.ShopRepository, name, "shop queries")
    spans.wrap(engine_cls, "respond", "dialog step (rest: the flow, state)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=80, help="caller turns to time (both languages, interleaved)")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    ap.add_argument("--threads", type=int, default=0, help="encoder threads (0: as the product loads them)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dialog-") as tmp:
        os.environ.setdefault("VOICEAGENT_VAR", str(Path(tmp) / "var"))
        from voiceagent.config import Config
        from voiceagent.dialog.cache import HotCache
        from voiceagent.dialog.engine import DialogEngine, DialogState
        from voiceagent.evals.conversations import ConversationRunner, load_conversations
        from voiceagent.runtime import Runtime

        t0 = time.perf_counter()
        config = Config()
        if args.threads:
            from voiceagent import embeddings

            original = embeddings.Embedder.__init__

            def with_threads(self, ref="e5-small", threads=1):
                original(self, ref, threads=args.threads)

            embeddings.Embedder.__init__ = with_threads
        rt = Runtime.load(config, parts=("dialog",))
        print(f"models loaded in {time.perf_counter() - t0:.1f} s")
        runner = ConversationRunner(rt.nlu, rt.kb, config.dialog.low_confidence, workdir=tmp)

        # both languages, interleaved, whole conversations (the state carries across turns)
        by_lang: dict[str, list[dict]] = defaultdict(list)
        for conv in load_conversations():
            by_lang[conv.get("lang", "zh")].append(conv)
        order = [c for pair in zip(by_lang["zh"], by_lang["en"]) for c in pair]

        # warm-up: the first turn pays for lazy loads (regexes, pypinyin, templates)
        warm = DialogEngine(rt.nlu, runner.fresh_shop("warm"), None, config.dialog.low_confidence, kb=rt.kb)
        for text in ("你好", "hello", "我想查一下快递", "what is your return policy"):
            warm.respond(text, DialogState(language="zh", channel="voice"))

        def play(prepared: bool, profiler=None) -> list[tuple[str, str, str, float, float]]:
            """(language, intent, how made, wall ms, main-thread CPU ms) of each turn."""
            steps = []
            for conv in order:
                if len(steps) >= args.turns:
                    break
                shop = runner.fresh_shop(f"bench-{conv['id']}-{prepared}")
                engine = DialogEngine(rt.nlu, shop, None, config.dialog.low_confidence, kb=rt.kb, cache=HotCache())
                state = DialogState(language=conv.get("lang", "zh"), customer_id=conv.get("customer_id"),
                                    channel="voice")
                for turn in conv["turns"]:
                    if len(steps) >= args.turns:
                        break
                    text = turn["say"] * turn.get("repeat", 1)
                    hint = turn.get("hint", conv.get("hint"))
                    if prepared:  # as on a call: encoded from the transcript at the pause, in the silence window
                        engine.prepare(text)
                    if profiler:
                        profiler.enable()
                    t, c = time.perf_counter(), time.thread_time()
                    reply = engine.respond(text, state, hint if hint in ("zh", "en") else None)
                    ms, cpu = (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000
                    if profiler:
                        profiler.disable()
                    kb = any(g.startswith(("kb:", "policies:", "policy:")) for g in reply.grounding)
                    source = "cache" if reply.source == "cache" else ("kb" if kb else "template")
                    steps.append((state.language, reply.intent, source, ms, cpu))
            return steps

        spans = Spans()
        instrument(spans, rt, DialogEngine)
        profiler = cProfile.Profile() if args.profile else None
        steps = play(False, profiler)
        totals, calls = dict(spans.total), dict(spans.calls)
        for embedder in {rt.nlu.classifier.embedder, rt.embedder}:
            embedder._recent.clear()  # the second pass encodes every turn afresh, ahead of the step
        prepared = play(True)
        print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        for label, run in (("the turn as it comes", steps),
                           ("the turn prepared at the pause (DialogEngine.prepare)", prepared)):
            wall, cpu = [s[3] for s in run], [s[4] for s in run]
            print(f"\n{len(run)} turns, {label}: dialog step p50 {percentile(wall, 0.5):.1f} ms, "
                  f"p95 {percentile(wall, 0.95):.1f} ms, max {max(wall):.1f} ms "
                  f"(main thread's CPU p50 {percentile(cpu, 0.5):.1f} ms, p95 {percentile(cpu, 0.95):.1f} ms)")
            for what, key in (("language", 0), ("reply made by", 2), ("intent", 1)):
                groups: dict[str, list[float]] = defaultdict(list)
                for step in run:
                    groups[step[key]].append(step[3])
                print(f"  by {what}:")
                for name, values in sorted(groups.items(), key=lambda kv: -statistics.median(kv[1])):
                    print(f"    {name:<24} n={len(values):<3} p50 {percentile(values, 0.5):6.1f} ms  "
                          f"p95 {percentile(values, 0.95):6.1f} ms")
        print("\nwhere the time goes, the turn as it comes (exclusive ms per turn, mean):")
        n = len(steps)
        for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<40} {1000 * total / n:6.2f} ms   ({calls[name] / n:.1f} calls/turn)")
        if profiler:
            print()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
