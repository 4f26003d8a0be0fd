"""Conversations that hold their thread (issue 20): the task and its slots over turns, the order the
task needs, actions read back and done only once confirmed, changes of mind and resumes, and replies
fit for the ear. Real NLU and a fresh demo shop per test; the customers are picked from the shop's
data by what the test needs, not by hard-coded ids."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date

import pytest

from voiceagent.dialog.cache import HotCache
from voiceagent.dialog.engine import DialogEngine, DialogState
from voiceagent.dialog.flows.order_choice import delivered_within
from voiceagent.dialog.flows.addresses import answer_as_address, spoken_address
from voiceagent.dialog.flows.wanted import wanted as _wanted
from voiceagent.dialog.grounding import GroundingChecker
from voiceagent.dialog.slots import reason_category
from voiceagent.evals import multiturn
from voiceagent.evals.conversations import ConversationRunner


@pytest.fixture(scope="module")
def runner(dialog_runtime, tmp_path_factory):
    rt = dialog_runtime
    return ConversationRunner(rt.nlu, rt.kb, rt.config.dialog.low_confidence, workdir=tmp_path_factory.mktemp("mt"))


class Call:
    """One conversation on a fresh shop: say() a turn, read the reply, the state and the shop."""

    def __init__(self, runner, name, customer=None, lang="zh", channel="text"):
        self.shop = runner.fresh_shop(name)
        self.engine = DialogEngine(runner.nlu, self.shop, None, runner.low_confidence, kb=runner.kb, cache=HotCache())
        self.checker = GroundingChecker(self.shop, runner.kb)
        self.state = DialogState(language=lang, customer_id=customer, channel=channel)
        self.said: list[str] = []

    def say(self, text: str):
        self.said.append(text)
        reply = self.engine.respond(text, self.state)
        grounded = self.checker.check(reply.text, self.state.language, reply.grounding, caller_said=self.said,
                                      customer_id=self.state.customer_id)
        assert grounded.ok, (reply.text, grounded.ungrounded)
        return reply

    def tickets(self) -> list[tuple[str, str]]:
        with closing(sqlite3.connect(self.shop.db_path)) as conn:
            return list(conn.execute("SELECT kind, order_id FROM tickets"))

    @property
    def task(self):
        return self.state.task


def _customers(shop, want) -> list[str]:
    """Customers whose orders satisfy `want(orders)` (newest first), in id order."""
    with closing(sqlite3.connect(shop.db_path)) as conn:
        ids = [r[0] for r in conn.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
    return [c for c in ids if want(shop.orders_for_customer(c))]


def _returnable(shop, order) -> bool:
    return delivered_within(order, shop.today, 7)


def test_a_return_takes_the_delivered_order_asks_the_reason_and_acts_only_once_confirmed(runner):
    call = Call(runner, "return")
    pick = _customers(call.shop, lambda os: sum(_returnable(call.shop, o) for o in os) == 1
                      and any(o.status == "paid" for o in os))[0]
    call.state.customer_id = pick
    delivered = next(o for o in call.shop.orders_for_customer(pick) if _returnable(call.shop, o))
    call.say("我买的东西不合适，想退货")
    assert call.task.kind == "aftersales.return" and call.task.slots["order_id"] == delivered.order_id
    reply = call.say("尺码太小了")
    assert call.task.slots["reason"] == "too_small" and call.tickets() == []  # read back, not done
    assert delivered.product_zh in reply.text and ("对吗" in reply.text or "确认" in reply.text)
    reply = call.say("对，确认")
    assert call.tickets() == [("return", delivered.order_id)] and "RT" in reply.text
    assert call.task.done


def test_two_fitting_orders_are_named_and_the_product_picks_one(runner):
    call = Call(runner, "which")
    shop = call.shop
    pick = next(c for c in _customers(shop, lambda os: len({o.sku for o in os if o.status in ("paid", "shipped")}) >= 2
                                      and len({o.product_zh for o in os if o.status in ("paid", "shipped")}) >= 2))
    call.state.customer_id = pick
    open_orders = [o for o in shop.orders_for_customer(pick) if o.status in ("paid", "shipped")]
    reply = call.say("我的订单发货了吗")
    assert "order_id" not in call.task.slots and call.task.awaiting == "order"
    named = [o for o in open_orders[:3] if o.product_zh in reply.text]
    assert len(named) >= 2, reply.text  # the candidates are named, briefly
    target = open_orders[1]
    call.say(f"就是那个{target.product_zh}")
    assert call.task.slots["order_id"] == target.order_id and call.task.done


def test_an_address_change_is_read_back_then_written_with_its_audit_row(runner):
    call = Call(runner, "address", lang="en")
    shop = call.shop
    pick = _customers(shop, lambda os: sum(o.status == "paid" for o in os) == 1)[0]
    call.state.customer_id = pick
    order = next(o for o in shop.orders_for_customer(pick) if o.status == "paid")
    call.say("I need to change the delivery address of my order")
    assert call.task.kind == "order.modify" and call.task.awaiting == "address"
    reply = call.say("5 Main Street, Springfield")
    assert "5 Main Street" in reply.text and shop.order(order.order_id).address != "5 Main Street, Springfield"
    call.say("yes, that's right")
    assert shop.order(order.order_id).address == "5 Main Street, Springfield"
    with closing(sqlite3.connect(shop.db_path)) as conn:
        rows = list(conn.execute("SELECT field, old_value, new_value FROM order_changes WHERE order_id = ?",
                                 (order.order_id,)))
    assert rows == [("address", order.address, "5 Main Street, Springfield")]


def test_an_anonymous_caller_proves_the_account_before_an_address_change(runner):
    call = Call(runner, "anon-address")
    order = next(o for o in call.shop.orders_for_customer("C1003") if o.status == "paid")
    phone = call.shop.customer("C1003").phone
    reply = call.say(f"我要改一下收货地址，订单号{order.order_id}")
    assert "后四位" in reply.text and call.task is None  # the order's details wait for the last four digits
    call.say(phone[-4:])  # they see the order; redirecting its parcel takes the whole number
    assert call.task.awaiting == "phone"
    call.say("手机号13900000000")  # not the account's
    assert call.task.awaiting == "phone" and "phone" not in call.task.slots
    call.say(f"手机号{phone}")
    call.say("上海市浦东新区张江路88号")
    call.say("对")
    assert call.shop.order(order.order_id).address == "上海市浦东新区张江路88号"


def test_an_exchange_offers_the_colours_the_product_really_comes_in(runner):
    call = Call(runner, "exchange")
    shop = call.shop

    def lacks_blue(os):
        fit = [o for o in os if delivered_within(o, shop.today, 15)]
        return len(fit) == 1 and shop.product(fit[0].sku).sizes and (shop.product(fit[0].sku).stock > 0)

    pick = _customers(shop, lacks_blue)[0]
    call.state.customer_id = pick
    order = next(o for o in shop.orders_for_customer(pick) if delivered_within(o, shop.today, 15))
    product = shop.product(order.sku)
    call.say("我想换货")
    reply = call.say("换成蓝色的")  # no product in the demo shop comes in blue
    assert "color" not in call.task.slots and all(c in reply.text for c in product.colors_zh), reply.text
    other = next(c for c in product.colors_zh if c != order.color_zh)
    reply = call.say(f"那就{other}吧")
    assert call.task.slots["color"] == product.colors_en[product.colors_zh.index(other)] and call.tickets() == []
    call.say("好的")
    assert call.tickets() == [("exchange", order.order_id)]


def test_a_change_of_mind_switches_task_and_the_old_one_resumes_with_its_slots(runner):
    call = Call(runner, "switch")
    shop = call.shop
    pick = _customers(shop, lambda os: sum(_returnable(shop, o) for o in os) == 1
                      and sum(o.status == "shipped" for o in os) == 1)[0]
    call.state.customer_id = pick
    delivered = next(o for o in shop.orders_for_customer(pick) if _returnable(shop, o))
    shipped = next(o for o in shop.orders_for_customer(pick) if o.status == "shipped")
    call.say("我要退货")
    call.say("算了，先帮我查一下物流")
    assert call.task.kind == "logistics.track" and call.task.slots["order_id"] == shipped.order_id
    assert [t.kind for t in call.state.suspended] == ["aftersales.return"]
    call.say("好，继续刚才的退货")
    assert call.task.kind == "aftersales.return" and call.task.slots["order_id"] == delivered.order_id
    call.say("质量有问题")
    assert call.task.slots["reason"] == "quality"


def test_a_question_on_the_side_leaves_the_task_open(runner):
    call = Call(runner, "aside")
    shop = call.shop
    pick = _customers(shop, lambda os: sum(_returnable(shop, o) for o in os) == 1)[0]
    call.state.customer_id = pick
    call.say("我要退货，不喜欢")
    assert call.task.awaiting == "confirm"
    reply = call.say("退货运费谁出？")
    assert "运费" in reply.text and call.task.open() and call.tickets() == []
    call.say("好的，确认")
    assert [k for k, _ in call.tickets()] == ["return"]


def test_the_vip_touch_is_said_once_and_voice_replies_are_short(runner):
    call = Call(runner, "vip", channel="voice")
    shop = call.shop
    pick = _customers(shop, lambda os: len(os) >= 2)
    vip = next(c for c in pick if shop.customer(c).tier == "vip")
    call.state.customer_id = vip
    replies = [call.say(t).text for t in ("会员积分有多少", "优惠券怎么用", "发票怎么开")]
    assert sum("VIP" in r for r in replies) == 1 and replies[0].startswith("尊敬的VIP会员")
    assert all(multiturn.reply_size(r, "zh") <= 60 for r in replies), replies
    # the same questions in text chat may say more
    text = Call(runner, "vip-text")
    text.state.customer_id = vip
    longer = [text.say(t).text for t in ("会员积分有多少", "优惠券怎么用", "发票怎么开")]
    assert sum(map(len, longer)) > sum(map(len, replies))


def test_a_voice_reply_leaves_details_for_when_they_are_asked_for(runner):
    call = Call(runner, "details", channel="voice")
    first = call.say("退货政策是什么")
    left = call.state.more
    assert left and multiturn.reply_size(first.text, "zh") <= 45, first.text  # the rest waits
    more = call.say("详细说说")
    # what was left is said now (itself in short pieces on the phone), nothing of the first answer again
    assert more.text and left.startswith(more.text) and more.text not in first.text


@pytest.mark.parametrize("name, least", [("dev", 0.85), ("dev2", 0.8), ("dev3", 0.72)])
def test_the_dev_sets_hold_their_thread(runner, name, least):
    """The dev sets of the multi-turn data (the held-out one is measured by benchmarks/eval_multiturn.py):
    rates with a margin, so that another CPU's slightly different NLU scores do not flip them. dev2
    is the harder one (dialect words, rambling turns, numbers spoken as words)."""
    report = multiturn.run(multiturn.load(name), runner)
    assert report.task_success >= least, report.failures
    assert report.joint_goal_accuracy >= least, report.failures
    assert not report.ungrounded, report.ungrounded
    assert report.median_voice("zh") <= 40 and report.median_voice("en") <= 25
    assert report.repeated <= 0.05 * report.sentences  # a fact asked for again is said again; stock lines are not


def test_the_data_sets_are_sound():
    for name, least in (("heldout", 100), ("dev", 30), ("dev2", 50), ("dev3", 30)):
        conversations = multiturn.load(name)
        assert len(conversations) >= least
        assert len({c["id"] for c in conversations}) == len(conversations)
        assert {c["lang"] for c in conversations} <= {"zh", "en"}
        for c in conversations:
            assert c["turns"] and all("state" in t and "say" in t for t in c["turns"])


@pytest.mark.parametrize("text, reason", [
    ("尺码太小了", "too_small"), ("穿着有点大了", "too_big"), ("收到就是坏的", "damaged"), ("发错货了", "wrong_item"),
    ("和图片不一样，色差很大", "not_as_described"), ("洗了一次就起球", "quality"), ("不想要了", "changed_mind"),
    ("it's too tight", "too_small"), ("the zipper is broken", "damaged"), ("it doesn't fit", "does_not_fit"),
    ("I just changed my mind", "changed_mind"), ("就这样吧", "other")])
def test_reasons_are_read_into_their_categories(text, reason):
    assert reason_category(text) == reason


@pytest.mark.parametrize("text, size, colour", [
    ("S码小了，我想换M", "M", None), ("现在是XL，那就L", "L", None), ("没有米色啊，那就白色", None, "white"),
    ("navy then, same size", None, "navy"), ("换成黑色L码", "L", "black")])
def test_the_wanted_size_and_colour_are_the_ones_asked_for(text, size, colour):
    assert _wanted(text) == (size, colour)


def test_addresses_are_taken_as_said_and_numbers_are_not_addresses():
    assert spoken_address("改到上海市浦东新区张江路88号") == "上海市浦东新区张江路88号"
    assert spoken_address("please change it to 5 Main Street, Springfield") == "5 Main Street, Springfield"
    assert answer_as_address("手机号13127241056") is None and answer_as_address("38512074") is None


def test_an_order_that_has_shipped_cannot_be_changed(runner):
    shop = runner.fresh_shop("shipped")
    order = shop.order("38512074")
    assert order.status == "shipped"
    with pytest.raises(ValueError):
        shop.change_order(order.order_id, "address", "somewhere")
    assert shop.order(order.order_id).address == order.address
    assert date.fromisoformat(order.created_at) <= shop.today
