"""Numbers on a phone line (flows/keypad.py): after one spoken try that gave no usable order number
(or no four digits for the ownership question), a call asks for the keypad; keys ending in "#" are
the answer. A chat keeps asking in words. Before an action on a call, the order number the caller
gave is said back in groups.

Through the dialog engine (real NLU), and through a call session on the repo's fakes (FakeASR,
FakeTTS, simulated time) with the real dialog engine, so that keys reach the dialog as a call
sends them."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from voiceagent.dialog import templates
from voiceagent.dialog.engine import DialogState
from voiceagent.dialog.flows import keypad
from voiceagent.engine import CallSession, SessionOptions
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeTTS, fake_runtime

ORDER = "38512074"  # a shipped order of the demo shop, with a tracking number
KEYPAD = {"zh": "按键", "en": "keypad"}


@pytest.fixture(scope="module")
def rt(dialog_runtime):
    return dialog_runtime


def last4(rt, order_id: str) -> str:
    return rt.shop.customer(rt.shop.order(order_id).customer_id).phone[-4:]


def call_state(lang: str, **kw) -> DialogState:
    """A caller's dialog state as the call session makes it: the voice channel, keys possible."""
    return DialogState(language=lang, channel="voice", keypad=True, **kw)


def say(rt, state: DialogState, text: str):
    return rt.dialog.respond(text, state, state.language)


def voice(lang: str, key: str, **values) -> str:
    with templates.channel("voice"):
        return templates.render(lang, key, **values)


# -- through the dialog engine ---------------------------------------------------------------------

@pytest.mark.parametrize("lang, ask, garbled", [
    ("zh", "我的订单到哪了", "三八五一二零七"),  # seven digits heard of eight
    ("en", "where is my order", "three eight five one"),
])
def test_an_unusable_spoken_number_gets_the_keypad_then_keys_answer_the_question(rt, lang, ask, garbled):
    state = call_state(lang)
    first = say(rt, state, ask)
    assert KEYPAD[lang] not in first.text and state.task.awaiting == "order_id"  # the first ask is in words
    offer = say(rt, state, garbled)
    assert offer.text == voice(lang, "keypad_order_id")
    # the move to keys is progress, not a failed turn (it must not count towards a transfer)
    assert offer.progress and state.failed_turns == 0 and state.task.awaiting == "order_id"
    keyed = say(rt, state, ORDER)  # "38512074#" keyed: the session's DtmfKeys sends "38512074"
    assert keyed.text == voice(lang, "ask_last4")  # an anonymous caller proves the order first
    answer = say(rt, state, last4(rt, ORDER))  # keyed too
    assert answer.resolved and ORDER in answer.text and f"orders:{ORDER}" in answer.grounding
    assert rt.shop.order(ORDER).tracking_no in answer.text  # the parcel question answered


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_keyed_number_that_names_no_order_is_said_back_and_asked_for_again(rt, lang):
    state = call_state(lang)
    say(rt, state, "我的订单到哪了" if lang == "zh" else "where is my order")
    say(rt, state, "三八五一二零七" if lang == "zh" else "three eight five one")
    wrong = say(rt, state, "12345678")
    assert "12345678" in wrong.text and KEYPAD[lang] in wrong.text and not wrong.resolved
    assert not wrong.progress and state.failed_turns == 1  # a second offer in a row is a failed turn
    assert state.task.awaiting == "order_id" and "order_id" not in state.task.slots
    right = say(rt, state, ORDER)
    assert right.text == voice(lang, "ask_last4") and state.failed_turns == 0  # not transferred: still going


def test_an_order_not_found_on_a_call_offers_the_keypad_at_once(rt):
    state = call_state("zh")
    say(rt, state, "我要退货")
    reply = say(rt, state, "订单号是1234567")  # a digit short: no such order
    assert reply.text == voice("zh", "order_not_found_keypad", order_id="1234567")


def test_the_web_chat_never_offers_the_keypad(rt):
    for channel in ("text", "voice"):  # /api/chat, and its "voice" front end: no keys
        state = DialogState(language="zh", channel=channel)
        replies = [say(rt, state, text) for text in ("我的订单到哪了", "三八五一二零七", "12345678")]
        assert not any("按键" in r.text or "井号" in r.text for r in replies)
        with templates.channel(channel):
            assert replies[1].text == templates.render("zh", "ask_order_id")  # asked again, in words
            assert replies[2].text == templates.render("zh", "order_not_found", order_id="12345678")
        assert not replies[1].progress


def test_four_digits_not_heard_get_the_keypad_and_the_held_question_is_answered(rt):
    state = call_state("zh")
    assert say(rt, state, f"订单{ORDER}到哪了").text == voice("zh", "ask_last4")
    offer = say(rt, state, "五六")  # two digits heard of four
    assert offer.text == voice("zh", "keypad_last4")
    answer = say(rt, state, last4(rt, ORDER))
    assert answer.text.startswith(voice("zh", "last4_ok")) and ORDER in answer.text
    assert rt.shop.order(ORDER).tracking_no in answer.text  # "到哪了" answered, not "五六"
    chat = DialogState(language="zh")
    say(rt, chat, f"订单{ORDER}到哪了")
    assert say(rt, chat, "五六").text == templates.render("zh", "ask_last4")  # a chat asks in words


