#!/usr/bin/env python3
"""The agent on callers it has never heard: the held-out set (benchmarks/data/turns_heldout/).

Nothing is tuned on this set; it only measures (issue 23, "Measure and report"). Modes:

    .venv/bin/python benchmarks/bench_turns.py --lang zh            # every zh turn, one call each
    .venv/bin/python benchmarks/bench_turns.py --lang en --limit 12
    .venv/bin/python benchmarks/bench_turns.py --lang en --cli       # each turn a `voiceagent call` process
    .venv/bin/python benchmarks/bench_turns.py --sip 4,8 --per-line 2  # 4, then 8 phones at once over SIP
    .venv/bin/python benchmarks/bench_turns.py --restart             # the first call after a start vs the 10th

1. calls (default): each held-out turn (and the 3-turn calls with --calls) played in real time as a
   whole call, the way `voiceagent call IN.wav --out DIR --lang auto` plays it (FileLeg + run_call,
   the record written as DIR/call.json). The models load once for all turns (a `voiceagent call`
   process per turn spends most of its time loading them; --cli does exactly that). Each turn is
   followed by PAD_S of silence, so that the end of the turn is judged on silence, not on the file
   ending. From call.json, against the sidecar's marked `stop_s` (when the caller finished):
     voice_to_voice  = the agent's first reply start_s - stop_s (the engine's own figure beside it)
     cut off         = the agent began a turn before stop_s: a reply started, or a caller turn was
                       closed (its FinalTranscript) more than CUT_TOLERANCE_S before stop_s
     CER (zh) / WER (en) of the caller turns' transcript against the text said (punctuation
                       dropped, traditional -> simplified, numbers as digits on both sides)
2. --sip N[,M..]: `voiceagent serve` (SIP + HTTP, greeting off) in its own process; N baresip phones call it
   at once, each playing held-out turns one call after another (--per-line calls each). At the phone:
   voice_to_voice = the first voiced 20 ms frame of what the phone heard after the marked stop_s;
   cut off = the phone heard the agent while the caller was still speaking (between the turn's first
   word and stop_s). Steps share one server; each step plays turns the steps before it did not.
3. --restart: start `voiceagent serve`, wait for /healthz ok, call at once with one held-out turn, then
   nine more calls: the first call's voice to voice against the 10th's.

Prints a table; writes benchmarks/results/bench_turns_<mode>.json (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.textnorm import join_digit_groups, spoken_digits_to_arabic, to_simplified  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "turns_heldout"
RESULTS = ROOT / "benchmarks" / "results"
RATE = 8000
FRAME = RATE // 50
PAD_S = 3.5  # silence after a single turn in calls mode (time to close the turn and answer)
SIP_PAD_S = 6.0  # the phone hangs up when its file ends: time for the answer to be heard
CUT_TOLERANCE_S = 0.3
VOICED_RMS = 0.01  # a 20 ms frame above this on the phone's recording is the agent speaking
MAX_WAIT_S = 6.0


# ---------------------------------------------------------------------------------------------- set


@dataclass
class HeldTurn:
    name: str
    path: Path
    language: str
    text: str
    stop_s: float
    start_s: float  # the caller's first word
    has_pause: bool
    noise: str | None
    segments: list[list[float]] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)  # the 3-turn calls: one entry per turn


def load_set(lang: str | None = None, calls: bool = False) -> list[HeldTurn]:
    out = []
    for side in sorted(DATA.glob("*.json")):
        meta = json.loads(side.read_text(encoding="utf-8"))
        is_call = "turns" in meta
        if (lang and meta["language"] != lang) or is_call != calls:
            continue
        text = " ".join(t["text"] for t in meta["turns"]) if is_call else meta["text"]
        out.append(HeldTurn(side.stem, side.with_suffix(".wav"), meta["language"], text, meta["stop_s"],
                            meta["segments"][0][0], meta["has_pause"], meta.get("noise"), meta["segments"], meta.get("turns", [])))
    return out


# ------------------------------------------------------------------------------------ text scoring

_EN_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_EN_NUMBERS.update({"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "oh": "0"})
_ZH_DIGIT = dict(zip("0123456789", "零一二三四五六七八九"))


def normalise_en(text: str) -> list[str]:
    text = join_digit_groups(spoken_digits_to_arabic(text.lower()))
    text = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " "))
    words = [_EN_NUMBERS.get(w, w) for w in text.split()]
    joined = " ".join(words)
    joined = re.sub(r"(?<=\d) (?=\d)", "", joined)  # a number read in groups is one number
    return joined.split()


def normalise_zh(text: str) -> str:
    """Characters only: simplified, digits read out ("3851" and "三八五一" alike), no punctuation."""
    text = join_digit_groups(spoken_digits_to_arabic(to_simplified(text)))
    text = "".join(_ZH_DIGIT.get(c, c) for c in text)
    text = text.replace("幺", "一").replace("〇", "零")
    return re.sub(r"[^\u4e00-\u9fffA-Za-z]", "", text).lower()


def edit_distance(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rate(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(edits, reference length): characters for Mandarin, words for English."""
    if language == "zh":
        ref, hyp = normalise_zh(reference), normalise_zh(hypothesis)
    else:
        ref, hyp = normalise_en(reference), normalise_en(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, 100 * q, method="nearest")), 1)


