"""Text normalisation shared by ASR output, NLU and TTS input (Chinese and English)."""

from __future__ import annotations

import re
from functools import lru_cache

CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")

_ZH_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
              "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_EN_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_DIGIT_ZH = "零一二三四五六七八九"
_DIGIT_ZH_ID = "零幺二三四五六七八九"  # 幺 for 1 when reading out numbers digit by digit, as call centers do


@lru_cache(maxsize=1)
def _t2s():
    try:
        import opencc

        return opencc.OpenCC("t2s")
    except Exception:  # opencc missing: keep text as is rather than fail the call
        return None


def to_simplified(text: str) -> str:
    conv = _t2s()
    return conv.convert(text) if conv is not None else text


def has_cjk(text: str) -> bool:
    return bool(CJK.search(text))


def guess_language(text: str, default: str = "en") -> str:
    """Language of a typed or transcribed text: zh if it holds Chinese characters."""
    if has_cjk(text):
        return "zh"
    if re.search(r"[A-Za-z]", text):
        return "en"
    return default


def spoken_digits_to_arabic(text: str) -> str:
    """'三八五一二零七四' -> '38512074'; 'three eight five' -> '385'. Runs of 3+ digits only,
    so that ordinary words (一下, 一件, 'one of them') are left alone."""

    def zh_run(m: re.Match) -> str:
        return "".join(_ZH_DIGITS[c] for c in m.group(0))

    text = re.sub(r"[零〇一幺二两三四五六七八九]{3,}", zh_run, text)
    words = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"

    def en_run(m: re.Match) -> str:
        return "".join(_EN_DIGITS[w.lower()] for w in re.findall(words, m.group(0), flags=re.I))

    return re.sub(rf"\b{words}(?:[\s,-]+{words}){{2,}}\b", en_run, text, flags=re.I)


def join_digit_groups(text: str) -> str:
    """'3851 2074', '3851-2074' or '2024, 1108' -> '38512074' (ASR groups long numbers, and a caller
    reading one out pauses: "2024... 1108", "2024. 1108", "3851? 2074", "3851。2074")."""
    prev = None
    while prev != text:
        prev = text
        text = re.sub(r"(\d)(?:[\s\-,，、。？]|\.{3}|…|[.?](?=\s)){1,3}(?=\d)", r"\1", text)
    return text


def digits_to_zh(digits: str, as_id: bool = True) -> str:
    table = _DIGIT_ZH_ID if as_id else _DIGIT_ZH
    return "".join(table[int(c)] if c.isdigit() else c for c in digits)


def mask_pii(text: str) -> str:
    """Mask phone numbers, e-mail addresses and long digit strings for logs and stored records."""
    text = re.sub(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)", r"\1****\2", text)  # CN mobile
    text = re.sub(r"(?<![\w.])([\w.+-])[\w.+-]*@([\w-]+\.[\w.-]+)", r"\1***@\2", text)
    text = re.sub(r"(?<!\d)(\+?\d[\d\s-]{7,}\d)(?!\d)", lambda m: _mask_digits(m.group(1)), text)
    return text


def _mask_digits(s: str) -> str:
    digits = [c for c in s if c.isdigit()]
    if len(digits) < 9:  # order numbers (8 digits) stay readable; phones and cards do not
        return s
    keep_tail = 4
    out, seen = [], 0
    total = len(digits)
    for c in s:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= 3 or seen > total - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def spoken_date(iso: str | None, lang: str) -> str:
    """'2026-11-18' -> '11月18日' / 'November 18' (the year is implied on the phone)."""
    if not iso:
        return ""
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", iso)
    if not m:
        return iso
    month, day = int(m.group(2)), int(m.group(3))
    return f"{month}月{day}日" if lang == "zh" else f"{_MONTHS[month - 1]} {day}"


def speakable_en(text: str) -> str:
    """Numbers as an English voice should read them on the phone: ids and codes digit by digit in
    groups of four ('55120963' -> '5 5 1 2, 0 9 6 3'; 'SF8912' -> 'S F, 8 9 1 2'); amounts stay."""

    def digits(run: str) -> str:
        return ", ".join(" ".join(run[i : i + 4]) for i in range(0, len(run), 4))

    text = re.sub(r"\b([A-Z]{1,3})(\d{5,})\b", lambda m: " ".join(m.group(1)) + ", " + digits(m.group(2)), text)
    # a run of 5+ digits that is not part of a decimal number
    return re.sub(r"(?<!\d)(?<!\d\.)\d{5,}(?!\.?\d)", lambda m: digits(m.group(0)), text)


