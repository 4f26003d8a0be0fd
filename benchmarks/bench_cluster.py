#!/usr/bin/env python3
"""Calls held by one worker against two workers on the same cores, behind the shipped Kamailio dispatcher,
with one Postgres store; and what the store is asked to write per call and per second at that load.

    .venv/bin/python benchmarks/bench_cluster.py                      # 1 then 2 workers, steps 2,4,6 calls
    .venv/bin/python benchmarks/bench_cluster.py --workers 2 --steps 4,6,8 --calls-per-step 8
    .venv/bin/python benchmarks/bench_cluster.py --heldout          # the held-out callers, one turn a call

For each layout, real `voiceagent serve` processes (tests/peers/workers.py, the offline defaults, greeting
off) sit behind docker/kamailio/kamailio.cfg (tests/peers/dispatcher.py: call-load dispatching, OPTIONS
probes) on one Postgres server started for the run (tests/peers/postgres.py). N baresip phones call the
proxy at once, each playing sample calls in turn (--calls-per-step calls in all), and voice to voice is
measured at the phone as benchmarks/bench_sip.py measures it: the end of the caller's speech in what the
phone sent to the first voiced frame of the agent's answer in what it heard. A step passes with p95 <=
1500 ms; the layout holds the largest N that passes.

Postgres: pg_stat_database's commits and rows inserted/updated/deleted over each step, divided by the calls
stored in it (the calls table) and by the step's seconds; the workers' heartbeats are in the figures (they
are part of what the store carries at that load).

Prints a table; writes benchmarks/results/bench_cluster.json (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sip import CAPACITY_P95_MS, RATE, SAMPLES, TAIL_S, caller_file, pct, voice_to_voice  # noqa: E402
from tests.peers.baresip import Baresip  # noqa: E402
from tests.peers.dispatcher import KamailioDispatcher  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402
from tests.peers.workers import Worker  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.store import CallStore  # noqa: E402

import secrets  # noqa: E402


def pg_counters(url: str) -> dict:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    return {"commits": row[0], "inserted": row[1], "updated": row[2], "deleted": row[3]}


def worker_cpu_s(workers) -> float:
    """utime + stime of the workers' processes (all their threads), in seconds."""
    total = 0
    for w in workers:
        fields = Path(f"/proc/{w.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def worker_rss_mb(workers) -> dict:
    out = {}
    for w in workers:
        for line in Path(f"/proc/{w.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[w.name] = round(int(line.split()[1]) / 1024)
    return out


HELDOUT = ROOT / "benchmarks" / "data" / "turns_heldout"


def heldout_file(wav: Path, out_dir: Path) -> tuple[Path, list[float]]:
    """A held-out turn (callers the repo's samples never use) as a phone plays it: half a second of lead-in,
    the turn, then TAIL_S of silence; its end is the sidecar's marked stop_s, not a VAD's guess."""
    import numpy as np

    from voiceagent.audio import load_audio, write_wav

    audio = load_audio(wav, RATE).samples
    padded = np.concatenate([np.zeros(RATE // 2, np.float32), audio, np.zeros(int(TAIL_S * RATE), np.float32)])
    path = out_dir / wav.name
    write_wav(path, padded, RATE)
    return path, [0.5 + json.loads(wav.with_suffix(".json").read_text())["stop_s"]]


def phone_call(name: str, path: Path, ends: list[float], work: Path, uri: str) -> list[float]:
    user = f"c{secrets.token_hex(4)}"
    with Baresip(user, audio_source=str(path), workdir=work / user) as caller:
        caller.dial(uri)
        caller.wait_for("CALL_ESTABLISHED", 20)
        caller.wait_for("CALL_CLOSED", 180)
        return voice_to_voice(caller.sent_audio(), caller.heard_audio(), ends)


def run_layout(n_workers: int, args, server: PostgresServer, files: dict, work: Path) -> dict:
    url = server.create_database()
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{n_workers}w-", dir=work))
    workers = [Worker(f"w{i + 1}", tmp, url, max_calls=max(args.steps), rtp=(30000 + 1000 * i, 30999 + 1000 * i))
               for i in range(n_workers)]
    proxy = KamailioDispatcher({w.name: w.hostport for w in workers}, maxload=max(args.steps))
    store = CallStore(url, worker="bench")
    names = sorted(files)
    steps = []
    began = time.monotonic()
    try:
        for w in workers:
            w.start()
        proxy.start()
        deadline = time.monotonic() + 300
        while not all(w.healthy() for w in workers):
            if time.monotonic() > deadline:
                raise RuntimeError("workers not ready:\n" + "\n".join(w.log_tail() for w in workers))
            time.sleep(0.5)
        for w in workers:
            proxy.wait_state(w.name, "A", 20.0)
        ready_s = time.monotonic() - began
        print(f"== {n_workers} worker(s) ready in {ready_s:.0f} s", flush=True)
        uri = f"sip:agent@{proxy.hostport}"
        for n in args.steps:
            per_line = max(1, -(-args.calls_per_step // n))
            plan = [[names[(i * per_line + k) % len(names)] for k in range(per_line)] for i in range(n)]
            calls_before = store.count()
            pg0, t0, cpu0 = pg_counters(url), time.monotonic(), worker_cpu_s(workers)

            def line(i: int) -> list[float]:
                time.sleep(i * 0.7)  # staggered, as calls arrive
                out: list[float] = []
                for name in plan[i]:
                    out += phone_call(name, *files[name], work, uri)
                return out

            with ThreadPoolExecutor(max_workers=n) as pool:
                v2v = [x for xs in pool.map(line, range(n)) for x in xs]
            for _ in range(50):  # the last records land a moment after the phones hang up
                if store.count() - calls_before >= n * per_line:
                    break
                time.sleep(0.2)
            wall = time.monotonic() - t0
            cpu = worker_cpu_s(workers) - cpu0
            pg1 = pg_counters(url)
            stored = store.count() - calls_before
            rows = sum(pg1[k] - pg0[k] for k in ("inserted", "updated", "deleted"))
            commits = pg1["commits"] - pg0["commits"]
            step = {"calls_at_once": n, "calls": n * per_line, "stored": stored, "turns": len(v2v),
                    "p50_ms": pct(v2v, 0.5), "p95_ms": pct(v2v, 0.95), "seconds": round(wall, 1),
                    "pg_rows_per_call": round(rows / max(stored, 1), 1),
                    "pg_commits_per_call": round(commits / max(stored, 1), 1),
                    "pg_rows_per_s": round(rows / wall, 1), "pg_commits_per_s": round(commits / wall, 1),
                    "by_worker": {w.name: 0 for w in workers}, "rss_mb": worker_rss_mb(workers)}
            call_s = 0.0
            for record in store.recent(stored or 1):
                call_s += record.get("duration_s") or 0.0
                if record.get("worker") in step["by_worker"]:
                    step["by_worker"][record["worker"]] += 1
            # what a call costs the workers: CPU-seconds per second of call (recognition, turns, speech)
            step["cpu_s_per_call_s"] = round(cpu / call_s, 3) if call_s else None
            step["worker_cpu_cores"] = round(cpu / wall, 2)
            step["pass"] = bool(step["p95_ms"] is not None and step["p95_ms"] <= CAPACITY_P95_MS)
            steps.append(step)
            print(f"  {n} at once: {step['turns']} turns p50 {step['p50_ms']} p95 {step['p95_ms']} ms "
                  f"({'pass' if step['pass'] else 'FAIL'}); stored {stored}/{step['calls']} {step['by_worker']}; "
                  f"postgres {step['pg_rows_per_call']} rows and {step['pg_commits_per_call']} commits per call, "
                  f"{step['pg_rows_per_s']} rows/s, {step['pg_commits_per_s']} commits/s; workers {step['worker_cpu_cores']} "
                  f"cores, {step['cpu_s_per_call_s']} CPU-s per call-s, RSS {step['rss_mb']} MB", flush=True)
            if not step["pass"] and not args.keep_going:
                break
    finally:
        proxy.stop()
        for w in workers:
            w.stop()
    passing = [s["calls_at_once"] for s in steps if s["pass"]]
    return {"workers": n_workers, "ready_s": round(ready_s, 1) if steps else None, "steps": steps,
            "max_calls_passing": max(passing) if passing else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="layouts to run, e.g. 1,2")
    ap.add_argument("--steps", default="2,4,6", help="calls at once per step")
    ap.add_argument("--calls-per-step", type=int, default=6)
    ap.add_argument("--samples", default="*.wav")
    ap.add_argument("--heldout", action="store_true",
                    help="play the held-out turns (benchmarks/data/turns_heldout/) instead of the sample calls")
    ap.add_argument("--keep-going", action="store_true", help="run every step even after one fails")
    args = ap.parse_args()
    args.steps = [int(s) for s in args.steps.split(",")]
    config = Config()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    if args.heldout:
        files = {p.name: heldout_file(p, work) for p in sorted(HELDOUT.glob("*.wav"))}
    else:
        files = {n: caller_file(n, config, work) for n in sorted(p.name for p in SAMPLES.glob(args.samples))}
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": "2-core CPU",
               "layouts": []}
    with PostgresServer() as server:
        for n in (int(x) for x in args.workers.split(",")):
            results["layouts"].append(run_layout(n, args, server, files, work))
    print("\nworkers | calls at once holding p95 <= 1500 ms")
    for layout in results["layouts"]:
        print(f"{layout['workers']:7d} | {layout['max_calls_passing']}")
    out = ROOT / "benchmarks" / "results" / f"bench_cluster{'_heldout' if args.heldout else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