# -------------------------------------------------------------------------- one call from call.json


@dataclass
class TurnResult:
    name: str
    language: str
    has_pause: bool
    noise: str | None
    v2v_ms: float | None  # from the marked stop to the agent's first reply
    engine_v2v_ms: float | None
    cut_off: bool
    early_final: bool  # a caller turn closed before the caller finished
    agent_spoke_early: bool
    transcript: str
    edits: int
    ref_len: int
    wall_s: float = 0.0


def score_record(turn: HeldTurn, record: dict, wall_s: float = 0.0) -> TurnResult:
    """One single-turn call's call.json against the sidecar."""
    callers = [t for t in record.get("turns", []) if t["role"] == "caller"]
    replies = [t for t in record.get("turns", []) if t["role"] == "agent" and t.get("kind", "reply") == "reply"]
    # a FinalTranscript before the caller finished: a caller turn closed, and the caller went on
    # speaking after it (a second caller turn, or words marked after its end)
    last_words = turn.segments[-1][0] if turn.segments else turn.stop_s
    early_final = any(t["end_s"] < turn.stop_s - CUT_TOLERANCE_S
                      and (t["end_s"] < last_words or any(u["start_s"] > t["end_s"] for u in callers))
                      for t in callers)
    spoke_early = any(turn.start_s <= t["start_s"] < turn.stop_s for t in replies)
    after = [t for t in replies if t["start_s"] >= turn.stop_s]
    v2v = round((after[0]["start_s"] - turn.stop_s) * 1000, 1) if after and not (early_final or spoke_early) else None
    engine = (after[0].get("latency_ms") or {}).get("voice_to_voice") if after else None
    transcript = " ".join(t["text"] for t in callers) if turn.language == "en" else "".join(t["text"] for t in callers)
    edits, n = error_rate(turn.text, transcript, turn.language)
    return TurnResult(turn.name, turn.language, turn.has_pause, turn.noise, v2v, engine, early_final or spoke_early,
                      early_final, spoke_early, transcript, edits, n, round(wall_s, 1))


def padded_copy(turn: HeldTurn, work: Path, pad_s: float) -> Path:
    x, rate = sf.read(turn.path, dtype="float32")
    path = work / f"{turn.name}.wav"
    sf.write(path, np.concatenate([x, np.zeros(int(pad_s * rate), np.float32)]), rate, subtype="PCM_16")
    return path


