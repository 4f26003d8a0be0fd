"""Whole calls from the sample recordings through the real session code and real models."""

from __future__ import annotations

import asyncio
import json
import re
from difflib import SequenceMatcher
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from voiceagent.audio import load_audio
from voiceagent.legs import FileLeg
from voiceagent.engine import CallSession, SessionOptions

from .conftest import SAMPLES

SCHEMA = json.loads((Path(__file__).with_name("call_schema.json")).read_text())
SAMPLE_FILES = sorted(json.loads((SAMPLES / "transcripts.json").read_text(encoding="utf-8")))


def simulate(runtime, name: str, **options):
    audio = load_audio(SAMPLES / name, 16000)
    leg = FileLeg(audio.samples, 16000, realtime=False)
    record = asyncio.run(CallSession(runtime, leg, SessionOptions(greeting=False, **options)).run())
    return record, leg


# The order each sample call asks about, where the script's slots do not name it (the raised-voice calls).
ORDER_ASKED = {"en_raised_voice_8k.wav": "38512074", "zh_raised_voice_8k.wav": "38512074"}


def caller_id_customer(runtime, name: str, script: dict) -> str | None:
    """A sample call about an order comes from the phone on the order's account (its caller ID
    matched), so that its details are told without the last-four-digits question (issue 22)."""
    named = [t["slots"]["order_id"] for t in script["turns"] if (t.get("slots") or {}).get("order_id")]
    order_id = ORDER_ASKED.get(name) or (named[0] if named else None)
    order = runtime.shop.order(order_id) if order_id else None
    return order.customer_id if order else None


@pytest.fixture(scope="module")
def calls(runtime, sample_scripts):
    return {name: simulate(runtime, name, customer_id=caller_id_customer(runtime, name, sample_scripts[name]))
            for name in SAMPLE_FILES}


# What an answer to each kind of question must contain (either language).
ABOUT = {
    "order.status": ["订单", "order"],
    "logistics.track": ["订单", "快递", "order", "parcel", "tracking"],
    "aftersales.return": ["退货", "return"],
    "product.size": ["码", "size"],
}


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_each_sample_call_answers_the_question(calls, sample_scripts, name):
    record, _ = calls[name]
    data = record.to_dict()
    jsonschema.validate(data, SCHEMA)
    script = sample_scripts[name]
    caller = [t for t in data["turns"] if t["role"] == "caller"]
    # a caller who went on after a breath over the answer: that answer was withdrawn, the turn is one
    agent = [t for t in data["turns"] if t["role"] == "agent" and t["kind"] != "withdrawn"]
    assert len(caller) == len(script["turns"]) and len(agent) == len(caller)
    assert data["language"] == script["language"]
    for heard, expected in zip(caller, script["turns"]):
        assert heard["language"] == script["language"]
        if "intent" in expected:
            assert heard["intent"] == expected["intent"], heard["text"]
        if "emotion" in expected:
            assert heard["emotion"] == expected["emotion"]
    last = script["turns"][-1]
    reply = agent[-1]["text"]
    if last.get("handoff"):
        assert data["outcome"]["handoff"] and data["outcome"]["handoff_reason"] in ("caller_request", "angry")
        assert any(w in reply for w in ("人工", "transferring"))
    elif last.get("apology"):  # first clear dissatisfaction: an apology, and the caller stays with the agent
        assert not data["outcome"]["handoff"] and caller[-1]["escalation"]["action"] == "apologize"
        assert any(w in reply for w in ("抱歉", "sorry")), reply
    elif "intent" in last:
        assert not data["outcome"]["handoff"]
        assert any(w in reply.lower() for w in ABOUT[last["intent"]]), reply
        expected_order = last.get("slots", {}).get("order_id")
        if expected_order and expected_order in data["slots"].values():
            assert expected_order in reply  # the answer is about the order the caller named


