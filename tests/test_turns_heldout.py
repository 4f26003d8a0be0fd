"""The held-out caller set (benchmarks/data/turns_heldout/, made by benchmarks/make_turns_heldout.py):
well-formed, phone-band, with the caller's stop marked where the audio says it is, and never heard
before: no sentence of it appears in the repo's samples, tests, other data sets or NLU templates."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "turns_heldout"
SIDECARS = sorted(DATA.glob("*.json"))
META = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in SIDECARS}
SINGLE = {k: m for k, m in META.items() if "turns" not in m}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_enough_turns_in_each_language_some_with_pauses_and_noise():
    for lang in ("en", "zh"):
        turns = [m for m in SINGLE.values() if m["language"] == lang]
        assert len(turns) >= 30, lang
        assert sum(m["has_pause"] for m in turns) >= 8, lang  # numbers read in groups, hesitations
        assert sum(m["noise"] is not None for m in turns) >= 10, lang
        assert len({m["voice"] for m in turns}) >= 4, lang
        assert any("turns" in m and len(m["turns"]) == 3 for m in META.values() if m["language"] == lang)


def test_the_set_stays_small():
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 8 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(META))
def test_each_turn_is_8k_phone_audio_with_its_stop_inside_the_file(name):
    meta = META[name]
    wav = DATA / f"{name}.wav"
    info = sf.info(wav)
    assert info.samplerate == 8000 and info.channels == 1
    x, rate = sf.read(wav, dtype="float32")
    duration = len(x) / rate
    segments = meta["segments"]
    assert segments == sorted(segments) and all(a < b for a, b in segments)
    assert 0 < segments[0][0] and meta["stop_s"] == segments[-1][1] < duration
    # the marks agree with the audio: speech is louder than the pauses inside the turn and the
    # silence after the caller stopped (background noise is 15-25 dB under the speech)
    speech = np.concatenate([x[int(a * rate): int(b * rate)] for a, b in segments])
    after = x[int((meta["stop_s"] + 0.1) * rate):]
    assert _rms(speech) > 3 * _rms(after)
    turns = meta.get("turns", [meta])
    for turn in turns:
        for a, b in turn["pauses"]:
            assert 0.6 <= round(b - a, 3) <= 0.9
            assert _rms(speech) > 3 * _rms(x[int((a + 0.05) * rate): int((b - 0.05) * rate)])
        assert turn["has_pause"] == bool(turn["pauses"])
        assert turn["text"].strip() and "<" not in turn["text"]


def _normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z\u4e00-\u9fff]+", "", text.lower())


def _repo_text() -> str:
    """Every sentence the project already holds: samples, tests, data sets, NLU templates, code."""
    parts = []
    for where in ("samples", "tests", "benchmarks", "training", "voiceagent", "prompts"):
        for path in (ROOT / where).rglob("*"):
            if (not path.is_file() or path.suffix not in {".py", ".json", ".jsonl", ".toml", ".txt", ".md", ".yaml", ".csv"}
                    or DATA in path.parents or "results" in path.parts or path.name in {
                        "make_turns_heldout.py", "test_turns_heldout.py"}):
                continue
            try:
                parts.append(_normalise(path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, OSError):
                continue
    return "\n".join(parts)


def test_no_sentence_is_shared_with_the_repo():
    corpus = _repo_text()
    samples = json.loads((ROOT / "samples" / "audio" / "transcripts.json").read_text(encoding="utf-8"))
    assert all(_normalise(t["text"]) in corpus for s in samples.values() for t in s["turns"] if "text" in t)
    sentences = []
    for meta in META.values():
        for turn in meta.get("turns", [meta]):
            sentences += [s for s in re.split(r"[.?!。？！]", turn["text"]) if len(_normalise(s)) >= 12]
    assert len(sentences) >= 60
    shared = [s for s in sentences if _normalise(s) in corpus]
    assert not shared, shared


# ------------------------------------------------------------------ the benchmark's scoring (bench_turns.py)

def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_turns", ROOT / "benchmarks" / "bench_turns.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_turns"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_transcripts_are_scored_with_numbers_and_scripts_normalised():
    bench = _bench()
    assert bench.error_rate("My order number is four seven one nine six six zero two.",
                            "My order number is 4719-6602", "en") == (0, 5)
    assert bench.error_rate("I waited ten days.", "I waited 10 days", "en") == (0, 4)
    assert bench.error_rate("我的订单号是四六九二，八零一五。", "我的訂單號是4692 8015", "zh") == (0, 14)
    edits, n = bench.error_rate("退货以后退款一般多久能回到我的信用卡上？", "退貨以後退款多久能到我的信用卡上", "zh")
    assert (edits, n) == (3, 19)


def _turn(bench, **kw):
    base = dict(name="x", path=DATA / "x.wav", language="en", text="I want to, um, speak to somebody.", stop_s=4.0,
                start_s=0.6, has_pause=True, noise=None, segments=[[0.6, 1.8], [2.6, 4.0]])
    return bench.HeldTurn(**{**base, **kw})


def _caller(start, end, text="I want to, um, speak to somebody."):
    return {"role": "caller", "start_s": start, "end_s": end, "text": text}


def _reply(start, v2v=500.0):
    return {"role": "agent", "kind": "reply", "start_s": start, "end_s": start + 2, "text": "ok",
            "latency_ms": {"voice_to_voice": v2v}}


def test_a_reply_after_the_marked_stop_is_timed_from_it_and_an_early_one_is_a_cut_off():
    bench = _bench()
    turn = _turn(bench)
    whole = bench.score_record(turn, {"turns": [_caller(0.62, 3.9), _reply(4.65)]})
    assert not whole.cut_off and whole.v2v_ms == 650.0 and whole.edits == 0
    # the turn closed at the hesitation and the agent answered while the caller went on
    split = bench.score_record(turn, {"turns": [_caller(0.62, 1.8, "I want to, um,"), _reply(2.9),
                                                _caller(2.6, 3.95, "speak to somebody.")]})
    assert split.cut_off and split.agent_spoke_early and split.early_final and split.v2v_ms is None
    # closed at the pause, the caller's words after it taken as a second turn: cut off though the agent kept quiet
    quiet = bench.score_record(turn, {"turns": [_caller(0.62, 1.8, "I want to, um,"),
                                                _caller(2.6, 3.95, "speak to somebody."), _reply(4.9)]})
    assert quiet.cut_off and quiet.early_final and not quiet.agent_spoke_early


def test_at_the_phone_the_first_voiced_frame_after_the_stop_is_the_answer():
    bench = _bench()
    rate = 8000
    sent = np.zeros(10 * rate, np.float32)
    heard = np.zeros(10 * rate, np.float32)
    heard[int(4.7 * rate): int(6 * rate)] = 0.2
    assert bench.at_the_phone(sent, heard, 0.6, 4.0) == (700.0, False)
    heard[int(2.0 * rate): int(2.5 * rate)] = 0.2  # the agent talked over the caller
    assert bench.at_the_phone(sent, heard, 0.6, 4.0) == (None, True)