class _Runner:
    """`voiceagent call` (cmd_call) with the models loaded once: the same leg, session and record."""

    def __init__(self, config_path: str | None):
        from voiceagent.config import Config
        from voiceagent.runtime import Runtime
        from voiceagent.store import CallStore

        self.config = Config.load(config_path) if config_path else Config()
        self.runtime = Runtime.load(self.config)  # as `voiceagent call` has it: no speech prewarm
        self.store = CallStore(self.config.store.db)

    def call(self, wav: Path, out: Path, lang: str) -> dict:
        from voiceagent.audio import load_audio
        from voiceagent.engine import Channel, SessionOptions, run_call
        from voiceagent.legs import FileLeg

        audio = load_audio(wav, self.config.audio.sample_rate, self.config.audio.max_duration_s)
        leg = FileLeg(audio.samples, audio.sample_rate, realtime=True)
        record = asyncio.run(run_call(self.runtime, leg, SessionOptions(language=lang, greeting=False), Channel("file"), self.store))
        out.mkdir(parents=True, exist_ok=True)
        record.write(out / "call.json")
        return json.loads((out / "call.json").read_text(encoding="utf-8"))


def cli_call(wav: Path, out: Path, lang: str, config_path: str | None) -> dict:
    argv = [str(ROOT / ".venv" / "bin" / "voiceagent"), "call", str(wav), "--out", str(out), "--lang", lang]
    if config_path:
        argv[1:1] = ["--config", config_path]
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    return json.loads((out / "call.json").read_text(encoding="utf-8"))


def run_calls(args) -> dict:
    turns = load_set(args.lang, calls=False)
    if args.part:  # every N-th turn from the K-th: each part mixes pauses, noise and voices
        k, n = (int(v) for v in args.part.split("/"))
        turns = turns[k - 1::n]
    turns = turns[: args.limit or None]
    work = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    runner = None if args.cli else _Runner(args.config)
    results: list[TurnResult] = []
    models: dict = {}
    for turn in turns:
        wav = padded_copy(turn, work, PAD_S)
        started = time.monotonic()
        if runner:
            record = runner.call(wav, work / turn.name, args.call_lang)
        else:
            record = cli_call(wav, work / turn.name, args.call_lang, args.config)
        r = score_record(turn, record, time.monotonic() - started)
        results.append(r)
        models = record.get("models", {})  # which recogniser heard them (Whisper base by default)
        print(f"  {r.name:8s} v2v {_ms(r.v2v_ms):>6s} (engine {_ms(r.engine_v2v_ms):>6s})"
              f"{'  CUT OFF' if r.cut_off else ''}  err {r.edits}/{r.ref_len}  {r.transcript[:70]}", flush=True)
    multi = []
    if args.calls:
        for call in load_set(args.lang, calls=True):
            wav = padded_copy(call, work, PAD_S)
            record = runner.call(wav, work / call.name, args.call_lang) if runner else \
                cli_call(wav, work / call.name, args.call_lang, args.config)
            multi.append(score_multi(call, record))
            print(f"  {call.name}: {multi[-1]}", flush=True)
    return {"mode": "cli" if args.cli else "calls", "pad_s": PAD_S, "models": models, "summary": summarise(results),
            "multi_turn_calls": multi, "turns": [asdict(r) for r in results]}


def score_multi(call: HeldTurn, record: dict) -> dict:
    """A 3-turn call: per caller turn, its answer's delay from the marked stop, and cut-offs."""
    replies = [t for t in record.get("turns", []) if t["role"] == "agent" and t.get("kind", "reply") == "reply"]
    v2v, cut = [], 0
    for k, turn in enumerate(call.turns):
        start, stop = turn["segments"][0][0], turn["stop_s"]
        nxt = call.turns[k + 1]["segments"][0][0] if k + 1 < len(call.turns) else float("inf")
        if any(start <= r["start_s"] < stop for r in replies):
            cut += 1
            continue
        after = [r["start_s"] for r in replies if stop <= r["start_s"] < nxt]
        if after:
            v2v.append(round((after[0] - stop) * 1000, 1))
    callers = [t["text"] for t in record.get("turns", []) if t["role"] == "caller"]
    edits, n = error_rate(call.text, (" " if call.language == "en" else "").join(callers), call.language)
    return {"name": call.name, "v2v_ms": v2v, "cut_off": cut, "edits": edits, "ref_len": n}


