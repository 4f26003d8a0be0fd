#!/usr/bin/env python3
"""The scripted multi-turn conversations (tests/conversations/*.toml) through the dialog engine,
each on a fresh copy of the demo shop: facts checked against the shop data, ungrounded facts,
expectation pass rate and per-turn dialog latency.

    .venv/bin/python benchmarks/eval_conversations.py [--show N] [--only ID-SUBSTRING] [--transcript]

Target: zero facts stated without a grounding source.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show", type=int, default=10, help="examples of ungrounded facts and failed expectations to print")
    ap.add_argument("--only", default="", help="run the conversations whose id contains this")
    ap.add_argument("--transcript", action="store_true", help="print every turn")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="eval-conversations-") as tmp:
        # the engine's caches and the demo shop copies stay out of the developer's var/
        os.environ.setdefault("VOICEAGENT_VAR", str(Path(tmp) / "var"))
        from voiceagent.config import Config
        from voiceagent.evals.conversations import ConversationRunner, load_conversations, run_suite
        from voiceagent.runtime import Runtime

        t0 = time.perf_counter()
        config = Config()
        rt = Runtime.load(config, parts=("dialog",))
        load_s = time.perf_counter() - t0
        conversations = [c for c in load_conversations() if args.only in c["id"]]
        runner = ConversationRunner(rt.nlu, rt.kb, config.dialog.low_confidence, workdir=tmp)
        if args.transcript:
            for conv in conversations:
                outcomes, problems = runner.run(conv)
                print(f"== {conv['id']} ({conv.get('customer_id') or 'anonymous'}): {conv.get('title', '')}")
                for p in problems:
                    print(f"   !! {p}")
                for o in outcomes:
                    print(f"   caller: {o.said[:100]}")
                    print(f"   agent [{o.reply.intent}{', handoff' if o.reply.handoff else ''}] {o.reply.text}")
                    print(f"         grounding {o.reply.grounding}; {len(o.grounding.atoms)} facts; {o.reply.dialog_ms} ms")
                    for f in o.failures + [f"UNGROUNDED {u}" for u in o.grounding.ungrounded]:
                        print(f"   !! {f}")
        t1 = time.perf_counter()
        report = run_suite(runner, conversations)
        run_s = time.perf_counter() - t1

    langs = ", ".join(f"{lang} {v['conversations']} ({v['turns']} turns)" for lang, v in sorted(report.by_lang.items()))
    print(f"conversations          {report.conversations}  [{langs}]")
    print(f"agent turns            {report.turns}")
    print(f"facts checked          {report.facts}  (+ {report.echoed} caller values repeated back)")
    print(f"ungrounded facts       {len(report.ungrounded)}")
    for line in report.ungrounded[: args.show]:
        print(f"    {line}")
    passed = report.expectations - len(report.expectation_failures)
    print(f"expectations           {passed}/{report.expectations} passed ({report.pass_rate():.1%})")
    for line in report.expectation_failures[: args.show]:
        print(f"    {line}")
    print(f"dialog latency / turn  p50 {report.latency(0.5):.1f} ms, p95 {report.latency(0.95):.1f} ms, "
          f"max {max(report.latencies_ms, default=0):.1f} ms")
    print(f"(models loaded in {load_s:.1f} s; suite ran in {run_s:.1f} s; load average {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    return 0 if not report.ungrounded and not report.expectation_failures else 1


if __name__ == "__main__":
    sys.exit(main())
