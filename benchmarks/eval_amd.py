#!/usr/bin/env python3
"""Answering-machine detection on the labelled set (benchmarks/make_amd_set.py), as on a live call.

    .venv/bin/python benchmarks/eval_amd.py                     # var/amd_set/, built first if missing
    .venv/bin/python benchmarks/eval_amd.py --set /tmp/amd_set --json
    .venv/bin/python benchmarks/eval_amd.py --split dev -v      # tuning: the dev split only, per item

Each answer (8 kHz) is resampled to 16 kHz and fed in 20 ms frames at the pace of a call (real
time: the transcript is decoded while the audio keeps coming, so decision times include the ASR)
to `voiceagent.campaigns.amd.detect` with the real Silero VAD and Whisper. The call's language is
the contact's (the item's; `--auto-language` lets Whisper detect it). Per split, held-out first:
accuracy, people called machines (the worst error: it hangs up on a customer), machines missed,
decision time p50/p95 (seconds after answer), and accuracy per kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from voiceagent.audio.resample import resample  # noqa: E402
from voiceagent.campaigns.amd import AmdConfig, AmdDecision, detect  # noqa: E402

FRAME_S = 0.02


async def paced_frames(audio16k: np.ndarray, realtime: bool = True) -> AsyncIterator[np.ndarray]:
    """20 ms frames, each no sooner than it would arrive on a call."""
    size = int(16000 * FRAME_S)
    start = time.monotonic()
    for i in range(0, len(audio16k), size):
        if realtime:
            delay = start + i / 16000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield audio16k[i : i + size]


async def run_item(path: Path, vad, asr, config: AmdConfig, language: str | None) -> AmdDecision:
    audio, rate = sf.read(path, dtype="float32")
    vad.reset()
    return await detect(paced_frames(resample(audio, rate, 16000)), vad, asr, config, language=language)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def summarise(rows: list[dict]) -> dict:
    people = [r for r in rows if r["label"] == "human"]
    machines = [r for r in rows if r["label"] == "machine"]
    times = [r["at_s"] for r in rows]
    kinds = {}
    for kind in sorted({r["kind"] for r in rows}):
        of = [r for r in rows if r["kind"] == kind]
        kinds[kind] = {"n": len(of), "accuracy": round(sum(r["correct"] for r in of) / len(of), 3),
                       "p50_s": percentile([r["at_s"] for r in of], 50)}
    false_machine = sum(r["verdict"] == "machine" for r in people)
    return {
        "n": len(rows),
        "accuracy": round(sum(r["correct"] for r in rows) / len(rows), 3) if rows else None,
        "false_machine_on_people": false_machine,
        "false_machine_rate": round(false_machine / len(people), 3) if people else None,
        "missed_machines": sum(r["verdict"] == "human" for r in machines),
        "missed_machine_rate": round(sum(r["verdict"] == "human" for r in machines) / len(machines), 3) if machines else None,
        "p50_s": percentile(times, 50),
        "p95_s": percentile(times, 95),
        "p50_s_people": percentile([r["at_s"] for r in people], 50),
        "p50_s_machines": percentile([r["at_s"] for r in machines], 50),
        "per_kind": kinds,
    }


def print_summary(split: str, s: dict) -> None:
    print(f"\n== {split}: {s['n']} answers ==")
    print(f"accuracy {s['accuracy']:.1%}   people called machines {s['false_machine_on_people']} "
          f"({s['false_machine_rate']:.1%})   machines missed {s['missed_machines']} ({s['missed_machine_rate']:.1%})")
    print(f"decision after answer: p50 {s['p50_s']} s, p95 {s['p95_s']} s "
          f"(people p50 {s['p50_s_people']} s, machines p50 {s['p50_s_machines']} s)")
    for kind, k in s["per_kind"].items():
        print(f"  {kind:<14} n={k['n']:<3} accuracy {k['accuracy']:.0%}  p50 {k['p50_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default=str(ROOT / "var" / "amd_set"), help="the set's directory (built if missing)")
    parser.add_argument("--split", choices=["dev", "heldout", "all"], default="all")
    parser.add_argument("--auto-language", action="store_true", help="Whisper detects the language")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override an AmdConfig field (tuning on the dev split)")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per answer")
    args = parser.parse_args()

    set_dir = Path(args.set)
    labels = set_dir / "labels.jsonl"
    if not labels.exists():
        import make_amd_set

        make_amd_set.build(set_dir, quiet=True)
    items = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.split != "all":
        items = [i for i in items if i["split"] == args.split]

    from voiceagent.config import Config
    from voiceagent.runtime import Runtime

    rt = Runtime.load(Config.load(None), parts=("vad", "asr"))
    vad = rt.new_vad()
    config = AmdConfig()
    for override in args.param:
        name, value = override.split("=", 1)
        setattr(config, name, type(getattr(config, name))(value))
    rows = []
    for item in items:
        language = None if args.auto_language else (item["lang"] or None)
        d = asyncio.run(run_item(set_dir / item["file"], vad, rt.asr, config, language))
        row = {**item, "verdict": d.verdict, "reason": d.reason, "at_s": d.at_s, "transcript": d.transcript,
               "correct": d.verdict == item["label"]}
        rows.append(row)
        if args.verbose:
            mark = "ok " if row["correct"] else "BAD"
            print(f"{mark} {item['file']:<34} {d.verdict:<7} {d.reason:<18} {d.at_s:5.2f} s  {d.transcript!r}",
                  file=sys.stderr)

    splits = [s for s in ("heldout", "dev") if any(r["split"] == s for r in rows)]  # held-out first
    report = {s: summarise([r for r in rows if r["split"] == s]) for s in splits}
    report["all"] = summarise(rows)
    report["config"] = {"language": "auto" if args.auto_language else "contact", "asr": rt.asr.name, "vad": vad.name}
    if args.json:
        report["items"] = [{k: r[k] for k in ("file", "split", "kind", "label", "verdict", "reason", "at_s", "transcript")}
                           for r in rows]
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return
    for split in [*splits, "all"]:
        print_summary(split, report[split])


if __name__ == "__main__":
    main()
