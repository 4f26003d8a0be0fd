"""A real browser calls the agent: Chromium (fake microphone playing a sample caller) opens the demo
shop page served by `voiceagent serve`, presses the widget's call button, and talks to the agent
over WebRTC. Both run in one private network namespace (tests/browser_call.py does the driving;
tests/peers/chromium.py tells what was found by experiment).

What is asserted is what the page shows and hears (the widget's transcript; the agent's stream as
the page received it, transcribed), what was stored (GET /api/calls/{call_id}), and, with the
microphone refused, that the same agent answers in text.

One run of the script serves every test here (one server start, ~30 s of model loading).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest

from tests.peers import chromium, need
from voiceagent.audio import load_audio

from .conftest import ROOT, SAMPLES

ORDER = "38512074"


pytestmark = [need(chromium.available(), chromium.missing()), pytest.mark.slow]


def _artifacts(tmp_path_factory):
    """Where the screenshots are kept: $VOICEAGENT_ARTIFACTS when set (CI uploads it), else pytest's
    temporary directory (the path is printed)."""
    base = os.environ.get("VOICEAGENT_ARTIFACTS")
    if base:
        path = os.path.join(base, "webrtc_browser")
        os.makedirs(path, exist_ok=True)
        return path
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    assert chromium.available(), f"missing: {chromium.missing()}"
    out = tmp_path_factory.mktemp("browser_call")
    argv = [sys.executable, "-m", "tests.browser_call", "--out", str(out), "--wav",
            str(SAMPLES / "en_order_status_16k.wav"), "--lang", "en"]
    done = chromium.run_in_netns(argv, timeout=300, cwd=ROOT, log=out / "run.log")
    result_path = out / "result.json"
    assert result_path.exists(), (out / "run.log").read_text(errors="replace")[-4000:]
    result = json.loads(result_path.read_text(encoding="utf-8"))
    keep = _artifacts(tmp_path_factory)
    for name in ("widget.png", "text_fallback.png", "heard.wav", "result.json", "server.log", "console.log"):
        if (out / name).exists():
            shutil.copy(out / name, os.path.join(keep, name))
    print(f"\nbrowser call artefacts: {keep} (run directory {out})")
    result["_dir"] = str(out)
    result["_artifacts"] = keep
    result["_rc"] = done.returncode
    return result


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _why(result: dict) -> str:
    """What to read when an assertion fails: the script's errors, the page's console, the server's
    WebRTC log lines."""
    keep = {k: result.get(k) for k in ("errors", "server_exit", "webrtc_log")}
    call = result.get("call") or {}
    keep["call"] = {k: call.get(k) for k in ("ok", "error", "progress", "states", "connection", "transcript",
                                              "levels_summary", "call_s")}
    keep["console"] = (result.get("console") or [])[-30:]
    return json.dumps(keep, ensure_ascii=False, indent=1)[-6000:]


def test_a_browser_calls_the_agent_and_hears_the_answer(browser_run, request):
    result = browser_run
    call = result.get("call") or {}
    assert not result["errors"] and call.get("ok"), _why(result)

    # the page's transcript: the caller's question, then the agent's answer about that order
    transcript = call["transcript"]
    callers = [i for i, e in enumerate(transcript) if e["role"] == "caller" and e["channel"] == "voice"]
    assert callers, _why(result)
    question = transcript[callers[-1]]["text"].lower()
    assert "order" in question, question
    greeting = next(e["text"] for e in transcript if e["role"] == "agent")
    assert greeting.isascii(), greeting  # an English page is greeted in English before the caller speaks
    answers = [e["text"] for e in transcript[callers[-1] + 1:] if e["role"] == "agent"]
    assert answers, _why(result)
    answer = " ".join(answers).lower()
    # a browser caller is anonymous: the order's details wait for the last four digits of the account's
    # phone (issue 22); nothing of the order's record is said before them
    tracking = request.getfixturevalue("runtime").shop.order(ORDER).tracking_no
    assert "last four digits" in answer and tracking.lower() not in answer, answer

    # the states the page went through: connecting, listening, thinking, speaking, back to listening
    states = call["states"]
    for state in ("connecting", "listening", "thinking", "speaking"):
        assert state in states, states
    assert call["connection"] and "connected" in call["connection"], call["connection"]

    # the agent's voice reached the page: clearly above silence, and it says the answer
    levels = call["levels_summary"]
    assert levels["remote_max"] > 0.05 and levels["remote_voiced_s"] > 2.0, levels
    assert levels["local_voiced_s"] > 2.0, levels  # the fake microphone played the caller
    heard = load_audio(os.path.join(result["_dir"], "heard.wav"), 16000).samples
    voiced = heard[np.abs(heard) > 0.01]
    assert voiced.size and float(np.sqrt(np.mean(voiced ** 2))) > 0.02

    # voice to voice on the page's own audio clock: the agent answered the caller within seconds
    turns = [t for t in call.get("v2v") or [] if t["clean"] and t["v2v_ms"] is not None]
    assert turns, call.get("v2v")
    print(f"voice_to_voice in the page: {[t['v2v_ms'] for t in turns]} ms")
    assert turns[-1]["v2v_ms"] < 10_000  # generous: a shared 2-core CI machine (benchmarks/ measures it)

    # what the page heard after the caller's question (heard.wav starts on the levels' first frame)
    answer_audio = heard[int(turns[-1]["caller_end_s"] * 16000):]
    runtime = request.getfixturevalue("runtime")  # loaded after the server is gone: no contention
    text = runtime.asr.transcribe(answer_audio, "en").text.lower()
    # the question for the last four digits, in words tiny Whisper hears reliably
    assert "order" in text and any(w in text for w in ("digit", "phone", "four")), text

    # the stored record of the call: a browser call, the question understood, answered
    record = call["record"]
    assert record is not None, _why(result)
    assert record["call_id"] == call["call_id"]
    assert record["channel"]["kind"] == "webrtc" and record["channel"]["session_id"] == call["session_id"]
    assert record["channel"]["codec"].lower() in ("opus", "pcmu", "pcma")
    assert record["channel"]["media"]["frames_in"] > 300
    # Chromium and the agent share the cores, so frames arrive unevenly: placed by their RTP timestamps,
    # none is taken for a duplicate and no silence is put into the caller's speech
    assert record["stats"]["frames_dropped"] == 0 and record["stats"]["gaps_filled_ms"] < 60, record["stats"]
    caller_turns = [t for t in record["turns"] if t["role"] == "caller"]
    # the question was about that order (the live ASR hears the sample's last words, "Has it shipped
    # yet?", differently from run to run, e.g. "as a chip the add": order.status or order.modify)
    assert any("order" in t["text"].lower() and t["intent"].startswith("order.")
               and t["slots"].get("order_id") == ORDER for t in caller_turns), caller_turns
    replies = [t for t in record["turns"] if t["role"] == "agent" and t.get("kind") == "reply"]
    assert replies and replies[0]["latency_ms"].get("voice_to_voice") is not None
    assert record["outcome"]["ended_by"] == "caller"

    # the page as the caller saw it
    assert call["screenshot"] and os.path.getsize(call["screenshot"]) > 10_000
    assert os.path.exists(os.path.join(result["_artifacts"], "widget.png"))
    assert result["server_exit"] == 0  # SIGTERM: a clean stop


def test_a_caller_who_refuses_the_microphone_can_type_to_the_same_agent(browser_run):
    result = browser_run
    text = result.get("text") or {}
    assert not result["errors"] and text.get("ok"), json.dumps(text, ensure_ascii=False, indent=1)[-4000:]
    assert text["form_visible"], text
    assert text["state"] == "idle", text  # no call is left half-open
    assert re.search(r"microphone", text["fallback_reason"], re.I), text["fallback_reason"]
    chat = [e for e in text["transcript"] if e["channel"] == "chat"]
    assert [e["role"] for e in chat] == ["caller", "agent"], chat
    assert chat[0]["text"] == text["question"]
    reply = chat[1]["text"].lower()
    # an anonymous chat (no signed customer token) is asked for the last four digits first (issue 22)
    assert "last four digits" in reply and "express" not in reply, reply
    assert reply in text["panel_text"].lower()  # shown in the widget, not only in its state
    assert os.path.getsize(text["screenshot"]) > 10_000