def test_four_digits_that_do_not_match_are_asked_for_by_the_keypad_on_a_call(rt):
    wrong = "0000" if last4(rt, ORDER) != "0000" else "1111"
    for state, key in ((call_state("en"), "last4_wrong_keypad"), (DialogState(language="en"), "last4_wrong")):
        say(rt, state, f"where is order {ORDER}?")
        with templates.channel(state.channel):
            assert say(rt, state, wrong).text == templates.render("en", key)
        assert say(rt, state, last4(rt, ORDER)).resolved  # the right digits still answer the question


def paid_order(rt) -> tuple[str, str]:
    """A paid (cancellable) order: the last one, which the other tests leave alone."""
    with sqlite3.connect(rt.shop.db_path) as conn:
        return conn.execute("SELECT order_id, customer_id FROM orders WHERE status='paid' "
                            "ORDER BY order_id DESC LIMIT 1").fetchone()


@pytest.mark.parametrize("lang, cancel", [("zh", "我要取消订单"), ("en", "I want to cancel my order")])
def test_a_call_reads_the_order_number_back_in_groups_before_acting(rt, lang, cancel):
    order_id, _ = paid_order(rt)
    state = call_state(lang)
    say(rt, state, cancel)
    say(rt, state, order_id)
    read_back = say(rt, state, last4(rt, order_id))
    said = voice(lang, "order_said_back", digits=keypad.grouped(order_id, lang))
    assert said in read_back.text and state.task.awaiting == "confirm"
    assert rt.shop.order(order_id).status == "paid"  # nothing done before the yes
    if lang == "zh":
        assert "，" in keypad.grouped(order_id, "zh") and not any(c.isdigit() for c in keypad.grouped(order_id, "zh"))
    chat = DialogState(language=lang, channel="voice")  # the same words in a chat: no number said back
    for text in (cancel, order_id, last4(rt, order_id)):
        chat_reply = say(rt, chat, text)
    assert chat.task.awaiting == "confirm" and said not in chat_reply.text


def test_number_attempts_and_groups():
    assert keypad.number_attempt("三八五一二零七", {}) and keypad.number_attempt("three eight five one", {})
    assert keypad.number_attempt("订单号是", {})  # the digits lost
    assert not keypad.number_attempt("38512074", {"order_id": "38512074"})
    assert not keypad.number_attempt("我想退货", {}) and not keypad.number_attempt("I bought two", {})
    assert keypad.grouped("38512074", "zh") == "三八五幺，二零七四"
    assert keypad.grouped("38512074", "en") == "38512074"  # the English voice reads it "3 8 5 1, 2 0 7 4"


# -- through a call session (fakes, simulated time) --------------------------------------------------

def run_call(runtime, script: CallerScript):
    async def main():
        session = CallSession(runtime, script.file_leg(), SessionOptions(greeting=False))
        return await asyncio.wait_for(session.run(), 60)

    return asyncio.run(main())


@pytest.mark.parametrize("lang, ask, garbled", [
    ("zh", "我的订单到哪了", "三八五一二零七"),
    ("en", "where is my order", "three eight five one"),
])
def test_a_call_offers_the_keypad_and_takes_the_keyed_number(rt, lang, ask, garbled):
    asr = FakeASR(lang)
    script = CallerScript(asr)
    script.say(ask, at_s=0.5)
    script.silence(6.0)
    script.say(garbled)
    script.silence(6.0)
    script.press(f"3851*{ORDER}#")  # a slip, "*" clears it, then the number and "#"
    script.silence(6.0)
    script.press(last4(rt, ORDER) + "#")
    script.silence(9.0)
    record = run_call(fake_runtime(asr=asr, tts=FakeTTS(), dialog=rt.dialog), script)

    callers = [t.text for t in record.turns if t.role == "caller"]
    agents = [t.text for t in record.turns if t.role == "agent" and t.kind == "reply"]
    assert callers == [ask, garbled, ORDER, last4(rt, ORDER)]
    assert len(agents) == 4 and KEYPAD[lang] not in agents[0]
    assert agents[1] == voice(lang, "keypad_order_id")
    assert agents[2] == voice(lang, "ask_last4")
    assert ORDER in agents[3] and rt.shop.order(ORDER).tracking_no in agents[3]
    assert not record.outcome.handoff and record.outcome.resolved


def test_a_call_with_a_keyed_wrong_number_hears_not_found_and_is_asked_again(rt):
    asr = FakeASR("zh")
    script = CallerScript(asr)
    script.say("我要退货", at_s=0.5)
    script.silence(6.0)
    script.say("订单号是1234567")
    script.silence(6.0)
    script.press("12345678#")
    script.silence(8.0)
    record = run_call(fake_runtime(asr=asr, tts=FakeTTS(), dialog=rt.dialog), script)
    agents = [t.text for t in record.turns if t.role == "agent" and t.kind == "reply"]
    assert agents[1] == voice("zh", "order_not_found_keypad", order_id="1234567")
    assert agents[2] == voice("zh", "order_not_found_keypad", order_id="12345678")
