"""The Prometheus metrics (voiceagent/ops/metrics.py): the names SPEC.md fixes, read back with
Prometheus's own text parser; histograms count the turns given; labels stay bounded (never a call
id, operator-defined names capped)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from voiceagent.engine import CallSession, SessionOptions
from voiceagent.events import AgentTurnDone, CallerTurnNoted, StageFailed, TransferRequested
from voiceagent.ops.metrics import LATENCY_BUCKETS, Metrics, call_outcome
from voiceagent.record import AgentTurn, CallerTurn, CallRecord, Outcome
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, FakeTTS, fake_runtime, reply


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition: (name, sorted labels) -> value, as Prometheus would read it. Each
    sample carries this process's worker label (many workers, one Prometheus); it is checked, then left out."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            labels = dict(s.labels)
            assert labels.pop("worker", None) == metrics.worker, (s.name, s.labels)
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def agent_turn(**latency_ms) -> AgentTurnDone:
    full = {stage: None for stage in ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice",
                                      "dialog")}
    full.update(latency_ms)
    return AgentTurnDone(1.0, AgentTurn("ok", 1.0, 2.0, full))


def caller_turn(emotion: str = "neutral", anger: float = 0.0) -> CallerTurnNoted:
    return CallerTurnNoted(1.0, CallerTurn("hi", 0.0, 1.0, "other", 0.9, {}, emotion, "en", None, anger=anger))


def record(call_id: str = "c1", **outcome) -> CallRecord:
    r = CallRecord(call_id, "en", outcome=Outcome(**outcome))
    r.turns.append(caller_turn().turn)
    return r


def test_calls_active_and_total_by_channel_and_outcome():
    m = Metrics()
    for channel in ("sip", "sip", "webrtc"):
        m.call_started(channel)
    assert value(m, "voiceagent_calls_active", channel="sip") == 2
    assert value(m, "voiceagent_calls_active", channel="webrtc") == 1
    m.call_ended("sip", record(resolved=True))
    m.call_ended("sip", record(handoff=True, handoff_reason="angry"))
    m.call_ended("webrtc", record(ended_by="error", error="boom"))
    assert value(m, "voiceagent_calls_active", channel="sip") == 0
    assert value(m, "voiceagent_calls_active", channel="webrtc") == 0
    assert value(m, "voiceagent_calls_total", channel="sip", outcome="resolved") == 1
    assert value(m, "voiceagent_calls_total", channel="sip", outcome="handoff") == 1
    assert value(m, "voiceagent_calls_total", channel="webrtc", outcome="error") == 1
    # an end without a start (a call begun before the app) never drives the gauge below zero
    m.call_ended("sip", record())
    assert value(m, "voiceagent_calls_active", channel="sip") == 0


def test_outcome_is_one_of_a_bounded_set_from_the_record_or_its_dict():
    machine = CallRecord("m", "zh", campaign={"campaign": "spring", "amd": {"verdict": "machine"}})
    silent = CallRecord("s", "en")  # nobody said a word
    cases = {"machine": machine, "abandoned": silent, "unresolved": record(), "resolved": record(resolved=True),
             "handoff": record(handoff=True, resolved=False), "error": record(end_reason="stage_errors")}
    for expected, r in cases.items():
        assert call_outcome(r) == expected
        assert call_outcome(r.masked()) == expected  # the stored call.json reads the same


def test_turn_latency_histograms_count_the_turns_given_in_seconds():
    m = Metrics()
    turns = [agent_turn(endpoint=600, asr=40, llm_first_token=None, tts_first_audio=80, voice_to_voice=790, dialog=20),
             agent_turn(endpoint=520, asr=35, llm_first_token=310, tts_first_audio=90, voice_to_voice=1240),
             agent_turn(voice_to_voice=None)]  # a greeting: nothing measured, nothing counted
    for t in turns:
        m.on_event("sip", t)
    s = samples(m)
    count = lambda stage: s.get(("voiceagent_turn_latency_seconds_count", (("stage", stage),)), 0)
    assert count("voice_to_voice") == 2 and count("endpoint") == 2 and count("llm_first_token") == 1
    assert count("dialog") == 1
    assert s[("voiceagent_turn_latency_seconds_sum", (("stage", "voice_to_voice"),))] == pytest.approx(2.03)
    bucket = lambda le: s[("voiceagent_turn_latency_seconds_bucket", (("le", le), ("stage", "voice_to_voice")))]
    assert bucket("0.7") == 0 and bucket("0.8") == 1 and bucket("1.2") == 1 and bucket("1.35") == 2
    assert bucket("+Inf") == 2
    # buckets fit voice to voice: dense between 0.3 and 2 s, up to 10 s
    dense = [b for b in LATENCY_BUCKETS if 0.3 <= b <= 2.0]
    assert len(dense) >= 10 and max(LATENCY_BUCKETS) >= 10
    assert value(m, "voiceagent_agent_turns_total", interrupted="no") == 3


def test_handoffs_failures_and_emotions_with_bounded_labels():
    m = Metrics()
    m.on_event("sip", TransferRequested(1.0, "human-queue", "angry"))
    m.on_event("sip", TransferRequested(1.0, "human-queue", "caller said <script>"))  # not a known reason
    m.on_event("sip", StageFailed(1.0, "asr", "decoder crashed"))
    m.on_event("sip", caller_turn("angry", 0.9))
    m.on_event("sip", caller_turn("furious-ish"))
    assert value(m, "voiceagent_handoffs_total", reason="angry") == 1
    assert value(m, "voiceagent_handoffs_total", reason="other") == 1
    assert value(m, "voiceagent_stage_failures_total", stage="asr") == 1
    assert value(m, "voiceagent_caller_turns_total", emotion="angry") == 1
    assert value(m, "voiceagent_caller_turns_total", emotion="other") == 1
    m.on_event("sip", AgentTurnDone(1.0, object()))  # a malformed event is ignored, never raised


def test_campaign_names_are_capped_and_call_ids_never_become_labels():
    m = Metrics(max_campaigns=3)
    for i in range(6):
        m.campaign_attempt(f"campaign-{i}", "converted")
    m.campaign_attempt("campaign-0", "no_answer")
    m.campaign_attempt("campaign-0", "something new")
    names = {dict(k[1]).get("campaign") for k in samples(m) if k[0] == "voiceagent_campaign_attempts_total"}
    assert names == {"campaign-0", "campaign-1", "campaign-2", "other"}
    assert value(m, "voiceagent_campaign_attempts_total", campaign="other", outcome="converted") == 3
    assert value(m, "voiceagent_campaign_attempts_total", campaign="campaign-0", outcome="other") == 1

    call_ids = [f"call-{i:04d}-secret" for i in range(50)]
    for call_id in call_ids:
        m.call_started("sip")
        m.on_event("sip", caller_turn())
        m.call_ended("sip", record(call_id, resolved=True))
    body = m.render()[0].decode()
    assert not any(call_id in body for call_id in call_ids)


def test_each_metrics_has_its_own_registry_and_chat_rate_limits_alerts_are_counted():
    a, b = Metrics(), Metrics()
    a.call_started("sip")
    a.chat_turn("angry")
    a.rate_limited("/api/chat")
    a.watch_alerts(lambda: {1: 0, 2: 3, 3: 1, 4: 0})
    assert value(a, "voiceagent_calls_active", channel="sip") == 1
    assert value(b, "voiceagent_calls_active", channel="sip") == 0
    assert value(a, "voiceagent_chat_turns_total", emotion="angry") == 1
    assert value(a, "voiceagent_http_rate_limited_total", route="/api/chat") == 1
    assert value(a, "voiceagent_alerts_open", level="2") == 3
    assert value(a, "voiceagent_alerts_open", level="3") == 1
    assert value(b, "voiceagent_alerts_open", level="2") == 0


def test_a_real_call_on_the_engine_is_counted_turn_by_turn():
    """The session's own events (fake models, the real engine): the histograms count that call's turns."""
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"Where is my parcel?": reply("It left the warehouse today.", "logistics.track"),
                         "Thanks, bye.": reply("You're welcome, goodbye.", "chitchat.goodbye")})
    script = CallerScript(asr)
    script.say("Where is my parcel?", at_s=0.5)
    script.silence(3.0)
    script.say("Thanks, bye.")
    script.silence(3.0)
    m = Metrics()

    async def main():
        m.call_started("file")
        session = CallSession(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg(),
                              SessionOptions(greeting=False), observers=[lambda e: m.on_event("file", e)])
        rec = await asyncio.wait_for(session.run(), 30)
        m.call_ended("file", rec)
        return rec

    rec = asyncio.run(main())
    answered = [t for t in rec.turns if t.role == "agent" and t.latency_ms.get("voice_to_voice") is not None]
    assert len(answered) == 2
    count = value(m, "voiceagent_turn_latency_seconds_count", stage="voice_to_voice")
    assert count == len(answered)
    total = value(m, "voiceagent_turn_latency_seconds_sum", stage="voice_to_voice")
    assert total == pytest.approx(sum(t.latency_ms["voice_to_voice"] for t in answered) / 1000, abs=1e-6)
    assert value(m, "voiceagent_caller_turns_total", emotion="neutral") + \
        value(m, "voiceagent_caller_turns_total", emotion="other") >= 2
    assert value(m, "voiceagent_calls_total", channel="file", outcome=call_outcome(rec)) == 1
    assert value(m, "voiceagent_calls_active", channel="file") == 0


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parent.parent / "docker" / "grafana" / "voiceagent-dashboard.json")
                           .read_text(encoding="utf-8"))
    asked = {name for p in dashboard["panels"] for t in p["targets"] for name in re.findall(r"voiceagent_\w+", t["expr"])}
    m = Metrics()
    m.call_started("sip")
    m.on_event("sip", agent_turn(voice_to_voice=800))
    exposed = {s[0] for s in samples(m)} | {name for name in re.findall(r"^# TYPE (\w+)", m.render()[0].decode(), re.M)}
    assert asked and asked <= exposed, asked - exposed
