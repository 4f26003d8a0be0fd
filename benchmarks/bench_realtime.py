#!/usr/bin/env python3
"""The real-time engine against its targets: latency, barge-in, and calls per process.

    .venv/bin/python benchmarks/bench_realtime.py                    # all three parts (several minutes)
    .venv/bin/python benchmarks/bench_realtime.py --quick            # smoke test: fewer trials, up to 3 calls
    .venv/bin/python benchmarks/bench_realtime.py --latency --repeat 3
    .venv/bin/python benchmarks/bench_realtime.py --barge-in --trials 8
    .venv/bin/python benchmarks/bench_realtime.py --capacity --max-calls 12

Every call is played in real time (FileLeg realtime=True) through the same CallSession as a live
call, in one process with the models loaded once:

1. latency: each sample call, one at a time; voice_to_voice p50/p95 over the reply turns that
   produced audio, median/p95 of each stage, per-language medians, interrupted replies.
   Targets: p50 <= 800 ms, p95 <= 1200 ms.
2. barge-in: a question with a long answer, then an interruption 3-6 s after the question ends;
   barge_in_stop_ms (caller speech start -> agent audio stopped) per trial, as the engine reports it
   and as measured on the agent's track. Then backchannel trials ("Okay." / "嗯。" / "好的。" made
   with the product's own TTS) during the answer, which must not interrupt it.
   Targets: stop <= 200 ms, 0 backchannels taken as interruptions.
3. capacity: N phone lines busy at once in one process and one event loop, N = 1, 2, 3, 4, 6, 8, ...
   Each line plays sample calls back to back (rotating through the samples; each call starts after
   a random 0-2 s pause, fixed seed) until at least 12 calls are done for that N, so every N hears
   the same mix. A step passes with p95 voice_to_voice <= 1500 ms and no playout underruns / late
   frames; reported over all replies, and leaving out replies queued behind the agent's previous
   reply (the caller spoke on while it answered: that wait does not depend on load). The sweep
   stops at the first N failing the latter. Reports the largest N that passes.

Figures go to stdout and to benchmarks/results/bench_realtime.json (not written with --simulated,
which runs the latency and barge-in calls on simulated time to check the script itself quickly).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.audio import load_audio, resample  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.legs import FileLeg  # noqa: E402
from voiceagent.runtime import Runtime  # noqa: E402
from voiceagent.engine import CallSession, SessionOptions  # noqa: E402
from voiceagent.transcription import speech_segments  # noqa: E402

RATE = 16000
SAMPLES = ROOT / "samples" / "audio"
STAGES = ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice")
TARGET_P50_MS, TARGET_P95_MS = 800.0, 1200.0
TARGET_STOP_MS = 200.0
CAPACITY_P95_MS = 1500.0
CAPACITY_STEPS = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32)
VOICED = 0.02  # |sample| above this counts as speech on a track (as tests/test_realtime.py)
BACKCHANNELS = (("en", "Okay."), ("zh", "嗯。"), ("zh", "好的。"))


# -- helpers -----------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def med(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def r1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), np.float32)


def first_turn(name: str, config: Config) -> np.ndarray:
    return speech_segments(load_audio(SAMPLES / name, RATE).samples, config.vad)[0].audio


def onset(audio: np.ndarray) -> int:
    """First sample of speech in `audio` (the segment carries a little padding before it)."""
    idx = np.flatnonzero(np.abs(audio) > VOICED)
    return int(idx[0]) if idx.size else 0


def tts_audio(runtime: Runtime, lang: str, text: str) -> np.ndarray:
    chunks = list(runtime.tts.voice(lang).synthesize(text))
    return np.concatenate([resample(c.samples, c.sample_rate, RATE) for c in chunks]).astype(np.float32)


def agent_turns(record, kind: str | None = "reply") -> list:
    return [t for t in record.turns if t.role == "agent" and (kind is None or t.kind == kind)]


def reply_context(record) -> list[dict]:
    """Each reply that produced audio, with the caller turn it answers, and whether it was queued:
    the caller's turn ended while an earlier agent turn was still playing (they spoke on over the
    agent), so the reply had to wait for that one to finish whatever the load."""
    out = []
    turns = record.turns
    for j, t in enumerate(turns):
        if t.role != "agent" or t.kind != "reply" or not (t.start_s > 0 and t.end_s > t.start_s):
            continue
        caller = turns[j - 1] if j > 0 and turns[j - 1].role == "caller" else None
        earlier = [a for a in turns[:j] if a.role == "agent" and a.end_s > a.start_s > 0]
        queued = caller is not None and any(a.end_s > caller.end_s + 0.05 for a in earlier)
        out.append({"turn": t, "caller": caller, "queued": queued, "voice_to_voice_ms": t.latency_ms["voice_to_voice"]})
    return out


def talked_over(record, min_overlap_s: float = 0.5) -> list[dict]:
    """Agent audio that overlapped caller speech for more than `min_overlap_s` without being cut:
    the agent spoke over the caller and did not stop."""
    callers = [t for t in record.turns if t.role == "caller"]
    out = []
    for a in record.turns:
        if a.role != "agent" or a.interrupted or not a.end_s > a.start_s > 0:
            continue
        for c in callers:
            overlap = min(a.end_s, c.end_s) - max(a.start_s, c.start_s)
            if overlap > min_overlap_s:
                out.append({"agent_start_s": a.start_s, "agent_end_s": a.end_s, "caller_start_s": c.start_s,
                            "caller_end_s": c.end_s, "overlap_s": round(overlap, 3), "caller_text": c.text})
    return out


def turn_rows(record) -> list[dict]:
    """The call's turns, compact, for the JSON (what the engine heard and said, and when)."""
    rows = []
    for t in record.turns:
        row = {"role": t.role, "start_s": t.start_s, "end_s": t.end_s, "text": t.text}
        if t.role == "agent":
            row.update(kind=t.kind, interrupted=t.interrupted, latency_ms=t.latency_ms)
            if t.interrupted:
                row["heard_text"] = t.heard_text
        else:
            row.update(intent=t.intent, language=t.language)
        rows.append(row)
    return rows


