from voiceagent.textnorm import guess_language, join_digit_groups, mask_pii, spoken_digits_to_arabic, to_simplified


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
