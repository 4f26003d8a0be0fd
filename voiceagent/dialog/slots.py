"""Slot extraction by rules: numbers the caller reads out, sizes, colours, products, reasons.

Rules rather than a model because these values have exact formats and must be exact; they work
on ASR output, so spoken digits ("三八五一…", "three eight five…") and grouped digits are
normalised first (and misheard service words repaired by the NLU before: textnorm).
"""

from __future__ import annotations

import re

from ..textnorm import join_digit_groups, spoken_digits_to_arabic

COLORS_ZH = {
    "黑色": "black", "白色": "white", "红色": "red", "蓝色": "blue", "藏青色": "navy", "米色": "beige",
    "灰色": "grey", "粉色": "pink", "卡其色": "khaki", "绿色": "green", "黄色": "yellow", "紫色": "purple",
    "棕色": "brown",
}
COLORS_EN = {"black", "white", "red", "blue", "navy", "beige", "grey", "gray", "pink", "khaki", "green",
              "yellow", "purple", "brown"}
_REASONS_ZH = {"不合适": "does_not_fit", "太大": "too_big", "太小": "too_small", "偏大": "too_big", "偏小": "too_small",
               "质量": "quality", "破": "damaged", "坏": "damaged", "发错": "wrong_item", "不喜欢": "changed_mind",
               "色差": "color_differs", "起球": "quality", "掉色": "quality"}
_REASONS_EN = {"doesn't fit": "does_not_fit", "does not fit": "does_not_fit", "too big": "too_big",
               "too small": "too_small", "broken": "damaged", "damaged": "damaged", "wrong item": "wrong_item",
               "don't like": "changed_mind", "changed my mind": "changed_mind", "quality": "quality",
               "defective": "damaged"}
# A number the caller names as the order number but heard with digits too many or too few
# ("订单号是55-2020-1963" for 五五一二零九六三): kept as heard, so that the agent says it found no such
# order and reads the number back, rather than asking for a number the caller has just given.
_NAMED_ORDER_NUMBER = re.compile(r"(?:订单号|订单编号|order (?:number|no\.?|#))\s*(?:是|为|is|:|：)?\s*(\d{6,12})(?!\d)",
                                 flags=re.I)
_QTY_ZH = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


def normalise_numbers(text: str) -> str:
    return join_digit_groups(spoken_digits_to_arabic(text))


