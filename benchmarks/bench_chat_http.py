#!/usr/bin/env python3
"""Text dialog throughput and latency through the HTTP chat API, for cached and uncached answers.

    .venv/bin/python benchmarks/bench_chat_http.py                 # 10 s per scenario
    .venv/bin/python benchmarks/bench_chat_http.py --seconds 30

Starts a real `voiceagent serve` on a free port, waits for /healthz, and drives POST /api/chat
with wrk (C, keep-alive; installed by scripts/setup.sh):

- cached: hot policy questions (return shipping, delivery time, invoices, warranty...) asked by
  many sessions, after one warm-up each; answered from the hot-question cache.
- uncached: order questions with a different order number each time ("订单38512074发货了吗"),
  which read the shop's data and run the NLU every time.

Prints requests per second and latency p50/p95/p99 for each, and writes
benchmarks/results/bench_chat_http.json. Load generator and server share the machine's cores,
so the figures are a floor for a server with the cores to itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

HOT_QUESTIONS = [
    "退货运费谁出", "多久发货", "能开发票吗", "保修多久", "怎么申请退货", "会员有什么权益", "有什么优惠活动",
    "How long is the warranty?", "Who pays for return shipping?", "Can I get an invoice?",
    "How soon do you ship?", "What is your return policy?",
]
ORDER_TEMPLATES = ["订单{}发货了吗", "我的订单{}到哪了", "Where is my order {}?", "Has order {} shipped yet?"]

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local texts = { %(texts)s }
local counter = 0
local session_prefix = "%(prefix)s"
request = function()
  counter = counter + 1
  local text = texts[(counter %% #texts) + 1]
  -- one caller, one question: a new session each time
  local body = '{"session_id":"' .. session_prefix .. counter .. '","text":"' .. text .. '"}'
  return wrk.format(nil, "/api/chat", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, summary.bytes))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, text: str, session_id: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/chat", method="POST",
                                 data=json.dumps({"session_id": session_id, "text": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def lua_string(text: str) -> str:
    return '"' + json.dumps(text, ensure_ascii=False)[1:-1].replace('"', '\\"') + '"'


def run_wrk(port: int, texts: list[str], seconds: int, connections: int, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as fh:
        fh.write(WRK_SCRIPT % {"texts": ", ".join(lua_string(t) for t in texts), "prefix": f"bench-{time.time_ns()}-"})
        script = fh.name
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                              "-s", script, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    requests, duration_us, errors, p50, p95, p99, worst = map(int, m.groups())
    return {"requests": requests, "errors": errors, "connections": connections,
            "requests_per_s": round(requests / (duration_us / 1e6), 1),
            "p50_ms": round(p50 / 1000, 2), "p95_ms": round(p95 / 1000, 2), "p99_ms": round(p99 / 1000, 2),
            "max_ms": round(worst / 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64, help="concurrent connections for the cached run")
    ap.add_argument("--uncached-connections", type=int, default=8)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; run scripts/setup.sh (it installs it with apt-get)")

    port = free_port()
    var = tempfile.mkdtemp(prefix="bench-chat-")
    env = dict(os.environ, VOICEAGENT_VAR=var)
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "voiceagent"), "serve", "--http", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if json.loads(resp.read())["status"] == "ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not come up:\n{server.stderr.read() if server.poll() is not None else ''}")
            time.sleep(0.5)

        for i, text in enumerate(HOT_QUESTIONS):  # the first asking fills the cache
            post(port, text, f"warm-{i}")
        db = next(Path(var).rglob("shop.db"), None)
        order_ids = [row[0] for row in sqlite3.connect(db).execute("SELECT order_id FROM orders")] if db else []
        if not order_ids:
            raise SystemExit(f"no shop database under {var}")
        rng = random.Random(7)
        uncached = [rng.choice(ORDER_TEMPLATES).format(rng.choice(order_ids)) for _ in range(2000)]

        results = {
            "cached": run_wrk(port, HOT_QUESTIONS, args.seconds, args.connections, threads=1),
            "uncached": run_wrk(port, uncached, args.seconds, args.uncached_connections, threads=1),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(var, ignore_errors=True)

    results["cpu_cores"] = os.cpu_count()
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} {'conns':>6}")
    for name in ("cached", "uncached"):
        r = results[name]
        print(f"{name:10} {r['requests_per_s']:>9} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} "
              f"{r['errors']:>7} {r['connections']:>6}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_chat_http.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