# -- misheard Mandarin service words -------------------------------------------------------------
# Whisper on telephone audio writes a key service word as a near-homophone ("我的快避到哪里了",
# "电单号是…"), and which one depends even on the CPU's instruction set. The NLU reads a turn after
# these repairs, so that one misheard syllable does not change what the turn is about.
# The words whose mishearing changes the intent, as (initial, final, tone) of what the caller said:
_SERVICE_WORDS_ZH = {
    "快递": (("k", "uai", "4"), ("d", "i", "4")),
    "订单": (("d", "ing", "4"), ("d", "an", "1")),
    "运单": (("", "vn", "4"), ("d", "an", "1")),
    "物流": (("", "u", "4"), ("l", "iou", "2")),
    "发货": (("f", "a", "1"), ("h", "uo", "4")),
    "退货": (("t", "uei", "4"), ("h", "uo", "4")),
    "退款": (("t", "uei", "4"), ("k", "uan", "3")),
}
# Sounds that telephone-band audio blurs: stops by place of articulation, retroflex and flat
# sibilants, n/l/r, f/h; -n/-ng codas and the i- glide before a nasal.
_NEAR_INITIALS = [{"b", "d", "g"}, {"p", "t", "k"}, {"z", "zh", "j"}, {"c", "ch", "q"}, {"s", "sh", "x"},
                  {"n", "l", "r"}, {"f", "h"}]
_NEAR_FINALS = [{"an", "ang"}, {"en", "eng"}, {"in", "ing", "ian", "iang"}, {"uan", "uang"}]
# "X单号是<number>": whatever X was heard as ("简单号是55120963"), a long number (6+ digits, as
# order and tracking numbers are) introduced as a 单号 is an order number. Kept: the real kinds of 单号 (订单, 运单, 快递单, 物流单, 退货单, 工单, 售后单).
_NUMBER_NAMED_AS_DANHAO = re.compile(
    r"([\u4e00-\u9fff])单号(?=\s*(?:是|为|[:：])?\s*(?:(?:\d[\s\-]?){6}|[零〇一幺二两三四五六七八九]{6}))")
_REAL_DANHAO_PREFIX = set("订运递流货工后")


@lru_cache(maxsize=4096)
def _reading(char: str) -> tuple[str, str, str] | None:
    """(initial, final, tone) of a Chinese character's usual reading. Only the usual one: the
    recogniser wrote the character for that sound ("的" is de5, though "目的" reads it di4)."""
    from pypinyin import Style, pinyin
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    found = pinyin(char, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
    p = found[0][0] if found and found[0] else ""
    return (to_initials(p, strict=True), to_finals(p, strict=True), p[-1]) if p[-1:].isdigit() else None


def _near(a: str, b: str, classes: list[set[str]]) -> bool:
    return any(a in c and b in c for c in classes)


def _sounds_like(char: str, said: tuple[str, str, str]) -> bool:
    """`char` heard for the syllable `said`: the same tone, and either the same syllable or one of
    its initial and final (not both) swapped for one that telephone audio blurs with it."""
    heard = _reading(char)
    if heard is None or heard[2] != said[2]:
        return False
    (i, f, _), (initial, final, _) = heard, said
    return (i, f) == (initial, final) or (f == final and _near(i, initial, _NEAR_INITIALS)) \
        or (i == initial and _near(f, final, _NEAR_FINALS))


def repair_misheard_service_words(text: str) -> str:
    """'我的快避到哪里了' -> '我的快递到哪里了', '电单号是…' -> '订单号是…', '简单号是5512…' ->
    '订单号是5512…'. A two-character window becomes a service word when one character is the word's
    own and the other sounds like its syllable (_sounds_like); other text is left as it is."""
    if not has_cjk(text):
        return text
    chars = list(text)
    for word, syllables in _SERVICE_WORDS_ZH.items():
        for k in range(len(chars) - 1):
            pair = chars[k] + chars[k + 1]
            if pair == word or not (pair[0] == word[0] or pair[1] == word[1]):
                continue
            other = 1 if pair[0] == word[0] else 0
            if _sounds_like(pair[other], syllables[other]):
                chars[k : k + 2] = list(word)
    text = "".join(chars)
    return _NUMBER_NAMED_AS_DANHAO.sub(
        lambda m: m.group(0) if m.group(1) in _REAL_DANHAO_PREFIX else "订单号", text)