def summarise(results: list[TurnResult]) -> dict:
    def block(rs: list[TurnResult]) -> dict:
        v2v = [r.v2v_ms for r in rs if r.v2v_ms is not None]
        engine = [r.engine_v2v_ms for r in rs if r.engine_v2v_ms]
        edits, n = sum(r.edits for r in rs), sum(r.ref_len for r in rs)
        return {"turns": len(rs), "answered": len(v2v), "unheard": sum(not r.transcript.strip() for r in rs), "v2v_p50_ms": pct(v2v, 0.5), "v2v_p95_ms": pct(v2v, 0.95),
                "engine_v2v_p50_ms": pct(engine, 0.5), "engine_v2v_p95_ms": pct(engine, 0.95),
                "cut_off": sum(r.cut_off for r in rs), "cut_off_rate": round(sum(r.cut_off for r in rs) / max(1, len(rs)), 3),
                "error_rate": round(edits / max(1, n), 3),
                # a cut-off turn loses the words said over the agent: the recogniser on whole turns alone
                "error_rate_whole_turns": round(sum(r.edits for r in rs if not r.cut_off)
                                                / max(1, sum(r.ref_len for r in rs if not r.cut_off)), 3)}

    out = {}
    for lang in sorted({r.language for r in results}):
        rs = [r for r in results if r.language == lang]
        out[lang] = block(rs)
        out[lang]["metric"] = "CER" if lang == "zh" else "WER"
        out[lang]["with_pause"] = block([r for r in rs if r.has_pause])
        out[lang]["without_pause"] = block([r for r in rs if not r.has_pause])
        out[lang]["noisy"] = block([r for r in rs if r.noise])
    return out


def print_summary(summary: dict, where: str) -> None:
    print(f"\n{'set':22s} {'turns':>5s} {'v2v p50':>8s} {'v2v p95':>8s} {'engine p50/p95':>15s} {'cut off':>8s} {'CER/WER':>8s}"
          f" {'(whole turns)':>13s}")
    for lang, s in summary.items():
        for label, b in [(f"{lang} all ({where})", s), (f"{lang} with pauses", s["with_pause"]),
                         (f"{lang} no pauses", s["without_pause"]), (f"{lang} noisy", s["noisy"])]:
            print(f"{label:22s} {b['turns']:5d} {_ms(b['v2v_p50_ms']):>8s} {_ms(b['v2v_p95_ms']):>8s} "
                  f"{_ms(b['engine_v2v_p50_ms']) + '/' + _ms(b['engine_v2v_p95_ms']):>15s} "
                  f"{b['cut_off']:>3d} {100 * b['cut_off_rate']:3.0f}% {100 * b['error_rate']:6.1f}%"
                  f" {100 * b['error_rate_whole_turns']:12.1f}%")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


# ------------------------------------------------------------------------------------------- SIP


