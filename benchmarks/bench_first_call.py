#!/usr/bin/env python3
"""The first call after `voiceagent serve` starts, against the tenth: cold (an empty var dir, nothing
kept on disk) and warm (a restart over the same var dir: the speech kept in var/speech-cache).

    .venv/bin/python benchmarks/bench_first_call.py                 # cold, then warm
    .venv/bin/python benchmarks/bench_first_call.py --runs warm --var /tmp/x   # a restart over /tmp/x
    .venv/bin/python benchmarks/bench_first_call.py --checkout /tmp/old        # the code before (git archive)

Per run: a real `voiceagent serve` (HTTP and AudioSocket, no SIP) in a fresh process; /healthz polled
until "ok" (time-to-ok, from the process's start); then ten calls one after the other over
AudioSocket from the in-repo Asterisk stand-in (tests/peers/asterisk.py), which notes when each
frame of the agent's audio arrives (Asterisk plays a frame as it arrives):

    greeting_ms = arrival of the agent's first voiced frame - the call connecting
    reply_ms    = arrival of the agent's first voiced frame after the caller's question
                  - the end of the question's speech in what was sent (both on the call's clock)

Calls 1 and 10 greet, wait for the greeting to end, ask a question (samples/audio/zh_return_8k.wav)
and listen; calls 2-9 only take the greeting (they make the tenth call the tenth). The dialog's hot
cache is off ([dialog] cache_size = 0, the server's configuration unless --config is given): the
tenth call asks what the first did, and would otherwise be answered from the first's reply. Meanwhile
the knowledge base's answers missing from disk are synthesised in the background between the calls.
Figures go to stdout and benchmarks/results/bench_first_call.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.asterisk import FakeAsterisk  # noqa: E402
from voiceagent.audio import load_audio  # noqa: E402

RATE = 8000
FRAME = RATE // 50
VOICED_RMS = 0.01  # a 20 ms frame above this is the agent speaking (as bench_sip.py)
QUESTION = ROOT / "samples" / "audio" / "zh_return_8k.wav"
LEAD_S = 6.0  # silence before the question: the greeting (about 4 s) is over by then
LISTEN_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def voiced_arrivals(channel) -> list[float]:
    """Arrival times (s since connect) of the agent's voiced frames."""
    out = []
    for t, kind, payload in channel.received:
        if kind != 0x10 or len(payload) < 2:
            continue
        samples = np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0
        if np.sqrt(np.mean(samples ** 2)) > VOICED_RMS:
            out.append(t)
    return out


