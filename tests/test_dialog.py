"""The first dialog step: understanding, and replies grounded in the demo shop's data."""

import numpy as np
import pytest

from voiceagent.dialog.engine import DialogState


@pytest.fixture(scope="module")
def engine(dialog_runtime):
    return dialog_runtime.dialog


@pytest.fixture(scope="module")
def shop(dialog_runtime):
    return dialog_runtime.shop


def ask(engine, text, state=None, lang=None):
    state = state or DialogState()
    return engine.respond(text, state, lang), state


@pytest.mark.parametrize("text, intent", [
    ("我的订单什么时候发货", "order.status"),
    ("where is my parcel", "logistics.track"),
    ("我要退货，衣服不合适", "aftersales.return"),
    ("I'd like to exchange these shoes for a bigger size", "aftersales.exchange"),
    ("退款什么时候到账", "aftersales.refund"),
    ("这条牛仔裤偏小吗，我穿什么码", "product.size"),
    ("can I get an invoice for my order", "aftersales.invoice"),
    ("转人工", "handoff.human"),
    ("I want to talk to a human", "handoff.human"),
    ("有没有优惠券", "promo.coupon"),
    ("谢谢，没有别的问题了", "chitchat.goodbye"),
    ("帮我取消订单", "order.cancel"),
])
def test_intents(engine, text, intent):
    reply, _ = ask(engine, text)
    assert reply.intent == intent


def owner(shop, order_id: str) -> DialogState:
    """The state of a call whose caller ID matched the order's account (not asked to prove it)."""
    return DialogState(customer_id=shop.order(order_id).customer_id)


def test_order_status_reply_states_the_facts_of_that_order(engine, shop):
    reply, _ = ask(engine, "我的订单38512074发货了吗", owner(shop, "38512074"))
    order = shop.order("38512074")
    assert order.status == "shipped"
    assert "38512074" in reply.text and order.tracking_no in reply.text and order.carrier("zh") in reply.text
    assert reply.grounding == ["orders:38512074"] and reply.resolved


def test_english_reply_and_digit_reading(engine, shop):
    reply, _ = ask(engine, "has order 5 5 1 2 0 9 6 3 shipped?", owner(shop, "55120963"))
    assert reply.intent == "order.status"
    assert "55120963" in reply.text and "not shipped" in reply.text


def test_unknown_order_is_not_invented(engine):
    reply, state = ask(engine, "where is order 11112222")
    assert "11112222" in reply.text and "couldn't find" in reply.text
    assert not reply.resolved and state.pending_intent in ("order.status", "logistics.track")


def test_another_customers_order_is_never_revealed(engine, shop):
    order = shop.order("38512074")
    state = DialogState(customer_id="C1009")
    assert order.customer_id != "C1009"
    reply, _ = ask(engine, "订单38512074到哪了", state)
    assert order.tracking_no not in reply.text and order.product("zh") not in reply.text
    assert "对不上" in reply.text


def test_order_number_in_a_later_turn_answers_the_earlier_question_once_the_caller_proves_it(engine, shop):
    state = DialogState()  # anonymous: the order's details wait for the last four digits of the account's phone
    first, _ = ask(engine, "where is my parcel?", state)
    assert "order number" in first.text and not first.resolved
    second, _ = ask(engine, "it's 2 0 2 4 1 1 0 8", state)
    assert "last four digits" in second.text and "delivered" not in second.text and not second.grounding
    phone = shop.customer(shop.order("20241108").customer_id).phone
    third, _ = ask(engine, f"{phone[-4:]}", state)
    assert third.intent == "logistics.track" and third.resolved
    assert "delivered" in third.text and "20241108" in third.text


