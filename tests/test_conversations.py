"""Scripted multi-turn conversations (tests/conversations/*.toml, run by voiceagent/evals/conversations.py),
each on a fresh copy of the demo shop: every turn's expectations hold, and no agent turn states a fact
without a grounding source (voiceagent/dialog/grounding.py). Also the grounding checker itself: it
must catch invented prices and dates, another order's number, an uncited policy number, false
claims, and accept the engine's real replies."""

from __future__ import annotations

import sqlite3

import pytest

from voiceagent.dialog.engine import DialogEngine, DialogState
from voiceagent.dialog.grounding import GroundingChecker, audit_templates, extract_atoms, normalise_numbers
from voiceagent.evals.conversations import ConversationRunner, check_turn, load_conversations
from voiceagent.shop import demo
from voiceagent.shop.repository import ShopRepository

CONVERSATIONS = load_conversations()
TURN_KEYS = {"say", "repeat", "hint", "intent", "contains", "contains_any", "not_contains", "grounding", "grounding_any",
             "no_grounding", "orders_of", "handoff", "handoff_reason", "resolved", "ticket", "coupon", "state", "slots",
             "no_slots"}
CONVERSATION_KEYS = {"id", "lang", "customer_id", "title", "requires", "forbid", "hint", "turns", "file"}