def test_a_misheard_tracking_number_turn_still_reaches_the_order(calls, runtime):
    """zh_multi_turn_8k: "你好，我的快递到哪里了？" then "订单号是五五一二零九六三。". Whisper's words for
    this audio depend on the CPU's instruction set ("我的快避到哪里了", "简单号是55-2020-1963"): on
    any of them the call stays on tracking, and the answer is about the order the caller read out:
    its facts when the number was heard right, else the number as heard, read back with a request
    to check it or key it in (never a bare question for a number the caller has just given)."""
    record, _ = calls["zh_multi_turn_8k.wav"]
    turns = record.to_dict()["turns"]
    caller = [t for t in turns if t["role"] == "caller"]
    reply = [t for t in turns if t["role"] == "agent"][-1]["text"]
    assert [t["intent"] for t in caller] == ["logistics.track", "logistics.track"], [t["text"] for t in caller]
    said = "55120963"
    heard = re.sub(r"\D", "", caller[-1]["text"])
    if said in heard:
        order = runtime.shop.order(said)
        assert said in reply, reply
        assert (order.tracking_no in reply) if order.tracking_no else ("发货" in reply), reply
    else:
        # the read-back is the number heard: digit-wise close to the one said (0.75-0.78 for the
        # misreadings seen; an unrelated 8-digit number scores under 0.5)
        read_back = re.findall(r"\d{6,}", reply)
        assert read_back and SequenceMatcher(None, read_back[0], said).ratio() >= 0.7, (caller[-1]["text"], reply)
        # on a phone line a number that names no order is checked on the keypad instead of asked again
        assert "核对" in reply or "按键" in reply, reply  # "麻烦您再核对一下订单号" / "请在按键上输入订单号"


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_timeline_and_latencies_are_consistent(calls, name, runtime):
    record, leg = calls[name]
    turns = [t for t in record.to_dict()["turns"] if t.get("kind") != "withdrawn"]
    for caller, agent in zip(turns[::2], turns[1::2]):
        assert caller["role"] == "caller" and agent["role"] == "agent"
        if agent["interrupted"] and not agent["heard_text"]:
            continue  # the caller spoke again before this reply began: nothing of it was played
        assert caller["start_s"] < caller["end_s"] <= agent["start_s"] < agent["end_s"]
        lat = agent["latency_ms"]
        assert lat["voice_to_voice"] == pytest.approx((agent["start_s"] - caller["end_s"]) * 1000, abs=2)
        # at least the shortest silence window (a sure finished sentence: turn_end.py), less a frame's rounding
        assert lat["endpoint"] >= runtime.config.vad.complete_silence_ms - 100
        assert lat["voice_to_voice"] >= lat["endpoint"] + lat["asr"] - 50
    track = leg.agent_track()
    # the agent's first audio: a withdrawn answer's too (cut when the caller went on; it played)
    first = next(t for t in record.to_dict()["turns"] if t["role"] == "agent" and t["end_s"] > t["start_s"])
    start = int(first["start_s"] * 16000) - 16  # start_s is rounded to the millisecond
    assert np.abs(track[:start]).max() < 0.01  # nothing before the agent's first word
    # and speech right at the start of the first answer that played long enough to carry a word (under load
    # a withdrawn answer may have played only its first milliseconds, the onset of a syllable)
    spoken = next((t for t in record.to_dict()["turns"] if t["role"] == "agent" and t["end_s"] - t["start_s"] >= 0.3),
                  first)
    start = int(spoken["start_s"] * 16000) - 16
    played = max(1600, min(8000, int((spoken["end_s"] - spoken["start_s"]) * 16000)))  # a cut answer played less
    assert np.abs(track[start : start + played + 32]).max() > 0.05


def test_english_reply_audio_says_the_grounded_facts(calls, runtime):
    """What the caller hears: transcribe the agent's audio of the order-status call."""
    record, leg = calls["en_order_status_16k.wav"]
    agent = [t for t in record.turns if t.role == "agent"][0]
    audio = leg.agent_track()[int(agent.start_s * 16000) : int(agent.end_s * 16000)]
    heard = runtime.asr.transcribe(audio, "en").text.lower()
    order = runtime.shop.order("38512074")
    digits = "".join(c for c in heard if c.isdigit())
    assert "order" in heard and "38512074" in digits  # the order number, read digit by digit
    assert order.tracking_no[2:] in digits  # the tracking number from the shop's records
    assert "november" in heard and order.shipped_at.startswith("2026-11-")  # the ship date, spoken


def test_failed_transfer_keeps_the_caller(runtime):
    audio = load_audio(SAMPLES / "en_human_16k.wav", 16000)
    leg = FileLeg(audio.samples, 16000, realtime=False)
    leg.transfer_ok = False
    record = asyncio.run(CallSession(runtime, leg, SessionOptions(greeting=False)).run())
    assert leg.transfers == ["human-queue"]
    assert record.outcome.handoff and record.outcome.transfer_ok is False and record.outcome.ended_by == "caller"


def test_a_failing_stage_ends_the_call_cleanly(runtime, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("ASR exploded")

    monkeypatch.setattr(runtime.asr, "transcribe", broken)
    record, _ = simulate(runtime, "en_human_16k.wav")
    # the caller hears an apology instead of silence, and the failure is on the record
    assert [t.kind for t in record.turns if t.role == "agent"] == ["notice"]
    assert record.outcome.ended_by == "caller" and any("ASR exploded" in e for e in record.errors)


def test_pinned_language_is_used(runtime):
    record, _ = simulate(runtime, "en_human_16k.wav", language="en")
    assert record.language == "en" and record.turns[0].language == "en"