async def run_call(runtime: Runtime, audio: np.ndarray, realtime: bool, delay_s: float = 0.0):
    """One call; the leg (and its clock) is made when the call starts, after `delay_s`."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    leg = FileLeg(audio, RATE, realtime=realtime)
    t0 = time.perf_counter()
    record = await CallSession(runtime, leg, SessionOptions(greeting=False)).run()
    return record, leg, time.perf_counter() - t0


class CpuMeter:
    """Process CPU time over wall time (1.0 = one core busy), and the machine's load meanwhile."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = time.process_time() - self.cpu0
        self.cores = self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0
        self.loadavg_1m = os.getloadavg()[0]

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 1), "cpu_s": round(self.cpu_s, 1), "cpu_cores_used": round(self.cores, 2),
                "cpu_percent_of_machine": round(100 * self.cores / (os.cpu_count() or 1), 1),
                "loadavg_1m_after": round(self.loadavg_1m, 2)}


def stage_summary(turns: list) -> dict:
    out = {}
    for s in STAGES:
        vals = [t.latency_ms.get(s) or 0.0 for t in turns]
        out[s] = {"p50": med(vals), "p95": r1(pct(vals, 0.95))}
    return out


# -- 1. latency ----------------------------------------------------------------------------------
def bench_latency(runtime: Runtime, repeat: int, realtime: bool, expected: dict) -> dict:
    samples = sorted(SAMPLES.glob("*.wav"))
    replies: list[dict] = []  # reply_context() rows, with the call's language and pass
    calls, totals = [], {"underruns": 0, "late_frames": 0, "stage_failures": 0, "barge_ins": 0, "frames_dropped": 0}
    silent_replies, interrupted, own_turns, overlaps = [], [], [], []
    with CpuMeter() as cpu:
        for rep in range(repeat):
            for path in samples:
                audio = load_audio(path, RATE).samples
                record, _, wall = asyncio.run(run_call(runtime, audio, realtime))
                ctx = reply_context(record)
                said_ = {id(c["turn"]) for c in ctx}
                for t in agent_turns(record):
                    if id(t) not in said_:
                        silent_replies.append({"call": path.name, "pass": rep + 1, "text": t.text,
                                               "start_s": t.start_s, "end_s": t.end_s, "interrupted": t.interrupted})
                    if t.interrupted:
                        interrupted.append({"call": path.name, "pass": rep + 1, "text": t.text, "heard": t.heard_text,
                                            "start_s": t.start_s, "end_s": t.end_s})
                for t in agent_turns(record, None):
                    if t.kind != "reply":
                        own_turns.append({"call": path.name, "pass": rep + 1, "kind": t.kind, "text": t.text,
                                          "start_s": t.start_s})
                over = talked_over(record)
                overlaps += [{"call": path.name, "pass": rep + 1, **o} for o in over]
                replies += [{**c, "language": record.language, "pass": rep + 1} for c in ctx]
                for k in totals:
                    totals[k] += record.stats.get(k, 0)
                exp = len(expected.get(path.name, {}).get("turns", []))
                calls.append({
                    "call": path.name, "pass": rep + 1, "language": record.language, "wall_s": round(wall, 2),
                    "caller_turns": sum(t.role == "caller" for t in record.turns), "caller_turns_in_script": exp,
                    "replies_with_audio": len(ctx),
                    "voice_to_voice_ms": [c["voice_to_voice_ms"] for c in ctx],
                    "queued": [c["queued"] for c in ctx],
                    "agent_talked_over_caller": over,
                    "outcome": {"ended_by": record.outcome.ended_by, "end_reason": record.outcome.end_reason,
                                "handoff": record.outcome.handoff},
                    "stats": record.stats, "errors": record.errors, "turns": turn_rows(record),
                })
                v2v = ", ".join(f"{c['voice_to_voice_ms']:.0f}{'(queued)' if c['queued'] else ''}" for c in ctx) or "-"
                notes = ["interrupted reply"] * any(t.interrupted for t in agent_turns(record))
                notes += [f"agent talked over caller {o['overlap_s']:.1f}s" for o in over]
                print(f"  [{rep + 1}] {path.name:<28} {record.language:<3} v2v ms: {v2v}"
                      f"{'  (' + '; '.join(notes) + ')' if notes else ''}", flush=True)
    v2v = [c["voice_to_voice_ms"] for c in replies]
    unqueued = [c["voice_to_voice_ms"] for c in replies if not c["queued"]]
    p50, p95 = med(v2v), r1(pct(v2v, 0.95))
    langs = sorted({c["language"] for c in replies})
    return {
        "mode": "realtime" if realtime else "simulated",
        "repeat": repeat,
        "calls": len(calls),
        "reply_turns": len(replies),
        "voice_to_voice_ms": {"p50": p50, "p95": p95, "min": r1(min(v2v, default=None)),
                              "max": r1(max(v2v, default=None))},
        "stages_ms": stage_summary([c["turn"] for c in replies]),
        "voice_to_voice_p50_by_language_ms": {lang: med([c["voice_to_voice_ms"] for c in replies if c["language"] == lang])
                                              for lang in langs},
        "stages_p50_by_language_ms": {lang: {s: med([c["turn"].latency_ms[s] for c in replies if c["language"] == lang])
                                             for s in STAGES} for lang in langs},
        "voice_to_voice_p50_by_pass_ms": {rep + 1: med([c["voice_to_voice_ms"] for c in replies if c["pass"] == rep + 1])
                                          for rep in range(repeat)},
        "queued_replies": len(v2v) - len(unqueued),
        "voice_to_voice_unqueued_ms": {"p50": med(unqueued), "p95": r1(pct(unqueued, 0.95)), "replies": len(unqueued),
                                       "note": "leaving out replies queued behind the agent's previous reply"},
        "interrupted_replies": len(interrupted),
        "replies_with_audio_but_zero_voice_to_voice": sum(v <= 0 for v in v2v),
        "calls_with_more_caller_turns_than_script": [c["call"] for c in calls
                                                     if c["caller_turns"] > c["caller_turns_in_script"]],
        "agent_talked_over_caller": overlaps,
        "interrupted_detail": interrupted,
        "replies_without_audio": silent_replies,
        "agent_own_turns": own_turns,
        "totals": totals,
        "targets": {"p50_ms": TARGET_P50_MS, "p95_ms": TARGET_P95_MS,
                    "p50_met": p50 is not None and p50 <= TARGET_P50_MS,
                    "p95_met": p95 is not None and p95 <= TARGET_P95_MS},
        "cpu": cpu.as_dict(),
        "per_call": calls,
    }