@pytest.fixture(scope="module")
def runner(dialog_runtime, tmp_path_factory):
    rt = dialog_runtime
    return ConversationRunner(rt.nlu, rt.kb, rt.config.dialog.low_confidence, workdir=tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A pristine demo shop of its own (the checker tests need no models)."""
    path = tmp_path_factory.mktemp("grounding") / "shop.db"
    demo.build(path)
    return ShopRepository(path)


@pytest.fixture(scope="module")
def checker(shop):
    return GroundingChecker(shop)


# -- the script set -----------------------------------------------------------------------------


def test_the_script_set_is_well_formed():
    ids = [c["id"] for c in CONVERSATIONS]
    assert len(CONVERSATIONS) >= 50 and len(set(ids)) == len(ids)
    by_lang = {lang: sum(c["lang"] == lang for c in CONVERSATIONS) for lang in ("zh", "en")}
    assert min(by_lang.values()) >= 25, by_lang
    for conv in CONVERSATIONS:
        assert set(conv) <= CONVERSATION_KEYS, f"{conv['id']}: unknown keys {set(conv) - CONVERSATION_KEYS}"
        assert 2 <= len(conv["turns"]) <= 8, f"{conv['id']}: {len(conv['turns'])} turns"
        for i, turn in enumerate(conv["turns"], 1):
            assert set(turn) <= TURN_KEYS, f"{conv['id']} turn {i}: unknown keys {set(turn) - TURN_KEYS} (a typo?)"
            assert "say" in turn, f"{conv['id']} turn {i}: no 'say'"
    assert sum(len(c["turns"]) for c in CONVERSATIONS) >= 150


# -- every conversation ---------------------------------------------------------------------------


@pytest.mark.parametrize("conv", CONVERSATIONS, ids=[c["id"] for c in CONVERSATIONS])
def test_conversation(runner, conv):
    outcomes, problems = runner.run(conv)
    errors = [f"{conv['id']}: {p}" for p in problems]
    for o in outcomes:
        for f in o.failures:
            errors.append(f"{o.label()}: {f}")
        for f in o.grounding.ungrounded:
            errors.append(f"{o.label()}: UNGROUNDED {f}")
    if errors:
        transcript = "\n".join(f"  {o.index}. caller: {o.said[:80]!r}\n     agent [{o.reply.intent}] {o.reply.text}\n"
                               f"     grounding {o.reply.grounding}" for o in outcomes)
        pytest.fail("\n".join(errors) + f"\n{conv['id']} ({conv['file']}):\n{transcript}", pytrace=False)


# -- the grounding checker ------------------------------------------------------------------------


def ungrounded(checker, text, lang, grounding, **kw):
    return [str(f) for f in checker.check(text, lang, grounding, **kw).ungrounded]


def test_an_invented_price_is_caught(checker, shop):
    product = shop.product("P000")
    true = f"The {product.name_en} costs {product.price:g} yuan right now."
    assert ungrounded(checker, true, "en", ["products:P000"]) == []
    found = ungrounded(checker, f"The {product.name_en} costs {product.price + 100:g} yuan right now.", "en", ["products:P000"])
    assert len(found) == 1 and f"{product.price + 100:g}" in found[0]
    found = ungrounded(checker, f"{product.name_zh}现在的价格是{product.price - 50:g}元。", "zh", ["products:P000"])
    assert len(found) == 1 and f"{product.price - 50:g}" in found[0]


def test_an_invented_date_is_caught(checker, shop):
    order = shop.order("38512074")
    assert order.shipped_at == "2026-11-18"
    true = "您的订单38512074（轻薄羽绒服）已经在11月18日由顺丰速运发出。"
    assert ungrounded(checker, true, "zh", ["orders:38512074"]) == []
    assert ungrounded(checker, true.replace("11月18日", "11月3日"), "zh", ["orders:38512074"]) == [
        "date '11月3日': not in the cited records (cited: orders:38512074)"]
    found = ungrounded(checker, "Your order 38512074 shipped on November 19 with SF Express.", "en", ["orders:38512074"])
    assert found == ["date_role 'shipped on November 19': order 38512074 shipped_at is 2026-11-18"]  # its ship-by date
    # an ISO date, and a coupon's expiry, count too
    assert ungrounded(checker, "We expect more on 2026-12-01.", "en", ["products:P110"])


def test_another_orders_number_is_caught(checker):
    found = ungrounded(checker, "Your order 20241108, the floral midi dress, was delivered on October 29.", "en",
                       ["orders:38512074"])
    assert any("20241108" in f and "another order" in f for f in found)
    assert any("floral midi dress" in f for f in found) and any("October 29" in f for f in found)


def test_an_uncited_policy_number_is_caught(checker):
    text = "You can return any item within 7 days of delivery for any reason."
    found = ungrounded(checker, text, "en", ["orders:20241108"])
    assert len(found) == 1 and "'7'" in found[0] and "policies:return" in found[0]
    assert ungrounded(checker, text, "en", ["orders:20241108", "policies:return"]) == []
    # written in Chinese numerals or English words it is still a number
    assert ungrounded(checker, "请在七天内寄回商品，一到三个工作日内退款。", "zh", [])
    assert ungrounded(checker, "A colleague will call you back within twenty-four hours.", "en", [])


def test_false_claims_about_records_are_caught(checker, shop):
    assert shop.order("38512074").status == "shipped" and shop.order("55106709").status == "cancelled"
    assert ungrounded(checker, "Your order 38512074 was delivered on November 18.", "en", ["orders:38512074"]) == [
        "status 'was delivered': order 38512074 is shipped",
        "date_role 'delivered on November 18': order 38512074 delivered_at is None"]
    assert ungrounded(checker, "订单55106709已经发货，不能取消了。", "zh", ["orders:55106709"]) == [
        "status '已经发货': order 55106709 is cancelled"]
    assert ungrounded(checker, "Your order 38512074, shipped on November 18 with YTO Express.", "en", ["orders:38512074"])
    # eligibility is measured from the delivery date against the cited policy's window
    assert any("window is 7 days" in f for f in ungrounded(checker, "Order 20241108 qualifies. May I ask why?", "en",
                                                            ["orders:20241108", "policies:return"]))
    assert ungrounded(checker, "The cashmere sweater is out of stock right now.", "en", ["products:P050"])
    assert ungrounded(checker, "订单38512074的退款正在处理中。", "zh", ["orders:38512074"])
    # the caller's tier needs the caller's record
    assert ungrounded(checker, "Thank you for being a VIP member.", "en", [])
    assert ungrounded(checker, "Thank you for being a VIP member.", "en", ["customers:C1001"])  # C1001 is new
    assert ungrounded(checker, "Thank you for being a VIP member.", "en", ["customers:C1004"]) == []
    # colours, sizes and materials the product does not have
    assert len(ungrounded(checker, "The cashmere sweater comes in pink, size XXL, in silk.", "en", ["products:P050"])) == 3


def test_citations_must_exist_and_belong_to_the_caller(checker):
    assert ungrounded(checker, "Your order is on its way.", "en", ["orders:99999999"]) == [
        "citation 'orders:99999999': cites a record that does not exist"]
    found = ungrounded(checker, "Your order 20241108 was delivered on October 29.", "en", ["orders:20241108"],
                       customer_id="C1001")
    assert found == ["citation 'orders:20241108': order of customer C1002, not of the caller C1001"]


def test_repeating_the_callers_number_is_no_fact(checker):
    text = "I couldn't find order 11112222. Could you check the number for me?"
    assert ungrounded(checker, text, "en", []) == ["number '11112222': not in the cited records (cited: nothing)"]
    result = checker.check(text, "en", [], caller_said=["where is order one one one one two two two two"])
    assert result.ok and [a.value for a in result.echoed] == ["11112222"]
    # a real order's number is a fact about that order, even when the caller said it first
    found = ungrounded(checker, "Order 20241108 is on its way.", "en", [], caller_said=["where is 20241108"])
    assert any("another order" in f for f in found)


def test_template_wording_is_not_a_fact():
    for text in ["请告诉我您的订单号，是八位数字。", "Could you tell me your order number? It has eight digits.",
                 "已为您发放一张优惠券", "One moment, please.", "请稍等一下"]:
        assert extract_atoms(text) == [], text
    assert normalise_numbers("一到三个工作日，七天，二十四小时，one business day, a one-year warranty") == \
        "1到3个工作日，7天，24小时，1 business day, a 1-year warranty"


def test_the_templates_state_no_fact_of_their_own():
    """Numbers written into a template (a '7-day window', '48 hours') must come from the policies."""
    assert audit_templates("zh") == [] and audit_templates("en") == []


def test_the_engines_real_replies_are_grounded(dialog_runtime, runner):
    shop = runner.fresh_shop("real-replies")
    rt = dialog_runtime
    engine = DialogEngine(rt.nlu, shop, None, rt.config.dialog.low_confidence, kb=rt.kb)
    checker = GroundingChecker(shop, rt.kb)
    # an order's details are told to its owner (known by caller ID); an anonymous caller is asked to prove it first
    turns = [("C1001", "我的订单38512074发货了吗"), ("C1002", "where is order 20241108"), ("C1003", "has order 55120963 shipped?"),
             ("C1005", "when will I get my refund for order 64209517"), ("C1004", "订单71830245能退货吗"),
             ("C1001", "I want to cancel order 38512074"), (None, "羽绒服多少钱"), (None, "is the electric kettle in stock?"),
             (None, "跑步鞋偏码吗"), (None, "what is the silk blouse made of"), (None, "推荐一款外套"),
             (None, "发票怎么开"), (None, "what are your customer service hours"), ("C1004", "积分怎么用"),
             ("C1002", "能给我发张优惠券吗"), ("C1016", "the kettle arrived broken, I want to complain"),
             ("C1008", "where is my order?"), ("C1001", "track SF798926223655")]
    checked = 0
    for customer, text in turns:
        reply = engine.respond(text, DialogState(customer_id=customer), None)
        result = checker.check(reply.text, "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en",
                               reply.grounding, caller_said=[text], customer_id=customer)
        assert result.ok, f"{text!r} -> {reply.text!r} {reply.grounding}: {[str(f) for f in result.ungrounded]}"
        checked += len(result.atoms)
    assert checked > 60  # the replies do state facts, and each was checked


def test_the_harness_reports_failed_expectations(runner):
    """The expectations are not vacuous: a wrong script fails, naming the turn and the problem."""
    conv = {"id": "wrong-on-purpose", "lang": "en", "customer_id": "C1002", "requires": [{"order": "38512074",
                                                                                          "status": "delivered"}],
            "forbid": ["SF Express"],
            "turns": [{"say": "Where is order 38512074?", "intent": "product.price", "contains": ["teleported"],
                       "grounding": ["orders:55120963"], "ticket": "return", "handoff": True},
                      {"say": "Can you give me a coupon?", "coupon": False, "state": {"pending_intent": "order.cancel"}}]}
    outcomes, problems = runner.run(conv)
    assert problems == ["precondition: order 38512074 is shipped, not delivered"]
    first, second = (o.failures for o in outcomes)
    assert any(f.startswith("intent ") for f in first) and any("teleported" in f for f in first)
    assert any("orders:55120963" in f for f in first) and any("return ticket" in f for f in first)
    assert any(f.startswith("handoff False") for f in first)
    assert any("1 coupon(s) issued" in f for f in second) and any("state.pending_intent" in f for f in second)
    assert outcomes[0].label().startswith("wrong-on-purpose turn 1")


def test_each_conversation_gets_a_fresh_shop(runner):
    a, b = runner.fresh_shop("a"), runner.fresh_shop("b")
    customer = a.customer("C1002")
    assert a.issue_coupon(customer, "test").coupon_id
    with sqlite3.connect(b.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM coupons").fetchone()[0] == 0


def test_check_turn_defaults_forbid_unexpected_actions(shop):
    class R:  # a reply that did nothing wrong but created a ticket nobody asked for
        text, intent, grounding, handoff, handoff_reason, resolved = "ok", "other", [], False, None, True

    before = {"tickets": {}, "coupons": {"all": 0}}
    after = {"tickets": {"complaint": 1}, "coupons": {"all": 0}}
    assert check_turn({"say": "hi"}, R(), DialogState(), shop, before, after) == [
        "created a complaint ticket, none expected"]