def at_the_phone(sent: np.ndarray, heard: np.ndarray, start_s: float, stop_s: float) -> tuple[float | None, bool]:
    """(voice to voice ms from the marked stop to the first voiced frame heard, cut off). The two
    recordings both run until the call closes: aligned on their ends (as benchmarks/bench_sip.py)."""
    offset = len(sent) - len(heard)
    n = len(heard) // FRAME
    rms = np.sqrt(np.mean(heard[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    voiced = rms > VOICED_RMS
    first, stop = int((start_s * RATE - offset) // FRAME) + 10, int((stop_s * RATE - offset) // FRAME)
    if stop <= 0 or stop >= n:
        return None, False
    if voiced[max(0, first): stop].any():
        return None, True
    later = np.flatnonzero(voiced[stop: stop + int(MAX_WAIT_S * 50)])
    return (round(later[0] * 20.0, 1) if later.size else None), False


SERVER_CONFIG = ("[call]\ngreeting = false\nask_rating = false\n"
                 "[sip]\nrtp_port_min = 38000\nrtp_port_max = 38999\nmax_calls = 16\n")


def start_server(work: Path, wait_prewarm: bool):
    from tests.browser_call import AgentServer
    from tests.peers.ports import free_port

    sip_port = free_port("sip")
    server = AgentServer(work / "server", config_text=SERVER_CONFIG)
    server.sip_port = sip_port
    started = time.monotonic()
    server.start(sip=f"127.0.0.1:{sip_port}")
    server.wait_ready()
    healthy = time.monotonic() - started
    if wait_prewarm:
        server.wait_log(("pre-synthesised",), 120)
    return server, healthy


def phone_call(server, turn: HeldTurn, work: Path, tag: str) -> dict:
    from tests.peers.baresip import Baresip

    wav = padded_copy(turn, work, SIP_PAD_S)
    t0, refused = time.monotonic(), 0
    while True:  # a refused call (503 while the agent is still loading) is dialled again, as a PBX would
        user = f"h{tag}r{refused}"
        with Baresip(user, audio_source=str(wav), workdir=work / user) as phone:
            phone.dial(f"sip:agent@127.0.0.1:{server.sip_port}")
            event = phone.wait_for(("CALL_ESTABLISHED", "CALL_CLOSED"), 15)
            if event["type"] == "CALL_CLOSED" and refused < 20 and time.monotonic() - t0 < 120:
                refused += 1
                time.sleep(1.0)
                continue
            answered_s = time.monotonic() - t0
            phone.wait_for("CALL_CLOSED", 120)
            sent, heard = phone.sent_audio(), phone.heard_audio()
        break
    v2v, cut = at_the_phone(sent, heard, turn.start_s, turn.stop_s)
    return {"name": turn.name, "language": turn.language, "v2v_ms": v2v, "cut_off": cut, "refused": refused,
            "answered_after_s": round(answered_s, 1), "has_pause": turn.has_pause,
            "wall_s": round(time.monotonic() - t0, 1)}


def sip_summary(calls: list[dict]) -> dict:
    v2v = [c["v2v_ms"] for c in calls if c["v2v_ms"] is not None]
    return {"calls": len(calls), "answered": len(v2v), "v2v_p50_ms": pct(v2v, 0.5), "v2v_p95_ms": pct(v2v, 0.95),
            "cut_off": sum(c["cut_off"] for c in calls),
            "cut_off_rate": round(sum(c["cut_off"] for c in calls) / max(1, len(calls)), 3)}


def run_sip(args) -> dict:
    """Each step of --sip (e.g. "4,8"): that many phones at once, on one server started for all steps."""
    turns = load_set(args.lang, calls=False)
    # alternate the languages so that every line hears both
    turns = sorted(turns, key=lambda t: (int(re.sub(r"\D", "", t.name) or 0), t.language))
    work = Path(tempfile.mkdtemp(prefix="bench-turns-sip-"))
    server, healthy_s = start_server(work, wait_prewarm=True)
    steps, offset = [], 0
    try:
        for n in [int(v) for v in args.sip.split(",")]:
            per = args.per_line
            plan = [[turns[(offset + i * per + k) % len(turns)] for k in range(per)] for i in range(n)]
            offset += n * per  # the next step hears other turns

            def line(i: int) -> list[dict]:
                time.sleep(i * 0.7)  # staggered, as calls arrive
                return [phone_call(server, t, work, f"{n}s{i}x{k}") for k, t in enumerate(plan[i])]

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=n) as pool:
                calls = [c for cs in pool.map(line, range(n)) for c in cs]
            summary = sip_summary(calls)
            summary.update(simultaneous=n, seconds=round(time.monotonic() - started, 1),
                           holds_p95_1500=bool(summary["v2v_p95_ms"] is not None and summary["v2v_p95_ms"] <= 1500))
            for c in calls:
                print(f"  {c['name']:8s} v2v at the phone {_ms(c['v2v_ms']):>6s}{'  CUT OFF' if c['cut_off'] else ''}")
            print(f"{n} simultaneous SIP calls, {summary['calls']} calls: v2v at the phone p50 "
                  f"{_ms(summary['v2v_p50_ms'])} ms, p95 {_ms(summary['v2v_p95_ms'])} ms, cut off {summary['cut_off']} "
                  f"({100 * summary['cut_off_rate']:.0f}%), p95 <= 1.5 s: {'yes' if summary['holds_p95_1500'] else 'NO'}\n",
                  flush=True)
            steps.append({"summary": summary, "calls": calls})
    finally:
        server.stop()
    return {"mode": "sip", "healthz_ok_s": round(healthy_s, 1), "steps": steps}


def run_restart(args) -> dict:
    # one-sentence turns without pauses: the agent's answer is timed, not a cut-off
    turns = [t for t in load_set(args.lang or "en", calls=False)
             if not t.has_pause and len(re.findall(r"[.?!。？！]", t.text.rstrip(".?!。？！"))) == 0][:10]
    work = Path(tempfile.mkdtemp(prefix="bench-turns-restart-"))
    server, healthy_s = start_server(work, wait_prewarm=False)
    try:
        calls = [phone_call(server, turns[0], work, "first")]  # at once: /healthz just said ok
        for k in range(1, 10):
            calls.append(phone_call(server, turns[k % len(turns)], work, f"n{k}"))
    finally:
        server.stop()
    first, tenth = calls[0]["v2v_ms"], calls[-1]["v2v_ms"]
    rest = [c["v2v_ms"] for c in calls[1:] if c["v2v_ms"] is not None]
    print(f"\nserve: /healthz ok after {healthy_s:.1f} s; the first call (dialled then) refused "
          f"{calls[0]['refused']} times, answered after {calls[0]['answered_after_s']} s; first call v2v at the phone {_ms(first)} ms, "
          f"10th {_ms(tenth)} ms (calls 2-10 p50 {_ms(pct(rest, 0.5))} ms)")
    return {"mode": "restart", "healthz_ok_s": round(healthy_s, 1), "first_v2v_ms": first, "tenth_v2v_ms": tenth,
            "calls_2_10_p50_ms": pct(rest, 0.5), "calls": calls}


def merge_parts(lang: str | None) -> int:
    """The parts of a calls run (--part K/N) as one set."""
    files = sorted(RESULTS.glob(f"bench_turns_calls_{lang or 'all'}_part*.json"))
    turns = [TurnResult(**t) for f in files for t in json.loads(f.read_text(encoding="utf-8"))["turns"]]
    summary = summarise(turns)
    print(f"{len(files)} parts: {', '.join(f.name for f in files)}")
    print_summary(summary, "call")
    out = RESULTS / f"bench_turns_calls_{lang or 'all'}.json"
    out.write_text(json.dumps({"mode": "calls", "parts": [f.name for f in files], "summary": summary,
                               "turns": [asdict(t) for t in turns]}, ensure_ascii=False, indent=1) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", choices=["en", "zh"], default=None, help="only this language's turns")
    ap.add_argument("--limit", type=int, default=0, help="only the first N turns (calls mode)")
    ap.add_argument("--part", default="", help="K/N: every N-th turn from the K-th (a run of N parts covers the set)")
    ap.add_argument("--merge", action="store_true", help="summarise the parts' result files of --lang together")
    ap.add_argument("--calls", action="store_true", help="also the 3-turn calls (calls mode)")
    ap.add_argument("--cli", action="store_true", help="a `voiceagent call` process per turn")
    ap.add_argument("--call-lang", default="auto", help="--lang given to the call (auto: detected)")
    ap.add_argument("--sip", default="", help="N simultaneous SIP calls to `voiceagent serve` (N,M,...: steps)")
    ap.add_argument("--per-line", type=int, default=3, help="calls each SIP phone places one after another")
    ap.add_argument("--restart", action="store_true", help="the first call after `voiceagent serve` starts")
    ap.add_argument("--config")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if args.merge:
        return merge_parts(args.lang)
    if args.sip:
        result, name = run_sip(args), f"bench_turns_sip{args.sip.replace(',', '_')}"
    elif args.restart:
        result, name = run_restart(args), "bench_turns_restart"
    else:
        result = run_calls(args)
        print_summary(result["summary"], "call")
        name = f"bench_turns_{result['mode']}_{args.lang or 'all'}"
        if args.part:
            name += "_part" + args.part.replace("/", "of")
    # the machine's load while it ran: figures taken on a busy machine are not the agent's alone
    result.update(date=started, argv=sys.argv[1:], machine="2-core CPU, shared", loadavg_at_end=os.getloadavg())
    print(f"load average at the end (1/5/15 min): {os.getloadavg()}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
