import pytest

from voiceagent.textnorm import (guess_language, join_digit_groups, mask_pii, repair_misheard_service_words,
                                 spoken_digits_to_arabic, to_simplified)


def test_spoken_chinese_digits_become_a_number():
    assert spoken_digits_to_arabic("订单号是三八五一二零七四") == "订单号是38512074"
    assert spoken_digits_to_arabic("幺三八") == "138"


def test_ordinary_chinese_words_with_numerals_are_left_alone():
    assert spoken_digits_to_arabic("我想查一下，买了两件") == "我想查一下，买了两件"


def test_spoken_english_digits_become_a_number():
    assert spoken_digits_to_arabic("the number is three eight five one") == "the number is 3851"
    assert spoken_digits_to_arabic("one of them") == "one of them"


def test_grouped_digits_are_joined():
    assert join_digit_groups("order 3851 2074 please") == "order 38512074 please"
    assert join_digit_groups("385-12074") == "38512074"
    # a caller pausing half-way through: the recogniser ends the first half as a sentence
    assert join_digit_groups("Where's my order 3851? 2074.") == "Where's my order 38512074."
    assert join_digit_groups("订单号是3851。2074") == "订单号是38512074"
    assert join_digit_groups("2024, 1108") == "20241108"


def test_phone_numbers_are_masked_order_numbers_are_not():
    masked = mask_pii("我的手机是13812345678，订单38512074")
    assert "13812345678" not in masked and "138****5678" in masked
    assert "38512074" in masked
    assert "+44 20 7946 0958" not in mask_pii("call me on +44 20 7946 0958")
    assert "j***@example.com" in mask_pii("mail john.doe@example.com")


def test_traditional_output_becomes_simplified():
    assert to_simplified("我的訂單甚麼時候發貨") == "我的订单甚么时候发货"


def test_language_guess():
    assert guess_language("我的快递") == "zh"
    assert guess_language("where is it") == "en"
    assert guess_language("12345", default="zh") == "zh"


def test_english_voice_reads_ids_digit_by_digit_and_keeps_amounts():
    from voiceagent.textnorm import speakable_en

    assert speakable_en("Order 55120963.") == "Order 5 5 1 2, 0 9 6 3."
    assert speakable_en("tracking SF891203740483") == "tracking S F, 8 9 1 2, 0 3 7 4, 0 4 8 3"
    assert speakable_en("It costs 459 yuan, or 12345.50 in total.") == "It costs 459 yuan, or 12345.50 in total."


def test_dates_are_spoken():
    from voiceagent.textnorm import spoken_date

    assert spoken_date("2026-11-18", "zh") == "11月18日"
    assert spoken_date("2026-11-18", "en") == "November 18"
    assert spoken_date(None, "en") == ""


# -- misheard Mandarin service words -------------------------------------------------------------
# Confusions written while designing the rule (whisper-base's own on the sample calls, and the
# brief's): they must be repaired.
@pytest.mark.parametrize("heard, meant", [
    ("你好,我的快避到哪里了?", "你好,我的快递到哪里了?"),
    ("你们怎么回事?快第三天了还没到?", "你们怎么回事?快递三天了还没到?"),
    ("我的快地呢", "我的快递呢"),
    ("我想查一下我的电单什么时候发货", "我想查一下我的订单什么时候发货"),
    ("简单号是55-2020-1963。", "订单号是55-2020-1963。"),
])
def test_misheard_service_words_are_repaired(heard, meant):
    assert repair_misheard_service_words(heard) == meant


# Held out: written after the rule, run once before any change to it. First set: 10 of 12 repaired
# and 8 of 13 left alone; the rule then took only a character's usual reading ("的" is de, not the
# di of "目的") and asked a 单号 for a 6+ digit number. Second set, run once after that: 7 of 9
# repaired, 10 of 10 left alone. The misses are kept as the rule's known limits.
HELD_OUT_REPAIRED = [
    ("我的快帝还没到", "快递"), ("店单号是38512074", "订单号"), ("我想查一下物留信息", "物流"), ("什么时候发祸", "发货"),
    ("款单号：20241108", "订单号"), ("我要退获", "退货"), ("我的块递呢", "快递"), ("运丹号是多少", "运单"),
    ("这个定单什么时候到", "订单"), ("快弟到哪了", "快递"),
    ("我想问下物刘", "物流"), ("订丹号是20241108", "订单号"), ("能帮我查查运担吗", "运单"), ("退或怎么办理", "退货"),
    ("发或了吗", "发货"), ("我的快缔呢", "快递"), ("瓦单号是 5512 0963", "订单号"),
]
HELD_OUT_KEPT = [
    "我觉得很简单", "我想订机票", "快的话明天到", "退火工艺", "单号是多少", "发火也没用", "物理课", "订单号是多少", "我的运费",
    "菜单号是3", "这道题很简单吧", "我想订蛋糕", "帮我订房", "快递员来过了", "付款了", "这是名单号码是3", "真快乐", "发挥一下",
    "物价涨了", "简单号是3",
]
# Known limits: a changed tone is not repaired (退宽 kuan1 for 退款 kuan3, 推货, 快低, 发伙), and a
# real word that sounds like a service word is taken for it (电单车, 很快地, 订班车): rare in a shop's
# calls, and the classifier still weighs the whole sentence.
KNOWN_MISSES = ["能不能退宽", "我要推货", "快低到了没有", "什么时候发伙"]
KNOWN_FALSE_REPAIRS = ["他骑电单车来的", "他快地跑过来", "帮我订班车"]


def test_held_out_confusions_are_repaired_and_ordinary_words_kept():
    repaired = [heard for heard, meant in HELD_OUT_REPAIRED if meant in repair_misheard_service_words(heard)]
    kept = [text for text in HELD_OUT_KEPT if repair_misheard_service_words(text) == text]
    assert len(repaired) == len(HELD_OUT_REPAIRED), set(h for h, _ in HELD_OUT_REPAIRED) - set(repaired)
    assert len(kept) == len(HELD_OUT_KEPT), set(HELD_OUT_KEPT) - set(kept)
    # the limits as documented: if one of these starts passing, move it up (and say why)
    assert all(repair_misheard_service_words(t) == t for t in KNOWN_MISSES)
    assert all(repair_misheard_service_words(t) != t for t in KNOWN_FALSE_REPAIRS)


def test_text_without_chinese_is_untouched():
    for text in ("where is my parcel", "order 55-2020-1963", ""):
        assert repair_misheard_service_words(text) == text


def test_a_number_named_as_the_order_number_is_the_order_slot_even_misheard():
    from voiceagent.dialog.slots import extract_slots

    # digits as heard, grouped or not, 8 digits or not: the caller named it as the order number
    assert extract_slots(repair_misheard_service_words("简单号是55-2020-1963。"))["order_id"] == "5520201963"
    assert extract_slots("订单号是55-2020-63")["order_id"] == "55202063"
    assert extract_slots("the order number is 551-2096")["order_id"] == "5512096"
    assert extract_slots("订单号是38512074")["order_id"] == "38512074"
    # not named as one, or too short to be one, or a phone number: no order number
    assert "order_id" not in extract_slots("我付了5520201963")
    assert "order_id" not in extract_slots("订单号是123")
    slots = extract_slots("订单号是13812345678")
    assert slots["phone"] == "13812345678" and "order_id" not in slots
