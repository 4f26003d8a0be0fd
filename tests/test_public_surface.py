"""The public surface as a hostile user meets it (issue 22): identity only from a signed token, an
order's details only after the phone's last four digits, random handoff ids, JSON-only bounded
bodies, rate limits, bounded low-priority chat work, one complaint ticket per chat, ratings."""

import os
import threading
import time

import pytest
from fastapi.testclient import TestClient

from voiceagent.config import Config
from voiceagent.dialog.engine import DialogState
from voiceagent.identity import sign_customer, verify_customer
from voiceagent.public import Busy, ChatPool

SECRET = "test-identity-secret"


def make_client(dialog_runtime, **security) -> TestClient:
    from voiceagent.server import create_app

    config = Config()
    config.security.identity_secret = SECRET
    config.security.chat_rate_per_s, config.security.chat_burst = 1000.0, 1000
    for name, value in security.items():
        setattr(config.security, name, value)
    return TestClient(create_app(config, runtime=dialog_runtime))


@pytest.fixture(scope="module")
def client(dialog_runtime):
    return make_client(dialog_runtime)


@pytest.fixture(scope="module")
def shop(dialog_runtime):
    return dialog_runtime.shop


def chat(client, session, text, **extra):
    r = client.post("/api/chat", json={"session_id": session, "text": text, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def latest(shop, cid):
    return shop.orders_for_customer(cid)[0]


# -- identity ------------------------------------------------------------------------------------

def test_signed_identity_round_trip_forgery_and_expiry():
    token = sign_customer("C1001", SECRET, ttl_s=60)
    assert verify_customer(token, SECRET) == "C1001"
    assert verify_customer(token, "another-secret") is None
    assert verify_customer(token, "") is None  # no secret: nothing accepted
    assert verify_customer(token, SECRET, now=time.time() + 61) is None
    payload, mac = token.split(".")
    forged = sign_customer("C1002", "guessed", 60).split(".")[0] + "." + mac
    assert verify_customer(forged, SECRET) is None
    for junk in ("", ".", "a.b", "x" * 5000, "a.b.c", payload, "é.abc", payload + ".é"):
        assert verify_customer(junk, SECRET) is None
    with pytest.raises(ValueError):
        sign_customer("C1001", "", 60)


def test_guessed_customer_ids_give_away_no_order(client, shop):
    leaked = 0
    for n in range(1001, 1041):
        cid = f"C{n}"
        orders = shop.orders_for_customer(cid)
        body = chat(client, f"guess-{cid}", "我的订单到哪了", customer_id=cid)
        leaked += any(o.order_id in body["reply"] or (o.tracking_no and o.tracking_no in body["reply"]) for o in orders)
    assert leaked == 0


def test_a_signed_token_identifies_the_shopper(client, shop):
    order = latest(shop, "C1001")
    body = chat(client, "signed-1", "我最近的订单状态怎么样", customer_token=sign_customer("C1001", SECRET, 600))
    assert order.order_id in body["reply"]
    # the same session id without the token is not that shopper's conversation
    anon = chat(client, "signed-1", "我最近的订单状态怎么样")
    assert order.order_id not in anon["reply"]
    forged = chat(client, "signed-2", "我最近的订单状态怎么样", customer_token=sign_customer("C1001", "guess", 600))
    assert order.order_id not in forged["reply"]


def test_a_phone_number_typed_in_chat_selects_no_one(client, shop):
    customer = shop.customer("C1001")
    body = chat(client, "phone-1", f"我的手机号是{customer.phone}，我的订单到哪了")
    assert not any(o.order_id in body["reply"] or o.product("zh") in body["reply"]
                   for o in shop.orders_for_customer("C1001"))


# -- proof of owning an order -------------------------------------------------------------------

def test_an_order_number_alone_needs_the_last_four_digits(client, shop):
    order = shop.order("38512074")
    phone = shop.customer(order.customer_id).phone
    first = chat(client, "own-zh", "我的订单38512074发货了吗")
    assert "后四位" in first["reply"] and order.product("zh") not in first["reply"]
    wrong = chat(client, "own-zh", "0000" if not phone.endswith("0000") else "1111")
    assert order.product("zh") not in wrong["reply"] and order.tracking_no not in wrong["reply"]
    right = chat(client, "own-zh", phone[-4:])
    assert order.product("zh") in right["reply"] and order.tracking_no in right["reply"]
    # proven once: the next question on that order is answered at once
    again = chat(client, "own-zh", "那这个订单的物流到哪了")
    assert "后四位" not in again["reply"]


def test_english_proof_and_three_wrong_tries_end_the_tries(client, shop):
    order = shop.order("38512074")
    phone = shop.customer(order.customer_id).phone
    wrong = "0000" if not phone.endswith("0000") else "1111"
    first = chat(client, "own-en", "where is order 38512074?")
    assert "last four digits" in first["reply"]
    for _ in range(3):
        refused = chat(client, "own-en", wrong)
        assert order.tracking_no not in refused["reply"] and order.product("en") not in refused["reply"]
    chat(client, "own-en", "where is order 38512074?")
    late = chat(client, "own-en", phone[-4:])
    assert order.tracking_no not in late["reply"] and order.product("en") not in late["reply"]


def test_a_tracking_number_alone_does_not_reveal_the_order(client, shop):
    order = shop.order("38512074")
    body = chat(client, "track-1", f"物流单号{order.tracking_no}到哪了")
    assert "38512074" not in body["reply"] and order.product("zh") not in body["reply"]


def test_a_call_with_the_callers_own_account_needs_no_proof(dialog_runtime, shop):
    order = shop.order("38512074")
    state = DialogState(customer_id=order.customer_id, channel="voice")  # the caller ID matched
    reply = dialog_runtime.dialog.respond("我的订单38512074发货了吗", state)
    assert order.tracking_no in reply.text


# -- handoffs, complaints ------------------------------------------------------------------------

def test_handoff_ids_are_random_and_keep_the_session_on_the_operator_side(client):
    body = chat(client, "victim-session-42", "转人工")
    assert body["handoff"] and "victim-session-42" not in body["handoff_id"]
    assert len(body["handoff_id"]) >= 16
    summary = client.app.state.store.handoff(body["handoff_id"])
    assert summary["session_id"] == "victim-session-42" and summary["channel"] == "chat"
    second = chat(client, "victim-session-42", "转人工")
    assert second.get("handoff_id") != body["handoff_id"]


def test_one_complaint_ticket_per_conversation(dialog_runtime):
    engine, state = dialog_runtime.dialog, DialogState()
    tickets = set()
    for text in ("你们的服务太差了，我要投诉！", "退货政策是什么", "我还是要投诉，气死我了，太差劲了"):
        reply = engine.respond(text, state)
        tickets |= {g for g in reply.grounding if g.startswith("tickets:")}
    assert len(tickets) == 1


# -- the requests themselves -------------------------------------------------------------------

def test_only_json_bodies_and_bounded_sizes(client):
    form = client.post("/api/chat", content=b'{"session_id":"x","text":"hi"}', headers={"content-type": "text/plain"})
    assert form.status_code == 415
    form = client.post("/api/callbacks", content=b'{"phone":"13800000000"}', headers={"content-type": "text/plain"})
    assert form.status_code == 415
    big = client.post("/api/chat", content=b'{"session_id":"x","text":"' + b"a" * 20_000 + b'"}',
                      headers={"content-type": "application/json"})
    assert big.status_code == 413
    long_text = client.post("/api/chat", json={"session_id": "x", "text": "啊" * 1001})
    assert long_text.status_code == 413
    assert client.post("/api/chat", json={"session_id": "x", "text": "你好"}).status_code == 200


def test_rate_limited_per_client_address_whatever_x_forwarded_for_says(dialog_runtime):
    client = make_client(dialog_runtime, chat_rate_per_s=0.01, chat_burst=3)
    codes = [client.post("/api/chat", json={"session_id": "rl", "text": "你好"},
                         headers={"x-forwarded-for": f"10.0.0.{i}"}) for i in range(5)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    assert codes[3].status_code == 429 and int(codes[3].headers["retry-after"]) >= 1


def test_chat_pool_is_bounded_and_below_the_calls_in_priority():
    import asyncio

    async def run():
        pool = ChatPool(workers=1, queue=1)
        gate = threading.Event()
        held = [asyncio.ensure_future(pool.submit(gate.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await pool.submit(lambda: None)
        gate.set()
        await asyncio.gather(*held)
        nice = await pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        pool.shutdown()
        return nice

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert asyncio.run(run()) == min(19, mine + 10)


def test_busy_chat_pool_answers_503_with_retry_after(dialog_runtime):
    client = make_client(dialog_runtime)

    class Full:
        async def submit(self, *_):
            raise Busy()

    client.app.state.chat_pool = Full()  # a turn that misses the cache, with the pool full
    r = client.post("/api/chat", json={"session_id": "busy", "text": "我的订单38512074发货了吗"})
    assert r.status_code == 503 and r.headers["retry-after"]


# -- ratings -------------------------------------------------------------------------------------

def test_ratings_are_stored_once_for_a_known_chat(dialog_runtime):
    client = make_client(dialog_runtime)
    added = []

    class Ratings:
        def add(self, call_id, stars, channel):
            added.append((call_id, stars, channel))

    client.app.state.ratings = Ratings()
    assert client.post("/api/ratings", json={"session_id": "never-chatted", "stars": 5}).status_code == 404
    chat(client, "rated-1", "你好")
    assert client.post("/api/ratings", json={"session_id": "rated-1", "stars": 6}).status_code == 422
    assert client.post("/api/ratings", content=b'{"session_id":"rated-1","stars":4}',
                       headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/ratings", json={"session_id": "rated-1", "stars": 4}).status_code == 201
    assert client.post("/api/ratings", json={"session_id": "rated-1", "stars": 1}).status_code == 409
    assert added == [("rated-1", 4, "chat")]


def test_guessing_the_last_four_in_new_sessions_locks_the_order(client, shop):
    from voiceagent.dialog import templates
    from voiceagent.dialog.flows import ownership

    order = shop.order("38512074")
    right = shop.customer(order.customer_id).phone[-4:]
    wrong = [f"{n:04d}" for n in range(10000) if f"{n:04d}" != right]
    secrets_ = (order.tracking_no, order.product_zh)
    for i in range(ownership.ORDER_MAX_TRIES):  # a fresh conversation for every guess
        session = f"guess-{i}"
        chat(client, session, f"订单{order.order_id}到哪了？")
        reply = chat(client, session, wrong[i])["reply"]
        assert not any(x in reply for x in secrets_), reply
    session = "guess-right"  # the order is locked now: not even asked, and the right digits are too late
    assert chat(client, session, f"订单{order.order_id}到哪了？")["reply"] == templates.render("zh", "last4_locked")
    reply = chat(client, session, right)["reply"]
    assert not any(x in reply for x in secrets_), reply
    # the lock is the order's: another customer's order is still answered after its proof
    other = next(o for o in shop.orders_for_customer("C1002") if o.order_id != order.order_id)
    chat(client, "other", f"订单{other.order_id}到哪了？")
    assert "last4" not in chat(client, "other", shop.customer("C1002").phone[-4:])["reply"]


def test_a_phone_number_said_on_a_call_without_caller_id_selects_no_one(dialog_runtime, shop):
    from voiceagent.dialog.engine import DialogState

    order = latest(shop, "C1001")
    phone = shop.customer("C1001").phone
    state = DialogState(channel="voice")  # a call whose caller ID matched no customer
    said = [dialog_runtime.dialog.respond(f"我的手机号是{phone}，我的订单到哪了？", state).text]
    said.append(dialog_runtime.dialog.respond("羽绒服", state).text)
    assert not any(order.tracking_no in s for s in said), said
    assert state.customer_id is None and "C1001" not in state.verified_customers