# -- 2. barge-in and backchannels --------------------------------------------------------------
def track_stop(track: np.ndarray, at: int, until: int) -> tuple[bool, float | None]:
    """Was the agent speaking in the second before sample `at`, and how long after `at` did its voice
    stop (the last voiced sample before `until`, the start of its next reply)?"""
    before = track[max(0, at - RATE) : at]
    speaking = before.size > 0 and float(np.abs(before).max()) > VOICED
    after = np.flatnonzero(np.abs(track[at:until]) > VOICED)
    stop_ms = float(after[-1] + 1) / RATE * 1000 if after.size else 0.0
    return bool(speaking), round(stop_ms, 1)


def bench_barge_in(runtime: Runtime, config: Config, trials: int, bc_trials: int, realtime: bool) -> dict:
    questions = {lang: first_turn(f"{lang}_order_status_16k.wav", config) for lang in ("en", "zh")}
    interruptions = {lang: first_turn(f"{lang}_multi_turn_8k.wav", config) for lang in ("en", "zh")}
    offsets = np.linspace(3.0, 6.0, trials) if trials > 1 else np.array([4.0])
    rows = []
    with CpuMeter() as cpu:
        for k, offset in enumerate(offsets):
            lang = ("en", "zh")[k % 2]
            q, cut = questions[lang], interruptions[lang]
            q_end = 0.5 + len(q) / RATE
            audio = np.concatenate([silence(0.5), q, silence(float(offset)), cut, silence(6.0)])
            cut_at = int(round((q_end + offset) * RATE))
            speech_at = cut_at + onset(cut)  # the interruption's first voiced sample
            record, leg, _ = asyncio.run(run_call(runtime, audio, realtime))
            track = leg.agent_track()
            replies = agent_turns(record, None)
            # the reply playing when the caller spoke up: started before the interruption's speech
            cut_reply = next((t for t in replies if 0 < t.start_s <= speech_at / RATE and t.end_s >= t.start_s), None)
            later = [t.start_s for t in replies if t.start_s > speech_at / RATE]
            until = int(min(later) * RATE) if later else len(track)
            speaking, stop_track = track_stop(track, speech_at, until)
            row = {
                "trial": k + 1, "language": lang, "offset_s": round(float(offset), 2),
                "interruption_speech_at_s": round(speech_at / RATE, 3),
                "agent_speaking_at_interruption": speaking,
                "barge_in_stop_ms": record.stats.get("barge_in_stop_ms"),
                "track_stop_ms": stop_track if speaking else None,
                "barge_ins": record.stats.get("barge_ins", 0),
                "reply_marked_interrupted": bool(cut_reply and cut_reply.interrupted),
                "cut_reply_heard_text": cut_reply.heard_text if cut_reply else None,
                "interruption_answered": bool(later),
                "underruns": record.stats.get("underruns", 0), "late_frames": record.stats.get("late_frames", 0),
                "turns": turn_rows(record), "stats": record.stats, "errors": record.errors,
            }
            rows.append(row)
            print(f"  barge-in {k + 1}/{len(offsets)} {lang} +{offset:.2f}s: stop {row['barge_in_stop_ms']} ms "
                  f"(track {row['track_stop_ms']} ms), speaking={speaking}, "
                  f"marked interrupted={row['reply_marked_interrupted']}", flush=True)

        bc_rows = []
        acks = {(lang, text): tts_audio(runtime, lang, text) for lang, text in BACKCHANNELS}
        bc_offsets = np.linspace(3.0, 5.0, bc_trials) if bc_trials > 1 else np.array([3.5])
        for k, offset in enumerate(bc_offsets):
            lang, text = BACKCHANNELS[k % len(BACKCHANNELS)]
            q, ack = questions[lang], acks[(lang, text)]
            q_end = 0.5 + len(q) / RATE
            audio = np.concatenate([silence(0.5), q, silence(float(offset)), ack, silence(16.0)])
            ack_at = (int(round((q_end + offset) * RATE)) + onset(ack)) / RATE
            record, leg, _ = asyncio.run(run_call(runtime, audio, realtime))
            replies = agent_turns(record, None)
            during = next((t for t in replies if 0 < t.start_s <= ack_at <= t.end_s), None)
            wrongly = bool(during and during.interrupted) or record.stats.get("barge_ins", 0) > 0
            row = {
                "trial": k + 1, "language": lang, "backchannel": text, "offset_s": round(float(offset), 2),
                "backchannel_at_s": round(ack_at, 3), "backchannel_s": round(len(ack) / RATE, 2),
                "during_agent_reply": during is not None,
                "wrongly_interrupted": wrongly,
                "backchannels_let_through": record.stats.get("backchannels", 0),
                "barge_ins": record.stats.get("barge_ins", 0),
                "caller_turns": sum(t.role == "caller" for t in record.turns),
                "turns": turn_rows(record), "stats": record.stats, "errors": record.errors,
            }
            bc_rows.append(row)
            print(f"  backchannel {k + 1}/{len(bc_offsets)} {text} +{offset:.2f}s: during reply={row['during_agent_reply']}, "
                  f"wrongly interrupted={wrongly}, let through={row['backchannels_let_through']}", flush=True)

    valid = [r for r in rows if r["agent_speaking_at_interruption"]]
    stops = [r["barge_in_stop_ms"] for r in valid if r["barge_in_stop_ms"] is not None]
    track_stops = [r["track_stop_ms"] for r in valid if r["track_stop_ms"] is not None]
    bc_valid = [r for r in bc_rows if r["during_agent_reply"]]
    return {
        "mode": "realtime" if realtime else "simulated",
        "barge_in": {
            "trials": len(rows), "valid_trials": len(valid),
            "stop_ms": {"p50": med(stops), "max": r1(max(stops, default=None))},
            "track_stop_ms": {"p50": med(track_stops), "max": r1(max(track_stops, default=None)),
                              "over_target": sum(x > TARGET_STOP_MS for x in track_stops)},
            "note": "stop_ms: the engine's barge_in_stop_ms (from the speech start its VAD reported for the burst "
                    "that paused the agent, to the end of the agent audio heard). track_stop_ms: on the agent's "
                    "track, from the interruption's first sample above 0.02 to the last agent sample above 0.02 "
                    "before its next reply (includes audio resumed after a pause).",
            "marked_interrupted": sum(r["reply_marked_interrupted"] for r in valid),
            "missing_stop_figure": sum(r["barge_in_stop_ms"] is None for r in valid),
            "target_stop_ms": TARGET_STOP_MS,
            "target_met": bool(stops) and len(stops) == len(valid) and max(stops) <= TARGET_STOP_MS,
            "per_trial": rows,
        },
        "backchannel": {
            "trials": len(bc_rows), "during_reply": len(bc_valid),
            "wrongly_interrupted": sum(r["wrongly_interrupted"] for r in bc_valid),
            "wrongly_interrupted_all_trials": sum(r["wrongly_interrupted"] for r in bc_rows),
            "by_phrase": {text: f"{sum(r['wrongly_interrupted'] for r in bc_rows if r['backchannel'] == text)}/"
                                f"{sum(r['backchannel'] == text for r in bc_rows)} wrongly interrupted"
                          for _, text in BACKCHANNELS},
            "later_caller_turns": {r["backchannel"] + f" #{r['trial']}": [t["text"] for t in r["turns"]
                                                               if t["role"] == "caller"][1:] for r in bc_rows},
            "target_met": bool(bc_valid) and not any(r["wrongly_interrupted"] for r in bc_rows),
            "per_trial": bc_rows,
        },
        "cpu": cpu.as_dict(),
    }


