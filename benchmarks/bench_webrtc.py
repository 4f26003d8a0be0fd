#!/usr/bin/env python3
"""Voice to voice in a real browser: Chromium calls the agent over WebRTC from the demo page.

    .venv/bin/python benchmarks/bench_webrtc.py                  # latency (20 turns) and capacity
    .venv/bin/python benchmarks/bench_webrtc.py --latency --samples "en_order*" --repeat 2
    .venv/bin/python benchmarks/bench_webrtc.py --capacity --max-pages 4 --calls-per-page 3
    .venv/bin/python benchmarks/bench_webrtc.py --capacity --peer aiortc      # the agent's own capacity

The product runs as shipped (`voiceagent serve --http 127.0.0.1:PORT --sip off`, its own process,
with a config file that turns the greeting off, since the sample callers start talking at once, and
raises [webrtc] max_sessions above the most pages at once); the caller is Debian's Chromium, driven
by playwright, whose fake microphone plays a sample recording (tests/peers/chromium.py). Both run in
a private network namespace (the script re-runs itself under `unshare -n`). In the page, one
ScriptProcessor taps the microphone stream and the agent's stream together (one audio clock, sample
aligned) and keeps their RMS per 10 ms. For every caller utterance:

    voice_to_voice = the agent's first 10 ms above -40 dBFS in the page's received stream
                     - the caller's last 10 ms above -40 dBFS in the page's microphone stream
                       (before 0.8 s of quiet)

It counts when the agent was quiet as the caller stopped and answered within 6 s. It includes what a
phone-side measure includes (endpointing, ASR, dialog, TTS, the paced track) plus the browser's
side: Opus both ways, the jitter buffer, Web Audio. The engine's own figure for the same replies
(the stored call record, turns[].latency_ms.voice_to_voice, from GET /api/ops/calls/{id}) is printed
beside it, and the difference per call (the transport's share). Measuring starts in steady state:
after the server's speech prewarm has finished and one warm-up call (--warmup) not counted.

1. latency: the sample calls one at a time (default: the English and Chinese single-question
   samples, 5 times each: 20 turns); p50/p95.
2. capacity: N pages at once in one Chromium (N = 1, 2, 3, 4, 6), each making --calls-per-page
   calls in a row with a sample, staggered 0.7 s; a step passes with p95 voice_to_voice <= 1500 ms.
   Each Chromium page takes about half a core here (printed per step with the agent's own CPU), so
   with --peer aiortc the pages are played by aiortc instead (tests/peers/aiortc_page.py: the
   widget's offer, DTLS-SRTP, Opus and event channel, levels on the page's clock as in Chromium),
   which measures what the agent holds. Each step prints the engine's stage p95s.

Figures go to stdout and benchmarks/results/bench_webrtc.json.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.browser_call import AgentServer, voice_call  # noqa: E402
from tests.peers import chromium  # noqa: E402
from tests.peers.aiortc_page import Page, recording  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"
DEFAULT_SAMPLES = "en_order_status_16k.wav,zh_order_status_16k.wav,en_size_16k.wav,zh_size_16k.wav"
LEAD_S = 1.5  # the call connects while the microphone plays this much silence
TAIL_S = 10.0
CAPACITY_P95_MS = 1500.0
CAPACITY_STEPS = (1, 2, 3, 4, 6)
STAGGER_S = 0.7


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def toml_text(doc: dict) -> str:
    """A small TOML writer for a configuration: [section] keys and [section.table] tables."""
    lines = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
        for name, table in tables.items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def server_config(path: str | None, max_pages: int) -> str:
    doc = tomllib.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    doc.setdefault("call", {})["greeting"] = False  # the sample callers start talking at once
    web = doc.setdefault("webrtc", {})
    web["max_sessions"] = max(int(web.get("max_sessions", 4)), max_pages, 8)
    return toml_text(doc)


def sample_names(spec: str) -> list[str]:
    names = sorted(p.name for p in SAMPLES.glob("*.wav"))
    out = []
    for pattern in spec.split(","):
        out += [n for n in names if fnmatch.fnmatch(n, pattern.strip()) and n not in out]
    return out


def duration_s(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


STAGES = ("endpoint", "asr", "llm_first_token", "tts_first_audio")


def engine_stages(record: dict | None) -> list[dict]:
    """The stored latencies of the call's replies that were heard (a reply cut off before a sound
    has voice_to_voice 0)."""
    return [t["latency_ms"] for t in (record or {}).get("turns", [])
            if t.get("role") == "agent" and t.get("kind") == "reply"
            and (t.get("latency_ms") or {}).get("voice_to_voice")]


async def measured(server: AgentServer, name: str, local: list[float], remote: list[float], call_id: str | None,
                   ok: bool, error: str | None, require_record: bool = False, **extra) -> dict:
    """One call's figures: voice to voice from the page's levels, beside the engine's own from the
    stored record (and their difference, the transport's share, where the turns pair up one to one)."""
    turns = chromium.voice_to_voice(local, remote)
    browser_ms = [t["v2v_ms"] for t in turns if t["clean"] and t["v2v_ms"] is not None]
    record = await asyncio.to_thread(server.wait_call, call_id, 20) if call_id else None
    if ok and record is None and require_record:
        ok, error = False, f"no stored record for the call ({call_id or 'no hello on the event channel'})"
    stages = engine_stages(record)
    engine_ms = [st["voice_to_voice"] for st in stages]
    diff = [round(b - e, 1) for b, e in zip(browser_ms, engine_ms)] if len(browser_ms) == len(engine_ms) else []
    return {"sample": name, "ok": ok, "error": error, "v2v_ms": browser_ms, "engine_v2v_ms": engine_ms,
            "engine_stages": stages, "transport_ms": diff, "turns": turns, "call_id": call_id,
            "codec": (record or {}).get("channel", {}).get("codec"), **extra}


async def one_call(browser, server: AgentServer, name: str, speech_s: float) -> dict:
    """A page in a fresh context calls once; the microphone file is the browser's."""
    context = await browser.new_context()
    try:
        await context.add_init_script(chromium.tap_js(record_audio=False))
        page = await context.new_page()
        min_s = LEAD_S + speech_s + 1.5
        call = await voice_call(page, server.base, lang="zh" if name.startswith("zh") else "en",
                                timeout_s=min_s + 60, min_s=min_s, settle_s=1.0, with_audio=False)
    finally:
        await context.close()
    levels = call.get("levels") or {}
    return await measured(server, name, levels.get("local") or [], levels.get("remote") or [], call.get("call_id"),
                          call["ok"], call.get("error"), call_s=call.get("call_s"))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the machine's busy CPU seconds, process `pid`'s own and its waited children's), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    with open(f"/proc/{pid}/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy / tick, sum(int(x) for x in own[11:15]) / tick  # utime, stime, cutime, cstime


async def one_call_aiortc(server: AgentServer, name: str, mic: np.ndarray) -> dict:
    """The same call from an aiortc page (tests/peers/aiortc_page.py): the widget's offer, DTLS-SRTP,
    Opus and event channel, without a browser's CPU. Its microphone plays `mic` and it hangs up when
    that ends; both sides' levels go on the page's clock as in Chromium."""
    import httpx

    page = Page(mic)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            response = await page.offer(http, language="zh" if name.startswith("zh") else "en")
        ok = response.status_code == 200
        error = None if ok else f"offer answered {response.status_code}: {response.text[:120]}"
        while ok and not page.mic.done and page.pc.connectionState not in ("failed", "closed"):
            await asyncio.sleep(0.2)
    finally:
        await page.close()
    return await measured(server, name, *page.levels(), page.call_id, ok, error, require_record=True)


def summary(calls: list[dict]) -> dict:
    v2v = [x for c in calls for x in c["v2v_ms"]]
    engine = [x for c in calls for x in c["engine_v2v_ms"]]
    transport = [x for c in calls for x in c["transport_ms"]]
    return {"calls": len(calls), "failed": sum(not c["ok"] for c in calls), "turns": len(v2v),
            "p50_ms": pct(v2v, 0.5), "p95_ms": pct(v2v, 0.95), "max_ms": max(v2v) if v2v else None,
            "engine_turns": len(engine), "engine_p50_ms": pct(engine, 0.5), "engine_p95_ms": pct(engine, 0.95),
            "transport_p50_ms": pct(transport, 0.5)}


async def run(args) -> dict:
    from playwright.async_api import async_playwright

    steps = [n for n in CAPACITY_STEPS if n <= args.max_pages] if args.capacity else []
    work = Path(tempfile.mkdtemp(prefix="bench-webrtc-"))
    server = AgentServer(work / "server", config_text=server_config(args.config, max(steps or [1])))
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": "2-core CPU",
                     "method": "Chromium page: RMS per 10 ms of the microphone and the agent's stream, one audio clock",
                     "work_dir": str(work)}
    names = sample_names(args.samples)
    if not names:
        raise SystemExit(f"no sample matches {args.samples!r} in {SAMPLES}")
    mics = {n: chromium.fake_mic_wav(SAMPLES / n, work / f"mic-{n}", lead_s=LEAD_S, tail_s=TAIL_S) for n in names}
    speech = {n: duration_s(SAMPLES / n) for n in names}
    server.start()
    try:
        await asyncio.to_thread(server.wait_ready)
        results["server_ready_s"] = server.ready_s
        # steady state: the speech prewarm (after /healthz is ok) done, then a call not counted
        prewarm = await asyncio.to_thread(server.wait_log, ("pre-synthesised", "pre-synthesis failed"), 300)
        results["prewarm"] = prewarm.split(": ", 1)[-1] if prewarm else None
        async with async_playwright() as p:
            for _ in range(args.warmup):
                browser = await chromium.launch(p, mic_wav=mics[names[0]])
                try:
                    call = await one_call(browser, server, names[0], speech[names[0]])
                    print(f"  warm-up call ({names[0]}): v2v ms {call['v2v_ms']}, engine {call['engine_v2v_ms']}",
                          flush=True)
                finally:
                    await browser.close()
            if args.latency:
                print(f"== latency: {len(names)} sample calls x {args.repeat}, one at a time, Chromium over WebRTC",
                      flush=True)
                calls = []
                for name in names:
                    browser = await chromium.launch(p, mic_wav=mics[name])
                    results.setdefault("browser", browser.version)
                    try:
                        for _ in range(args.repeat):
                            call = await one_call(browser, server, name, speech[name])
                            calls.append(call)
                            print(f"  {name:26s} v2v ms: {', '.join(str(int(x)) for x in call['v2v_ms']) or '-':12s}"
                                  f" engine: {', '.join(str(int(x)) for x in call['engine_v2v_ms']) or '-':12s}"
                                  f"{'' if call['ok'] else '  (' + str(call['error']) + ')'}", flush=True)
                    finally:
                        await browser.close()
                lat = results["latency"] = summary(calls)
                lat["per_call"] = calls
                print(f"voice_to_voice in the browser: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms over "
                      f"{lat['turns']} turns (the engine's own: p50 {lat['engine_p50_ms']}, p95 {lat['engine_p95_ms']};"
                      f" browser minus engine, median {lat['transport_p50_ms']} ms)", flush=True)
            if args.capacity:
                name = args.capacity_sample
                mic = mics.get(name) or chromium.fake_mic_wav(SAMPLES / name, work / f"mic-{name}", lead_s=LEAD_S,
                                                               tail_s=TAIL_S)
                speech.setdefault(name, duration_s(SAMPLES / name))
                where = "in one Chromium" if args.peer == "chromium" else "played by aiortc (no browser)"
                print(f"== capacity: N pages at once {where}, {args.calls_per_page} calls each ({name})", flush=True)
                mic16 = recording(SAMPLES / name, LEAD_S, TAIL_S)
                out = []
                for n in steps:
                    browser = await chromium.launch(p, mic_wav=mic) if args.peer == "chromium" else None
                    started, cpu0 = time.monotonic(), cpu_seconds(server.proc.pid)
                    try:
                        async def line(i: int) -> list[dict]:
                            await asyncio.sleep(i * STAGGER_S)  # staggered, as calls arrive
                            if browser is None:
                                return [await one_call_aiortc(server, name, mic16) for _ in range(args.calls_per_page)]
                            return [await one_call(browser, server, name, speech[name])
                                    for _ in range(args.calls_per_page)]

                        per_line = await asyncio.gather(*(line(i) for i in range(n)))
                    finally:
                        if browser is not None:
                            await browser.close()
                    wall, cpu1 = time.monotonic() - started, cpu_seconds(server.proc.pid)
                    calls = [c for cs in per_line for c in cs]
                    step = {"pages": n, **summary(calls), "seconds": round(wall, 1),
                            "agent_cpu_cores": round((cpu1[1] - cpu0[1]) / wall, 2),
                            "others_cpu_cores": round((cpu1[0] - cpu0[0] - (cpu1[1] - cpu0[1])) / wall, 2),
                            "engine_stage_p95_ms": {k: pct([st.get(k, 0.0) for c in calls for st in c["engine_stages"]],
                                                           0.95) for k in STAGES}}
                    step["pass"] = step["p95_ms"] is not None and step["p95_ms"] <= CAPACITY_P95_MS and not step["failed"]
                    out.append(step)
                    print(f"  {n} pages at once: {step['turns']} turns, p50 {step['p50_ms']} ms, p95 {step['p95_ms']} ms"
                          f" (engine p95 {step['engine_p95_ms']}), {step['failed']} calls failed:"
                          f" {'pass' if step['pass'] else 'FAIL'}", flush=True)
                    errors = sorted({str(c["error"]) for c in calls if not c["ok"]})
                    if errors:
                        print(f"    failed: {'; '.join(errors)[:300]}", flush=True)
                    print(f"    agent CPU {step['agent_cpu_cores']} cores, the pages and the rest "
                          f"{step['others_cpu_cores']}; engine stage p95 ms {step['engine_stage_p95_ms']}", flush=True)
                passing = [s["pages"] for s in out if s["pass"]]
                results["capacity"] = {"sample": name, "peer": args.peer, "calls_per_page": args.calls_per_page,
                                       "steps": out,
                                       "max_pages_passing": max(passing) if passing else 0}
                print(f"browser calls at once holding p95 voice_to_voice <= {CAPACITY_P95_MS:.0f} ms: "
                      f"{results['capacity']['max_pages_passing']}", flush=True)
    finally:
        results["server_exit"] = await asyncio.to_thread(server.stop)
    return results