def speech_end_s(audio: np.ndarray) -> float:
    n = len(audio) // FRAME
    rms = np.sqrt(np.mean(audio[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    voiced = np.flatnonzero(rms > VOICED_RMS)
    return float((voiced[-1] + 1) * FRAME / RATE) if voiced.size else 0.0


async def one_call(ast: FakeAsterisk, question: np.ndarray | None, n: int) -> dict:
    if question is None:  # greeting only
        audio, end_s, listen = np.zeros(int(0.5 * RATE), np.float32), None, 2.5
    else:
        lead = np.zeros(int(LEAD_S * RATE), np.float32)
        audio, end_s, listen = np.concatenate([lead, question]), LEAD_S + speech_end_s(question), LISTEN_S
    channel = await ast.incoming_call(f"1380013{n:04d}", "4000", audio, listen_s=listen)
    await asyncio.wait_for(channel.ended.wait(), len(audio) / RATE + listen + 60)
    voiced = voiced_arrivals(channel)
    out: dict = {"call": n, "greeting_ms": round(voiced[0] * 1000) if voiced else None}
    if end_s is not None:
        before = [t for t in voiced if end_s - 0.1 <= t < end_s]
        after = [t for t in voiced if t >= end_s]
        if before:
            out["reply_ms"] = None  # the greeting was still playing: not a clean turn
            out["note"] = "agent still talking at the end of the question"
        else:
            out["reply_ms"] = round((after[0] - end_s) * 1000) if after else None
    return out


async def calls(as_port: int, count: int) -> list[dict]:
    question = load_audio(QUESTION, RATE).samples
    ast = FakeAsterisk()
    ast.audiosocket_addr = ("127.0.0.1", as_port)
    out = []
    try:
        for n in range(1, count + 1):
            out.append(await one_call(ast, question if n in (1, count) else None, n))
            await asyncio.sleep(0.3)  # the call filed
    finally:
        await ast.close()
    return out


def run(name: str, var: Path, count: int, ok_timeout_s: float, config: str | None, checkout: str | None) -> dict:
    http_port, as_port = free_port(), free_port()
    log = open(var.parent / f"{var.name}-{name}.log", "w")
    env = dict(os.environ, VOICEAGENT_VAR=str(var))
    command = [str(ROOT / ".venv" / "bin" / "voiceagent")]
    if checkout:  # the server of another checkout (before/after), on this one's models and environment
        env.update(PYTHONPATH=checkout, VOICEAGENT_HOME=checkout, VOICEAGENT_MODELS_DIR=str(ROOT / "models" / "cache"))
        command = [sys.executable, "-m", "voiceagent"]  # run in the checkout: its package first on the path
    t0 = time.monotonic()
    proc = subprocess.Popen([*command, "serve", "--http", f"127.0.0.1:{http_port}",
                             "--sip", "off", "--audiosocket", f"127.0.0.1:{as_port}",
                             *(["--config", config] if config else [])], env=env, stdout=log, cwd=checkout or ROOT,
                            stderr=subprocess.STDOUT)
    stages: dict[str, float] = {}
    try:
        while True:
            status, doc = health(http_port)
            if doc.get("stage"):
                stages.setdefault(doc["stage"], round(time.monotonic() - t0, 1))
            if status == 200 and doc.get("status") == "ok":
                break
            if proc.poll() is not None or time.monotonic() - t0 > ok_timeout_s or doc.get("status") == "error":
                raise SystemExit(f"{name}: not ready ({doc}); see {log.name}")
            time.sleep(0.2)
        ok_s = round(time.monotonic() - t0, 1)
        speech_at_ok = doc.get("speech_cache")
        placed = asyncio.run(calls(as_port, count))
        _, doc = health(http_port)
        result = {"time_to_ok_s": ok_s, "warming_stages_seen_at_s": stages, "speech_cache_at_ok": speech_at_ok,
                  "speech_cache_after_calls": doc.get("speech_cache"), "calls": placed}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    first, last = placed[0], placed[-1]
    if all(c["greeting_ms"] is None for c in placed):
        print(f"{name}: no call was answered; see {log.name}")
    print(f"{name:5s} time-to-ok {ok_s:5.1f} s (warming stages first seen at {stages}); speech at ok {speech_at_ok}")
    print(f"      call 1:  greeting {first['greeting_ms']} ms, reply {first.get('reply_ms')} ms")
    print(f"      call {last['call']}: greeting {last['greeting_ms']} ms, reply {last.get('reply_ms')} ms")
    print(f"      greetings of calls 1..{count}: {[c['greeting_ms'] for c in placed]}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="cold,warm", help="cold (an empty var dir), warm (a restart over it)")
    ap.add_argument("--var", default=None, help="the var dir (default: a new temporary one)")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--ok-timeout", type=float, default=240.0)
    ap.add_argument("--checkout", default=None, help="serve from this source tree instead (e.g. `git archive HEAD` "
                                                     "unpacked: the code before a change)")
    ap.add_argument("--config", default=None, help="a voiceagent.toml for the server (default: the dialog's hot "
                                                   "cache off)")
    args = ap.parse_args()
    var = Path(args.var or tempfile.mkdtemp(prefix="bench-first-call-")) / "var"
    var.mkdir(parents=True, exist_ok=True)
    if args.config is None:
        args.config = str(var.parent / "bench.toml")
        Path(args.config).write_text("[dialog]\ncache_size = 0\n")
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "var": str(var),
                     "config": Path(args.config).read_text(),
                     "machine": f"{os.cpu_count()}-core CPU", "method": __doc__.split("\n\n")[2].strip()}
    for name in args.runs.split(","):
        results[name] = run(name, var, args.calls, args.ok_timeout, args.config, args.checkout)
    results["checkout"] = args.checkout or str(ROOT)
    name = "bench_first_call.json" if not args.checkout else "bench_first_call_checkout.json"
    out = ROOT / "benchmarks" / "results" / name
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