def extract_slots(text: str, shop=None) -> dict[str, str]:
    slots: dict[str, str] = {}
    norm = normalise_numbers(text)

    m = re.search(r"(?<![A-Za-z0-9])(SF|YT|ZT|JD)\s?(\d{10,14})(?!\d)", norm, flags=re.I)
    if m:
        slots["tracking_no"] = m.group(1).upper() + m.group(2)
    m = re.search(r"(?<!\d)(?:\+?86)?(1[3-9]\d{9})(?!\d)", norm)
    if m:
        slots["phone"] = m.group(1)
    for m in re.finditer(r"(?<!\d)(\d{8})(?!\d)", norm):  # the shop's order numbers are 8 digits ("order34940692" too)
        if "phone" in slots and m.group(1) in slots["phone"]:
            continue
        slots["order_id"] = m.group(1)
        break
    m = None if "order_id" in slots else _NAMED_ORDER_NUMBER.search(norm)
    if m and m.group(1) not in slots.get("phone", ""):
        slots["order_id"] = m.group(1)

    size = _size(norm)
    if size:
        slots["size"] = size
    color = _color(text)
    if color:
        slots["color"] = color
    # a quantity is a count of items bought or to be changed to ("改成两件", "买三双"), not "一份报告"
    m = re.search(r"(?:买|要|订|拍|下单|改成|改为|换成|数量|来|加|共|一共)\s*(\d+|[一两二三四五六七八九十])\s*(件|个|双|条|台|套|瓶|盒)", norm)
    if m:
        q = m.group(1)
        slots["quantity"] = str(_QTY_ZH.get(q, q))
    else:
        m = re.search(r"\b(\d+|one|two|three|four|five)\s+(pieces|items|pairs|units|of them)\b", norm, flags=re.I)
        if m:
            slots["quantity"] = str({"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}.get(m.group(1).lower(), m.group(1)))
    m = re.search(r"(\d+(?:\.\d+)?)\s*(元|块|yuan|rmb|dollars?)", norm, flags=re.I) or re.search(r"[¥$]\s?(\d+(?:\.\d+)?)", norm) \
        or re.search(r"(?:付了|花了|还是|才|降到|退了|价格是|take|under|over|was|paid|pay|for)\s*(\d{2,5}(?:\.\d+)?)(?![\d码号.])", norm,
                     flags=re.I)
    if m:
        slots["amount"] = m.group(1)
    lowered = text.lower()
    for key, reason in {**_REASONS_ZH, **_REASONS_EN}.items():
        if key in lowered:
            slots["reason"] = reason
            break
    m = _ADDRESS.search(text) or re.search(
        r"(?:地址|寄到|送到|发到)(?:改成|改为|换成|是)?[:：]?\s*([\u4e00-\u9fff][\u4e00-\u9fff\d]{3,29}(?:路|街|号|室|小区|村))", text)
    if m:
        slots["address"] = m.group(1)
    if shop is not None:
        product = shop.find_product(text)
        if product is not None:
            slots["product"] = product.sku
    return slots


# A Chinese postal address, anywhere in the turn (also inside English): city, district, street, number.
_ADDRESS = re.compile(r"(?:^|地址|寄到|送到|发到|改成|改为|换成|是|to|[:：\s,，])\s*"
                      r"([\u4e00-\u9fff]{2,3}(?:省|市)[\u4e00-\u9fff\d]{1,30}?(?:路|街|道|巷|村|小区)(?:\d+号)?(?:\d+室)?)")


def _color(text: str) -> str | None:
    """The first colour named: "黑色"/"黑的" or an English colour word."""
    lowered = text.lower()
    found = []
    for zh in COLORS_ZH:
        for form in (zh, zh[:-1] + "的") if len(zh) == 2 and zh != "米色" else (zh,):  # "米的" is in "厘米的"
            i = text.find(form)
            if i >= 0:
                found.append((i, zh))
    m = re.search(r"\b(" + "|".join(COLORS_EN) + r")\b", lowered)
    if m:
        found.append((m.start(), m.group(1)))
    return min(found)[1] if found else None


def _size(text: str) -> str | None:
    m = re.search(r"(?<![A-Za-z])(XXXL|XXL|XL|XS)(?![A-Za-z])", text)  # unmistakable
    if m:
        return m.group(1)
    m = re.search(r"(?<![A-Za-z])(S|M|L)(?:码|号| size)?(?![A-Za-z])", text)
    if m and (re.search(r"码|号|size|穿|选|换|拿|拍", text, flags=re.I) or len(text) < 12):
        return m.group(1)
    m = re.search(r"(\d{2})\s*(?:码|号)(?!码)", text) or re.search(r"(?:拍|穿|选|选的|买|要|换|改|改成|换成|没有)\s*(\d{2})(?:的|码)?(?![\d块元斤公厘])", text)
    if m and 20 <= int(m.group(1)) <= 50:
        return m.group(1)
    m = re.search(r"\bsize\s+(\d{1,2}(?:\.5)?|small|medium|large|extra large)\b", text, flags=re.I)
    if m:
        return {"small": "S", "medium": "M", "large": "L", "extra large": "XL"}.get(m.group(1).lower(), m.group(1))
    m = re.search(r"\b(small|medium|large)\b", text, flags=re.I)
    if m and re.search(r"\b(wear|size|fit|get|take)\b", text, flags=re.I):
        return {"small": "S", "medium": "M", "large": "L"}[m.group(1).lower()]
    return None


# Why an item goes back, as the after-sales tickets record it: the first category whose words are in
# the turn (the narrower ones first: "尺码太小了" is too_small, not does_not_fit).
REASON_CATEGORIES: list[tuple[str, re.Pattern]] = [
    ("wrong_item", re.compile(r"发错|错发|寄错|不是我(买|要|订)的|货不对|wrong (item|size|colou?r|one|product)|"
                              r"not what i ordered|sent (me )?the wrong|(got|received|sent me) (a |an |the )?\w+ (one )?instead", re.I)),
    ("damaged", re.compile(r"坏|破|损|裂|洞|凹|瘪|碎了|漏|开胶|不能用|用不了|不工作|没反应|broken|damaged|defective|cracked|torn|"
                           r"ripped|hole|dent|scratch|(doesn't|does not|won't|stopped) (work|turn on|charge|close|open)|not working|dead|leak",
                           re.I)),
    ("too_small", re.compile(r"(太|偏|有点|有些|稍微|略)?小了|太小|偏小|紧|勒|穿不上|穿不进|挤脚|磨脚|too (small|tight|short)|tight|"
                             r"runs small|(a )?size (too )?small|smaller|tiny|squish|squeez|pinch", re.I)),
    ("too_big", re.compile(r"(太|偏|有点|有些|稍微|略)?大了|太大|偏大|太松|太长|特别大|大得|空荡|too (big|large|loose|long)|loose|"
                           r"runs (big|large)|baggy|bigger|(is|are|it's|they're)\s+(\w+\s+)?(huge|massive)|(huge|massive) on|swimming in", re.I)),
    ("not_as_described", re.compile(r"色差|跟图|和图|与图|图片不|描述不|不一样|货不对板|实物|not as described|"
                                    r"(looks|is) (different|nothing like)|different from the (picture|photo|description)|"
                                    r"doesn't look like|misleading|looks? (kind of |a bit )?\w+ish\b", re.I)),
    ("quality", re.compile(r"质量|做工|起球|掉色|褪色|开线|线头|掉毛|脱皮|掉漆|异味|味道|味儿|气味|quality|pilling|faded|fading|"
                           r"loose threads|cheap|smell|shoddy|peel|flak|stink|uneven|不均匀|不好用|(doesn't|does not|won't) \w+ "
                           r"(properly|evenly|well|right)", re.I)),
    ("late_delivery", re.compile(r"太慢|太晚|迟到|晚到|来晚|等太久|too late|took too long|arrived late|late delivery", re.I)),
    ("changed_mind", re.compile(r"不喜欢|不想要|不需要|不要了|用不着|改主意|买多了|买重|后悔|changed my mind|don't (like|need|want)|"
                                r"no longer (need|want)|not needed|ordered (two|twice|by mistake)|by mistake", re.I)),
    ("does_not_fit", re.compile(r"不合适|不合身|不太合|尺码不对|尺寸不对|不适合|(doesn't|does not|didn't|don't) fit|"
                                r"wrong size|not the right size|fit", re.I)),
]


def reason_category(text: str) -> str:
    """The after-sales reason category of a turn ("other" when none is named)."""
    return next((name for name, pattern in REASON_CATEGORIES if pattern.search(text)), "other")
