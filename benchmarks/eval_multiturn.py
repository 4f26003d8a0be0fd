#!/usr/bin/env python3
"""Multi-turn conversations with the dialog state expected after every turn
(benchmarks/data/multiturn/{heldout,dev,dev2,dev3}.jsonl, written from the caller's side apart from the
dialog code), through the dialog engine on a fresh copy of the demo shop each. Prints the held-out
figures first: joint goal accuracy per turn, task success per conversation, the median voice reply
(Chinese characters / English words), sentences repeated within a call, ungrounded facts, and the
dialog step's p50/p95.

    .venv/bin/python benchmarks/eval_multiturn.py [--set heldout|dev|dev2|dev3|all] [--show N] [--only ID] [--transcript] [--json]

Aims (issue 20): task success >= 90 %, joint goal accuracy >= 0.9, median voice reply <= 40 Chinese
characters / 25 English words, no repeated sentences, 0 ungrounded facts, dialog step p95 < 30 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="all", choices=["heldout", "dev", "dev2", "dev3", "all"])
    ap.add_argument("--show", type=int, default=0, help="failed turns and conversations to print")
    ap.add_argument("--only", default="", help="the conversations whose id contains this")
    ap.add_argument("--transcript", action="store_true", help="print every turn")
    ap.add_argument("--json", action="store_true", help="one JSON object per set")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="eval-multiturn-") as tmp:
        os.environ.setdefault("VOICEAGENT_VAR", str(Path(tmp) / "var"))
        from voiceagent.config import Config
        from voiceagent.evals import multiturn
        from voiceagent.evals.conversations import ConversationRunner
        from voiceagent.runtime import Runtime

        config = Config()
        rt = Runtime.load(config, parts=("dialog",))
        runner = ConversationRunner(rt.nlu, rt.kb, config.dialog.low_confidence, workdir=tmp)
        names = ["heldout", "dev", "dev2", "dev3"] if args.set == "all" else [args.set]
        for name in names:
            conversations = [c for c in multiturn.load(name) if args.only in c["id"]]
            t0 = time.perf_counter()
            report = multiturn.run(conversations, runner, transcript=print if args.transcript else None)
            took = time.perf_counter() - t0
            s = report.summary()
            if args.json:
                print(json.dumps({"set": name, **s}, ensure_ascii=False))
                continue
            print(f"== {name}: {s['conversations']} conversations, {s['turns']} turns ({took:.1f} s)")
            print(f"task success           {report.successes}/{report.conversations} ({report.task_success:.1%})")
            print(f"joint goal accuracy    {report.joint_goal_hits}/{report.turns} ({report.joint_goal_accuracy:.3f})")
            for group, v in s["by_group"].items():
                print(f"    {group:<16} jga {v['jga']:.3f}  success {v['success']:.1%}  ({v['conversations']} conversations)")
            print(f"median voice reply     {s['median_voice_reply']['zh_chars']:g} zh chars, "
                  f"{s['median_voice_reply']['en_words']:g} en words  (text chat: {s['median_text_reply']['zh']:g} / "
                  f"{s['median_text_reply']['en']:g})")
            print(f"repeated sentences     {report.repeated} statements and {report.repeated_questions} questions "
                  f"said again, of {report.sentences}")
            print(f"ungrounded facts       {len(report.ungrounded)} of {report.facts} checked")
            for line in report.ungrounded[: args.show]:
                print(f"    {line}")
            print(f"dialog step            p50 {s['dialog_ms_p50']} ms, p95 {s['dialog_ms_p95']} ms")
            for line in report.failures[: args.show]:
                print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