def test_an_anonymous_caller_is_asked_for_the_last_four_digits_and_wrong_ones_are_refused(engine, shop, monkeypatch):
    from voiceagent.dialog.flows import ownership

    # wrong answers are counted per order for the whole process: this test's own count
    monkeypatch.setattr(ownership, "GUESSES", ownership.OrderGuesses())
    order = shop.order("38512074")
    phone = shop.customer(order.customer_id).phone
    wrong = f"{(int(phone[-4:]) + 1) % 10000:04d}"
    state = DialogState()
    asked, _ = ask(engine, "我的订单38512074发货了吗", state)
    assert "后四位" in asked.text and order.tracking_no not in asked.text and not asked.grounding
    refused, _ = ask(engine, wrong, state)
    assert "对不上" in refused.text and order.tracking_no not in refused.text and not refused.resolved
    answered, _ = ask(engine, phone[-4:], state)  # the right digits answer the question held since the first turn
    assert order.tracking_no in answered.text and answered.grounding == ["orders:38512074"] and answered.resolved
    assert order.customer_id in state.verified_customers


def test_a_caller_known_by_caller_id_is_not_asked(engine, shop):
    reply, _ = ask(engine, "where is order 38512074?", owner(shop, "38512074"), "en")
    assert "last four digits" not in reply.text and shop.order("38512074").tracking_no in reply.text


def test_return_eligibility_follows_the_delivery_date(engine, shop):
    from datetime import date

    reply, _ = ask(engine, "I want to return order 71830245", owner(shop, "71830245"))
    order = shop.order("71830245")
    age = (shop.today - date.fromisoformat(order.delivered_at)).days
    assert ("within the 7-day return window" in reply.text) == (age <= 7)
    assert "policies:return" in reply.grounding


def test_size_question_uses_the_product_record(engine, shop):
    reply, _ = ask(engine, "跑步鞋偏码吗，我平时穿41码")
    assert reply.intent == "product.size" and reply.slots.get("size") == "41"
    product = shop.find_product("跑步鞋")
    assert product.size_advice_zh in reply.text


def test_explicit_request_hands_off_and_anger_is_detected(engine):
    reply, _ = ask(engine, "Can I speak to a real person, please?")
    assert reply.handoff and reply.handoff_reason == "caller_request"
    reply, state = ask(engine, "你们怎么回事！东西都是破的，我要投诉！")
    # the first angry turn is met with an apology (dialog/escalation.py); anger that goes on, a person
    assert reply.understanding.emotion == "angry" and not reply.handoff and reply.escalation.action == "apologize"
    reply, _ = ask(engine, "你们这是什么破服务，到现在都没人管！", state)
    assert reply.understanding.emotion == "angry" and reply.handoff and reply.handoff_reason == "angry"


def test_neutral_question_is_neutral_and_stays_with_the_bot(engine):
    reply, _ = ask(engine, "请问我的订单发货了吗")
    assert reply.understanding.emotion == "neutral" and not reply.handoff


def test_three_failed_turns_escalate(engine):
    state = DialogState(language="en")
    for _ in range(3):
        reply, _ = ask(engine, "blorp fizzle wug", state, "en")
        assert not reply.handoff
    reply, _ = ask(engine, "blorp fizzle wug", state, "en")
    assert reply.handoff and reply.handoff_reason == "repeated_failure"


@pytest.mark.parametrize("text", ["", "😀😀😀", "a" * 10_000, "'; DROP TABLE orders; --", "Wie spät ist es?"])
def test_odd_text_gets_a_safe_reply(engine, text):
    reply, _ = ask(engine, text)
    assert reply.text and not reply.handoff


def test_cantonese_is_told_apart(engine):
    reply, _ = ask(engine, "我嘅订单几时发货呀？唔该")
    assert reply.understanding.dialect == "cantonese"
    reply, _ = ask(engine, "我的订单什么时候发货")
    assert reply.understanding.dialect == "mandarin"


def test_a_sentence_is_embedded_once_however_often_it_is_looked_up(dialog_runtime):
    embedder = dialog_runtime.embedder
    first = embedder.embed(["退货运费谁出呀"])
    assert embedder.embed(["退货运费谁出呀"]) is first  # remembered, not recomputed
    batch = embedder.embed(["退货运费谁出呀", "多久发货"])
    assert batch.shape == (2, 384) and np.allclose(batch[0], first[0], atol=1e-5)
