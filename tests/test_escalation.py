"""Caller perception and handoff: emotion from words and voice, language and dialect, the
escalation policy, the handoff summary, and a failed transfer that keeps the caller."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from voiceagent.dialog.engine import DialogState
from voiceagent.perception import HeardVoice, LanguageTracker, detect_dialect
from voiceagent.perception.prosody import VoiceFeatures

ROOT = Path(__file__).resolve().parent.parent
EMOTION = Path(__file__).with_name("data") / "emotion"


@pytest.fixture(scope="module")
def engine(dialog_runtime):
    return dialog_runtime.dialog


def say(engine, text, state=None, lang=None, voice=None, at_s=0.0):
    state = state if state is not None else DialogState()
    return engine.respond(text, state, lang, voice=voice, at_s=at_s), state


# -- emotion from the words -------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["zh", "en"])
def test_anger_on_the_labelled_set_meets_the_targets(dialog_runtime, lang):
    """tests/data/emotion/ was written by someone who never saw the detector; neither its training
    nor its threshold saw these turns (benchmarks/eval_emotion.py prints the figures)."""
    rows = [json.loads(x) for x in (EMOTION / f"labelled_{lang}.jsonl").read_text(encoding="utf-8").splitlines() if x]
    nlu = dialog_runtime.nlu
    tp = fp = fn = 0
    for row in rows:
        got = nlu.understand(row["text"], lang).emotion == "angry"
        truth = row["emotion"] == "angry"
        tp, fp, fn = tp + (got and truth), fp + (got and not truth), fn + (truth and not got)
    assert tp / (tp + fn) >= 0.9 and tp / (tp + fp) >= 0.85, (lang, tp, fp, fn)


@pytest.mark.parametrize("text", ["请问我的订单发货了吗？", "退款一般几天到账？", "我不生气，就是问问快递到哪了",
                                  "How long does a refund take?", "I'm not angry, I just want to know where it is.",
                                  "My parcel arrived damaged, how do I return it?"])
def test_a_calm_question_is_not_anger(dialog_runtime, text):
    assert dialog_runtime.nlu.understand(text).emotion != "angry"


# -- emotion from the voice -------------------------------------------------------------------

def _voice(loud=-20.0, pitch=15.0, effort=-8.0, rate=5.0, voiced=1.5):
    return HeardVoice(VoiceFeatures(voiced, loud, pitch, 8.0, effort, rate))


def test_a_raised_voice_with_neutral_words_is_heard_as_anger_against_the_callers_baseline(engine):
    state = DialogState(language="en")
    reply, _ = say(engine, "Hi, I'm calling about my order.", state, "en", _voice(), 0.0)
    assert reply.emotion.label == "neutral" and reply.emotion.voice_anger is None  # no baseline yet
    reply, _ = say(engine, "It was supposed to arrive on Monday.", state, "en", _voice(loud=-19.0, pitch=14.5), 8.0)
    assert reply.emotion.label == "neutral" and reply.emotion.voice_anger == 0.0
    raised = _voice(loud=-13.0, pitch=19.5, effort=-2.0, rate=6.0)
    reply, _ = say(engine, "The tracking page has not changed since last week.", state, "en", raised, 16.0)
    assert reply.emotion.label == "angry" and reply.emotion.sources() == ["voice"]
    assert reply.escalation.action == "apologize"  # a raised voice alone: an apology first


def test_a_louder_line_alone_is_not_anger(engine):
    state = DialogState(language="zh")
    say(engine, "你好，我想查一下订单。", state, "zh", _voice(), 0.0)
    reply, _ = say(engine, "订单号是38512074。", state, "zh", _voice(loud=-10.0), 6.0)  # gain up, same voice
    assert reply.emotion.label != "angry" and reply.emotion.voice_anger == 0.0


def test_the_raised_voice_recording_is_heard_from_the_voice_alone(runtime, sample_scripts):
    """samples/audio/*_raised_voice_8k.wav: calm turns, then the same words-level calm in a raised
    voice. The angry turn is found from the voice alone; calm turns never are."""
    from voiceagent.audio import load_audio
    from voiceagent.legs import FileLeg
    from voiceagent.engine import CallSession, SessionOptions

    for name in ("en_raised_voice_8k.wav", "zh_raised_voice_8k.wav"):
        audio = load_audio(ROOT / "samples" / "audio" / name, 16000)
        record = asyncio.run(CallSession(runtime, FileLeg(audio.samples, 16000, realtime=False),
                                         SessionOptions(greeting=False)).run())
        caller = [t for t in record.turns if t.role == "caller"]
        script = sample_scripts[name]["turns"]
        assert len(caller) == len(script)
        assert [t.emotion for t in caller[:2]] == ["neutral", "neutral"]
        assert caller[2].emotion == "angry" and "voice" in caller[2].emotion_from, caller[2]
        assert caller[2].text_emotion != "angry"  # not from the words
        assert caller[2].escalation["action"] in ("apologize", "transfer")


# -- the escalation policy ----------------------------------------------------------------------

PERSON = ["转人工", "帮我转一下人工客服", "我要找你们主管", "能不能让真人来接电话", "我不想跟机器人说了，叫个人来",
          "Can I talk to a human?", "Put me through to a real person, please.", "I want to speak to a supervisor.",
          "Get me a manager.", "Let me talk to someone, not a bot.", "Representative, please.",
          "I'd like to speak with a live agent."]


@pytest.mark.parametrize("text", PERSON)
def test_every_explicit_request_for_a_person_hands_off_at_once(engine, text):
    reply, state = say(engine, text)
    assert reply.handoff and reply.handoff_reason == "caller_request"
    assert state.escalations[-1]["action"] == "transfer" and state.escalations[-1]["reason"] == "caller_request"


@pytest.mark.parametrize("lang, turns", [
    ("zh", ["你好，我想查一下我的订单发货了没有", "订单号是38512074", "大概什么时候能到呀？", "好的，谢谢"]),
    ("en", ["Hi, has my order shipped yet?", "It's 38512074.", "When will it arrive?", "Okay, thanks."]),
])
def test_a_neutral_order_status_call_never_hands_off(engine, lang, turns):
    state = DialogState(language=lang, customer_id="C1001")
    for i, text in enumerate(turns):
        reply, _ = say(engine, text, state, lang, _voice(loud=-20.0 + (i % 2), pitch=15.0 - (i % 2) * 0.5), i * 6.0)
        assert not reply.handoff and reply.escalation.action == "none", (text, reply.escalation)
        assert reply.emotion.label != "angry"


def test_first_dissatisfaction_gets_an_apology_and_a_coupon_then_persistent_anger_a_person(engine):
    state = DialogState(language="zh", customer_id="C1002")
    reply, _ = say(engine, "我的快递到底什么时候到？都一个星期了，你们是怎么做事的？", state, "zh")
    assert reply.emotion.label == "angry" and not reply.handoff
    assert reply.escalation.action == "apologize" and reply.text.startswith("非常抱歉")
    assert any(g.startswith("coupons:") for g in reply.grounding) and "优惠券" in reply.text
    reply, _ = say(engine, "你们就会说抱歉，有什么用？", state, "zh")
    assert reply.handoff and reply.handoff_reason == "angry" and reply.escalation.detail == "persistent"


def test_strong_anger_goes_to_a_person_at_once(engine):
    reply, _ = say(engine, "What the hell is wrong with you people? You're scammers, I'm calling my lawyer and "
                           "disputing the charge!!", DialogState(language="en"), "en")
    assert reply.handoff and reply.handoff_reason in ("angry", "sensitive_topic")


@pytest.mark.parametrize("text, topic", [
    ("我要起诉你们，律师函马上就到", "legal"),
    ("充电宝充着充着就冒烟了，差点着火", "safety"),
    ("我的信用卡被扣了两次钱", "payment_dispute"),
    ("The heater caught fire last night.", "safety"),
    ("I'm going to file a chargeback with my bank.", "payment_dispute"),
])
def test_topics_that_need_a_person_are_transferred(engine, text, topic):
    reply, _ = say(engine, text)
    assert reply.handoff and reply.handoff_reason == "sensitive_topic" and reply.escalation.detail == topic


def test_three_turns_not_understood_in_a_row_go_to_a_person(engine):
    state = DialogState(language="zh")
    reasons = []
    for _ in range(3):  # the classifier is unsure what "that thing" is, turn after turn
        reply, _ = say(engine, "那个东西", state, "zh")
        reasons.append(reply.handoff_reason)
    assert reasons == [None, None, "low_confidence"]
    assert "转接" in reply.text


def test_the_policy_is_configurable():
    from voiceagent.config import EscalationConfig
    from voiceagent.dialog.escalation import EscalationPolicy
    from voiceagent.perception import TurnEmotion

    calm, angry = TurnEmotion("neutral", 0.1, 0.1), TurnEmotion("angry", 0.9, 0.8)
    args = dict(wants_person=False, text="你好", dialect="mandarin", unclear_in_row=0, failed_in_row=0, apologized=False)
    policy = EscalationPolicy(EscalationConfig(strong_anger=0.95, compensation=False, low_confidence_turns=2,
                                               sensitive_topics=["legal"], targets={"default": "sip:queue@pbx"}))
    assert policy.decide(emotion=angry, angry_recent=1, **args).action == "apologize"  # 0.9 is not strong here
    assert policy.decide(emotion=angry, angry_recent=1, **args).detail is None  # no coupon
    assert policy.decide(emotion=calm, angry_recent=0, **dict(args, unclear_in_row=2)).target == "sip:queue@pbx"
    assert policy.decide(emotion=calm, angry_recent=0, **dict(args, text="信用卡被盗刷了")).action == "none"
    assert policy.decide(emotion=calm, angry_recent=0, **dict(args, text="我要找律师")).reason == "sensitive_topic"


def test_cantonese_goes_to_a_colleague_who_speaks_it(engine):
    state = DialogState(language="zh")
    reply, _ = say(engine, "我嘅订单几时发货呀？唔该帮我睇下", state, "zh")
    assert reply.understanding.dialect == "cantonese"
    assert reply.handoff and reply.handoff_reason == "dialect" and reply.handoff_target == "cantonese-queue"
    reply, state = say(engine, "我的订单什么时候发货", DialogState(language="zh"), "zh")
    assert reply.understanding.dialect == "mandarin" and not reply.handoff


def test_dialect_and_language_are_steadied_across_turns():
    tracker = LanguageTracker()
    assert tracker.observe_language("zh", 0.95, 3.0) == "zh"
    assert tracker.observe_language("en", 0.75, 0.6) == "zh"  # one short unsure turn does not switch
    assert tracker.observe_language("zh", 0.9, 2.0) == "zh"
    assert tracker.observe_language("en", 0.98, 2.5) == "en"  # a sure, long one does
    assert tracker.observe_dialect("mandarin", "我的订单呢") == "mandarin"
    assert tracker.observe_dialect("cantonese", "係咪") == "mandarin"  # one weak marker: not yet
    assert tracker.observe_dialect("cantonese", "咩嘢") == "cantonese"  # two turns in a row
    assert detect_dialect("阿拉想问问侬", "zh") == "other_chinese"
    assert detect_dialect("我想问一下", "zh", {"zh": 0.4, "yue": 0.55}) == "cantonese"  # the detector's word
    assert detect_dialect("hello", "en") is None


def test_a_caller_who_switches_language_mid_call_is_heard_and_answered_in_the_new_one(runtime):
    import numpy as np

    from voiceagent.audio import load_audio
    from voiceagent.legs import FileLeg
    from voiceagent.engine import CallSession, SessionOptions

    parts = [load_audio(ROOT / "samples" / "audio" / n, 16000).samples
             for n in ("en_order_status_16k.wav", "zh_order_status_16k.wav")]
    audio = np.concatenate([parts[0], np.zeros(32000, np.float32), parts[1]])
    record = asyncio.run(CallSession(runtime, FileLeg(audio, 16000, realtime=False),
                                     SessionOptions(greeting=False)).run())
    caller = [t for t in record.turns if t.role == "caller"]
    replies = [t for t in record.turns if t.role == "agent" and t.kind == "reply"]
    assert [t.language for t in caller] == ["en", "zh"], [(t.language, t.text) for t in caller]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in caller[1].text)  # heard as Chinese, not translated
    assert replies and any("\u4e00" <= ch <= "\u9fff" for ch in replies[-1].text), replies[-1].text
    assert record.language == "zh"


# -- handoff: summary, transfer, failure ---------------------------------------------------------

def test_the_handoff_summary_tells_the_human_what_happened(engine):
    state = DialogState(language="zh", customer_id="C1001")
    say(engine, "我的订单38512074到哪了", state, "zh", at_s=0.0)
    say(engine, "怎么还没到？你们是怎么做事的！", state, "zh", at_s=7.0)
    reply, _ = say(engine, "转人工", state, "zh", at_s=14.0)
    summary = reply.handoff_summary
    assert summary["reason"] == "caller_request" and summary["target"] == "human-queue"
    assert summary["caller"]["customer_id"] == "C1001" and summary["caller"]["tier"]
    assert summary["order"]["order_id"] == "38512074" and summary["slots"]["order_id"] == "38512074"
    assert summary["intents"][-1] == "handoff.human" and len(summary["intents"]) == 3
    assert [e["emotion"] for e in summary["emotion"]["timeline"]][1] == "angry"
    assert [e["at_s"] for e in summary["emotion"]["timeline"]] == [0.0, 7.0, 14.0]
    assert "apology" in summary["tried"] and any(t.startswith("answered") for t in summary["tried"])
    assert "38512074" in summary["brief"] and "转接原因" in summary["brief"]
    assert summary["transcript"][0]["role"] == "caller"


def _call(runtime, name, transfer_ok=True, status="busy", store=None):
    from voiceagent.audio import load_audio
    from voiceagent.legs import FileLeg
    from voiceagent.engine import CallSession, SessionOptions

    audio = load_audio(ROOT / "samples" / "audio" / name, 16000)
    leg = FileLeg(audio.samples, 16000, realtime=False)
    leg.transfer_ok, leg.transfer_status = transfer_ok, status
    session = CallSession(runtime, leg, SessionOptions(greeting=False, customer_id="C1001"),
                          on_handoff=store.save_handoff if store else None)
    return asyncio.run(session.run()), leg


def test_a_transfer_says_a_bridge_and_hands_over_the_summary(runtime, tmp_path):
    from voiceagent.store import CallStore

    store = CallStore(tmp_path / "calls.db")
    record, leg = _call(runtime, "zh_human_16k.wav", store=store)
    assert leg.transfers == ["human-queue"] and record.outcome.ended_by == "transfer"
    assert leg.handoffs[0]["call_id"] == record.call_id and leg.handoffs[0]["reason"] == "caller_request"
    bridge = [t for t in record.turns if t.role == "agent"][-1]
    assert "转接" in bridge.text and bridge.end_s > bridge.start_s  # said before the caller is handed over
    stored = store.handoff(record.call_id)  # stored before the transfer, for the human's screen
    assert stored["caller"]["customer_id"] == "C1001" and stored["intents"] == ["handoff.human"]


def test_a_failed_transfer_keeps_the_caller_and_books_a_callback(runtime):
    record, leg = _call(runtime, "en_human_16k.wav", transfer_ok=False, status="no_answer")
    out = record.outcome
    assert leg.transfers == ["human-queue"]
    assert out.handoff and out.transfer_ok is False and out.transfer_status == "no_answer"
    assert out.ended_by == "caller" and out.callback_ticket and out.callback_ticket.startswith("CB")
    said = [t for t in record.turns if t.role == "agent"]
    assert said[-1].kind == "notice" and out.callback_ticket in said[-1].text.replace(" ", "")
    assert "busy" in said[-1].text and said[-1].end_s > said[-1].start_s  # spoken to the caller, not dropped
    import sqlite3

    with sqlite3.connect(runtime.shop.db_path) as conn:  # in the shop's ticket system, for a person to call back
        kind, detail = conn.execute("SELECT kind, detail FROM tickets WHERE ticket_id = ?", (out.callback_ticket,)).fetchone()
    assert kind == "callback" and "Transfer" in detail  # the handoff brief travels with it


def test_the_handoff_is_served_over_http(dialog_runtime, config):
    from fastapi.testclient import TestClient

    from voiceagent.server import create_app

    import dataclasses

    from voiceagent.identity import sign_customer

    # the shopper is who the shop signed (a bare customer_id identifies no one); the handoff id is random
    signed = dataclasses.replace(config, security=dataclasses.replace(config.security, identity_secret="s"))
    client = TestClient(create_app(signed, runtime=dialog_runtime))
    body = client.post("/api/chat", json={"session_id": "h1", "text": "I want to talk to a human",
                                          "customer_token": sign_customer("C1001", "s", 600)}).json()
    assert body["handoff"] and body["handoff_id"].startswith("chat-") and body["handoff_id"] != "chat-h1"
    summary = client.app.state.store.handoff(body["handoff_id"])
    assert summary["reason"] == "caller_request" and summary["caller"]["customer_id"] == "C1001"
    assert summary["session_id"] == "h1"


def test_an_optional_speech_emotion_model_plugs_in_by_path(tmp_path):
    import onnx  # a dev dependency (requirements.lock): builds the toy model
    from onnx import TensorProto, helper

    # A toy model: logits [angry, neutral] = [100 * mean(x^2), 0.01]: loud audio reads as angry
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["m"], keepdims=1, axes=[1]),
         helper.make_node("Mul", ["m", "k"], ["a"]), helper.make_node("Concat", ["a", "c"], ["y"], axis=1)],
        "ser", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("k", TensorProto.FLOAT, [1, 1], [100.0]), helper.make_tensor("c", TensorProto.FLOAT, [1, 1], [0.01])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    (tmp_path / "labels.json").write_text('["ang", "neu"]')
    from voiceagent.perception import Perception

    perception = Perception(str(tmp_path))
    loud = 0.5 * np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    heard = perception.hear(loud, 16000, "hello there")
    assert heard.model["angry"] > 0.9 and perception.name.startswith("ser:")
    quiet = perception.hear(loud * 0.01, 16000, "hello")
    assert quiet.model["neutral"] > 0.5