# -- 3. capacity ---------------------------------------------------------------------------------
async def _line(runtime: Runtime, plan: list[tuple[str, np.ndarray, float]]) -> list:
    """One phone line: its calls one after another, each after a short random pause."""
    out = []
    for name, audio, delay in plan:
        try:
            out.append((name, await run_call(runtime, audio, True, delay)))
        except Exception as exc:  # a call that crashes is reported, the others go on
            out.append((name, exc))
    return out


async def _lines(runtime: Runtime, plans: list[list]) -> tuple[list, list[float]]:
    """Every line at once; also how late the event loop woke a 10 ms timer meanwhile (ms): a frame of
    agent audio is late when the loop is held up longer than the playout lead plus one frame."""
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)

    watcher = asyncio.create_task(monitor())
    try:
        lines = await asyncio.gather(*(_line(runtime, p) for p in plans))
    finally:
        done.set()
        await watcher
    return [r for line in lines for r in line], lags


def bench_capacity(runtime: Runtime | None, config: Config, max_calls: int, min_calls: int, seed: int,
                   expected: dict) -> dict:
    """N lines busy at once, in one process and one event loop. Each line plays calls back to back
    (rotating through the samples) until N * ceil(min_calls / N) calls are done, so every N hears the
    same mix of calls (with min_calls >= the number of samples) and its p95 rests on enough replies.
    With `runtime` None, each N gets freshly loaded models, so the speech and reply caches hold nothing
    from earlier calls: every caller is heard for the first time, as in the first pass of the latency
    part. Otherwise the calls share `runtime` and whatever it has cached."""
    warm = runtime is not None
    samples = sorted(SAMPLES.glob("*.wav"))
    audio = {p.name: load_audio(p, RATE).samples for p in samples}
    names = [p.name for p in samples]
    steps, largest_ok, largest_ok_unqueued, literal_ok = [], 0, 0, True
    for n in [s for s in CAPACITY_STEPS if s <= max_calls]:
        rng = random.Random(seed)
        per_line = max(1, -(-min_calls // n))
        plans = [[(names[(i + j * n) % len(names)], audio[names[(i + j * n) % len(names)]], rng.uniform(0.0, 2.0))
                  for j in range(per_line)] for i in range(n)]
        step_rt = runtime if warm else Runtime.load(config)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        with CpuMeter() as cpu:
            results, lags = asyncio.run(_lines(step_rt, plans))
        del step_rt
        gc.collect()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        v2v, v2v_unqueued, failures, crashed, missing, busy_s = [], [], 0, [], 0, 0.0
        underruns = late = queued = 0
        odd = []
        for name, res in results:
            if isinstance(res, BaseException):
                crashed.append(f"{name}: {type(res).__name__}: {res}")
                continue
            record, _, wall = res
            busy_s += wall
            ctx = reply_context(record)
            v2v += [c["voice_to_voice_ms"] for c in ctx]
            v2v_unqueued += [c["voice_to_voice_ms"] for c in ctx if not c["queued"]]
            queued += sum(c["queued"] for c in ctx)
            failures += record.stats.get("stage_failures", 0)
            underruns += record.stats.get("underruns", 0)
            late += record.stats.get("late_frames", 0)
            exp = len(expected.get(name, {}).get("turns", []))
            missing += max(0, exp - len(ctx))
            if record.errors or record.stats.get("underruns") or record.stats.get("late_frames") or len(ctx) != exp:
                odd.append({"call": name, "replies_with_audio": len(ctx), "caller_turns_in_script": exp,
                            "stats": record.stats, "errors": record.errors, "turns": turn_rows(record)})
        p50, p95 = med(v2v), r1(pct(v2v, 0.95))
        p95_unqueued = r1(pct(v2v_unqueued, 0.95))
        clean = underruns + late == 0 and not crashed
        ok = bool(v2v) and p95 <= CAPACITY_P95_MS and clean
        ok_unqueued = bool(v2v_unqueued) and p95_unqueued <= CAPACITY_P95_MS and clean
        step = {
            "calls": n, "calls_played": len(results), "mean_concurrent_calls": round(busy_s / cpu.wall_s, 2),
            "reply_turns": len(v2v), "replies_missing_vs_script": missing,
            "voice_to_voice_ms": {"p50": p50, "p95": p95, "max": r1(max(v2v, default=None))},
            "queued_replies": queued,
            "voice_to_voice_unqueued_ms": {"p50": med(v2v_unqueued), "p95": p95_unqueued},
            "underruns": underruns, "late_frames": late, "underruns_plus_late_frames": underruns + late,
            "stage_failures": failures, "crashed_calls": crashed,
            "event_loop_lag_ms": {"p50": med(lags), "p99": r1(pct(lags, 0.99)), "max": r1(max(lags, default=None)),
                                  "over_40ms": sum(x > 40 for x in lags), "over_60ms": sum(x > 60 for x in lags)},
            "cpu": {**cpu.as_dict(),
                    "rusage_user_s": round(ru1.ru_utime - ru0.ru_utime, 1), "rusage_sys_s": round(ru1.ru_stime - ru0.ru_stime, 1)},
            "passed": ok, "passed_unqueued": ok_unqueued, "odd_calls": odd,
        }
        steps.append(step)
        print(f"  {n:>2} lines, {len(results)} calls: {len(v2v):>3} replies, v2v p50 {p50} p95 {p95} ms "
              f"(unqueued p95 {p95_unqueued}), underruns+late {underruns + late}, failures {failures}, "
              f"loop lag max {max(lags, default=0):.0f} ms, CPU {cpu.cores:.2f} cores ({cpu.wall_s:.0f} s) "
              f"-> {'pass' if ok else 'FAIL'}"
              f"{'' if ok == ok_unqueued else ' (unqueued: ' + ('pass' if ok_unqueued else 'FAIL') + ')'}", flush=True)
        literal_ok = literal_ok and ok  # every N up to this one passed
        if literal_ok:
            largest_ok = n
        if ok_unqueued:
            largest_ok_unqueued = n
        if not ok_unqueued:
            break  # the load criterion failed: more calls only make it worse
    return {"mode": "realtime", "seed": seed, "max_calls": max_calls, "min_calls_per_step": min_calls,
            "caches": "warm (shared with the earlier parts)" if warm else "cold (models loaded afresh for each N)",
            "p95_limit_ms": CAPACITY_P95_MS,
            "largest_passing_calls": largest_ok, "largest_passing_calls_unqueued": largest_ok_unqueued,
            "note": "passed: p95 over every reply <= limit and no underruns/late frames. passed_unqueued: the same "
                    "leaving out replies queued behind the agent's previous reply (the caller spoke on while it "
                    "was answering), whose wait does not depend on load. The sweep stops at the first N that "
                    "fails passed_unqueued.",
            "steps": steps}


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", action="store_true", help="part 1 (all parts run when none is named)")
    ap.add_argument("--barge-in", action="store_true", help="part 2")
    ap.add_argument("--capacity", action="store_true", help="part 3")
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer trials, capacity up to 3 calls")
    ap.add_argument("--repeat", type=int, default=1, help="latency: play the sample set this many times")
    ap.add_argument("--trials", type=int, default=None, help="barge-in trials (default 8; 2 with --quick)")
    ap.add_argument("--bc-trials", type=int, default=None, help="backchannel trials (default 6; 3 with --quick)")
    ap.add_argument("--max-calls", type=int, default=None, help="capacity: largest N tried (default 32; 3 with --quick)")
    ap.add_argument("--capacity-calls", type=int, default=None,
                    help="capacity: calls played per N at least (default 12, every sample once; N with --quick)")
    ap.add_argument("--seed", type=int, default=7, help="capacity: start-stagger seed")
    ap.add_argument("--warm", action="store_true", help="capacity: keep the models (and their speech/reply caches) "
                                                         "of the earlier parts instead of loading them afresh per N")
    ap.add_argument("--prewarm", action="store_true", help="pre-synthesise the fixed replies first, as `serve` does")
    ap.add_argument("--simulated", action="store_true", help="latency/barge-in on simulated time (checks the script; "
                                                              "figures not written)")
    ap.add_argument("--config")
    args = ap.parse_args()
    if not (args.latency or args.barge_in or args.capacity):
        args.latency = args.barge_in = args.capacity = True
    trials = args.trials if args.trials is not None else (2 if args.quick else 8)
    bc_trials = args.bc_trials if args.bc_trials is not None else (3 if args.quick else 6)
    max_calls = args.max_calls if args.max_calls is not None else (3 if args.quick else 32)
    min_calls = args.capacity_calls if args.capacity_calls is not None else (1 if args.quick else 12)
    realtime = not args.simulated
    if args.simulated and args.capacity:
        print("--simulated: capacity skipped (it needs real time)")
        args.capacity = False

    config = Config.load(args.config)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    runtime = Runtime.load(config)
    load_s = time.perf_counter() - t0
    if args.prewarm:
        runtime.prewarm_speech(background=False)
    expected = json.loads((SAMPLES / "transcripts.json").read_text(encoding="utf-8"))
    result: dict = {
        "command": " ".join([".venv/bin/python", "benchmarks/bench_realtime.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_before],
        "quick": args.quick, "prewarm": args.prewarm,
        "models": runtime.model_names(), "model_load_s": {"total": round(load_s, 2), **runtime.load_times_s},
    }

    if args.latency:
        print(f"== latency: {args.repeat} x {len(list(SAMPLES.glob('*.wav')))} calls, one at a time, "
              f"{'real time' if realtime else 'simulated time'}", flush=True)
        result["latency"] = bench_latency(runtime, args.repeat, realtime, expected)
    if args.barge_in:
        print(f"== barge-in: {trials} interruption trials, {bc_trials} backchannel trials", flush=True)
        result["barge_in"] = bench_barge_in(runtime, config, trials, bc_trials, realtime)
    if args.capacity:
        print(f"== capacity: simultaneous real-time calls, up to {max_calls} (at least {min_calls} calls per N)", flush=True)
        if not args.warm:
            runtime = None  # each N loads its own (below): free these first
            gc.collect()
        result["capacity"] = bench_capacity(runtime, config, max_calls, min_calls, args.seed, expected)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    print_summary(result)
    if realtime:
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, ensure_ascii=False, indent=2, default=_plain) + "\n"
        (out / "bench_realtime.json").write_text(text, encoding="utf-8")
        print(f"written: {(out / 'bench_realtime.json').relative_to(ROOT)}")


def _plain(value):
    """numpy scalars (and anything else json cannot take) as plain values."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_summary(result: dict) -> None:
    print()
    print(f"== summary ({result['cpu_count']} cores, load at start {result['loadavg_at_start']}, "
          f"models {result['models']})")
    lat = result.get("latency")
    if lat:
        v = lat["voice_to_voice_ms"]
        print(f"latency ({lat['mode']}): {lat['calls']} calls, {lat['reply_turns']} reply turns with audio")
        print(f"  voice_to_voice p50 {v['p50']} ms (target <= {TARGET_P50_MS:.0f}: {_mark(lat['targets']['p50_met'])}), "
              f"p95 {v['p95']} ms (target <= {TARGET_P95_MS:.0f}: {_mark(lat['targets']['p95_met'])})")
        print(f"  {'stage':<18}{'p50 ms':>10}{'p95 ms':>10}")
        for s in STAGES:
            print(f"  {s:<18}{str(lat['stages_ms'][s]['p50']):>10}{str(lat['stages_ms'][s]['p95']):>10}")
        u = lat["voice_to_voice_unqueued_ms"]
        print(f"  leaving out {lat['queued_replies']} replies queued behind the agent's previous reply: "
              f"p50 {u['p50']} ms, p95 {u['p95']} ms")
        print(f"  voice_to_voice p50 by language: {lat['voice_to_voice_p50_by_language_ms']}")
        for lang, stages in lat["stages_p50_by_language_ms"].items():
            print(f"  {lang} stage p50s: {stages}")
        if len(lat["voice_to_voice_p50_by_pass_ms"]) > 1:
            print(f"  voice_to_voice p50 by pass: {lat['voice_to_voice_p50_by_pass_ms']}")
        split = lat["calls_with_more_caller_turns_than_script"]
        print(f"  calls heard as more caller turns than the script has: {len(split)}/{lat['calls']} {sorted(set(split))}")
        over = lat["agent_talked_over_caller"]
        print(f"  agent spoke over the caller (> 0.5 s, not cut): {len(over)} "
              f"{sorted({o['call'] for o in over})}")
        print(f"  interrupted replies {lat['interrupted_replies']}, replies without audio {len(lat['replies_without_audio'])}, "
              f"agent's own turns {len(lat['agent_own_turns'])}, totals {lat['totals']}, CPU {lat['cpu']['cpu_cores_used']} cores")
    bi = result.get("barge_in")
    if bi:
        b, c = bi["barge_in"], bi["backchannel"]
        print(f"barge-in ({bi['mode']}): {b['valid_trials']}/{b['trials']} trials with the agent speaking")
        print(f"  {'trial':<6}{'lang':<6}{'offset s':>9}{'stop ms':>10}{'track ms':>10}  interrupted")
        for r in b["per_trial"]:
            print(f"  {r['trial']:<6}{r['language']:<6}{r['offset_s']:>9}{str(r['barge_in_stop_ms']):>10}"
                  f"{str(r['track_stop_ms']):>10}  {r['reply_marked_interrupted']}"
                  f"{'' if r['agent_speaking_at_interruption'] else '  (agent not speaking: not counted)'}")
        print(f"  stop p50 {b['stop_ms']['p50']} ms, max {b['stop_ms']['max']} ms (target <= {TARGET_STOP_MS:.0f}: "
              f"{_mark(b['target_met'])}); on the track p50 {b['track_stop_ms']['p50']}, max {b['track_stop_ms']['max']}; "
              f"marked interrupted {b['marked_interrupted']}/{b['valid_trials']}")
        print(f"  backchannels: {c['wrongly_interrupted']} of {c['during_reply']} during a reply wrongly interrupted it "
              f"({c['trials']} trials; target 0: {_mark(c['target_met'])}): {c['by_phrase']}")
        heard = {k: v for k, v in c["later_caller_turns"].items() if v}
        if heard:
            print(f"  caller turns after the question (a backchannel taken as a turn), as heard: {heard}")
    cap = result.get("capacity")
    if cap:
        print(f"capacity (one process, one event loop, p95 limit {cap['p95_limit_ms']:.0f} ms, caches {cap['caches']}):")
        print(f"  {'N':>3}{'calls':>6}{'conc':>6}{'replies':>8}{'p50 ms':>9}{'p95 ms':>9}{'queued':>7}{'p95 unq':>9}"
              f"{'underrun+late':>14}{'failures':>9}{'lag max':>8}{'CPU cores':>10}{'CPU %':>7}  result (unqueued)")
        for s in cap["steps"]:
            print(f"  {s['calls']:>3}{s['calls_played']:>6}{s['mean_concurrent_calls']:>6}{s['reply_turns']:>8}"
                  f"{str(s['voice_to_voice_ms']['p50']):>9}{str(s['voice_to_voice_ms']['p95']):>9}{s['queued_replies']:>7}"
                  f"{str(s['voice_to_voice_unqueued_ms']['p95']):>9}{s['underruns_plus_late_frames']:>14}"
                  f"{s['stage_failures']:>9}{str(s['event_loop_lag_ms']['max']):>8}{s['cpu']['cpu_cores_used']:>10}{s['cpu']['cpu_percent_of_machine']:>7}  "
                  f"{'pass' if s['passed'] else 'FAIL'} ({'pass' if s['passed_unqueued'] else 'FAIL'})")
        print(f"  largest passing N: {cap['largest_passing_calls']} (all replies); "
              f"{cap['largest_passing_calls_unqueued']} leaving out queued replies")
    print(f"model load {result['model_load_s']['total']} s, peak RSS {result['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