def table(results: dict) -> str:
    rows = [("part", "N", "calls", "failed", "turns", "p50 ms", "p95 ms", "max ms", "engine p50", "engine p95",
             "pass")]
    lat = results.get("latency")
    if lat:
        rows.append(("latency", "1", lat["calls"], lat["failed"], lat["turns"], lat["p50_ms"], lat["p95_ms"],
                     lat["max_ms"], lat["engine_p50_ms"], lat["engine_p95_ms"], ""))
    for s in (results.get("capacity") or {}).get("steps", []):
        rows.append(("capacity", s["pages"], s["calls"], s["failed"], s["turns"], s["p50_ms"], s["p95_ms"], s["max_ms"],
                     s["engine_p50_ms"], s["engine_p95_ms"], "pass" if s["pass"] else "FAIL"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(v if v is not None else "-").rjust(w) for v, w in zip(r, widths)) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", action="store_true", help="part 1 (both parts run when none is named)")
    ap.add_argument("--capacity", action="store_true", help="part 2")
    ap.add_argument("--samples", default=DEFAULT_SAMPLES,
                    help="sample callers for part 1: globs in samples/audio, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="calls per sample in part 1")
    ap.add_argument("--max-pages", type=int, default=6)
    ap.add_argument("--calls-per-page", type=int, default=3)
    ap.add_argument("--capacity-sample", default="en_order_status_16k.wav")
    ap.add_argument("--peer", choices=("chromium", "aiortc"), default="chromium",
                    help="capacity part: pages in headless Chromium (half a core each on these machines), or "
                         "played by aiortc (the same protocol, a fraction of the CPU: the agent's own capacity)")
    ap.add_argument("--warmup", type=int, default=1, help="calls made first and not counted")
    ap.add_argument("--config", help="the agent's TOML config (the greeting is turned off, max_sessions raised)")
    args = ap.parse_args()
    if not (args.latency or args.capacity):
        args.latency = args.capacity = True
    if chromium.executable() is None or not chromium.has_playwright():
        raise SystemExit(f"missing: {chromium.missing()}")
    chromium.reexec_in_netns()
    results = asyncio.run(run(args))
    print(table(results))
    out = ROOT / "benchmarks" / "results" / "bench_webrtc.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
