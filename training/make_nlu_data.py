#!/usr/bin/env python3
"""Builds the NLU training and development sets from the templates in data/nlu_templates/.

Templates are split by position: every fourth template of each intent and language goes to the
dev set only, so dev sentences have shapes the classifier never saw. Each template is filled with
slot values (several spoken forms of numbers, catalog product names, sizes, colours...), then
roughened the way callers and ASR roughen text: fillers, missing punctuation, homophone errors,
mixed Chinese and English. The same seed gives the same rows, byte for byte.

    .venv/bin/python -m training.make_nlu_data      # writes training/data/nlu_train.jsonl, nlu_dev.jsonl
"""

from __future__ import annotations

import json
import random
import re
import tomllib

from voiceagent.dialog.slots import COLORS_EN, COLORS_ZH
from voiceagent.shop.demo import CATALOG
from voiceagent.shop.repository import match_product

from .nlu_data import TEMPLATES, split_path


def load_templates() -> dict[str, dict[str, list[str]]]:
    """templates[intent][lang]: the template files in name order (one file per writing round and
    intent group), each extending the lists of the ones before it. Order matters: it decides the
    train/dev split and the random fills."""
    templates: dict[str, dict[str, list[str]]] = {}
    for path in sorted(TEMPLATES.glob("*.toml")):
        for intent, by_lang in tomllib.loads(path.read_text(encoding="utf-8")).items():
            for lang, items in by_lang.items():
                templates.setdefault(intent, {}).setdefault(lang, []).extend(items)
    return templates


DIGITS_ZH = "零一二三四五六七八九"
DIGITS_EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# (catalog index, zh mentions, en mentions): the base line's SKU is P{idx:02d}0
PRODUCTS = [
    (0, ["轻薄羽绒服", "羽绒服"], ["lightweight down jacket", "down jacket", "puffer"]),
    (1, ["防风冲锋衣", "冲锋衣"], ["waterproof windbreaker jacket", "windbreaker"]),
    (2, ["碎花连衣裙", "碎花裙"], ["floral midi dress", "floral dress"]),
    (3, ["针织毛衣裙", "毛衣裙"], ["knit sweater dress", "sweater dress"]),
    (4, ["纯棉T恤", "T恤"], ["cotton T-shirt", "t-shirt"]),
    (5, ["羊绒毛衣", "羊绒衫"], ["cashmere sweater", "cashmere"]),
    (6, ["高腰牛仔裤", "牛仔裤"], ["high-rise jeans", "jeans"]),
    (7, ["缓震跑步鞋", "跑步鞋"], ["cushioned running shoes", "running shoes"]),
    (8, ["真皮短靴", "短靴"], ["leather ankle boots", "ankle boots"]),
    (9, ["通勤双肩包", "双肩包"], ["commuter backpack", "backpack"]),
    (10, ["破壁料理机", "料理机"], ["high-speed blender", "blender"]),
    (11, ["电热水壶", "热水壶"], ["electric kettle", "kettle"]),
    (12, ["保湿面霜", "面霜"], ["hydrating face cream", "face cream"]),
    (13, ["蓝牙降噪耳机", "蓝牙耳机"], ["noise-cancelling Bluetooth earbuds", "earbuds"]),
]
SIZES = {"zh": [("S", "S"), ("M", "M"), ("L", "L"), ("XL", "XL"), ("38", "38"), ("40", "40"), ("42", "42")],
         "en": [("small", "S"), ("medium", "M"), ("large", "L"), ("size 9", "9"), ("size 40", "40"), ("XL", "XL")]}
COLORS = {"zh": ["黑色", "白色", "红色", "藏青色", "米色", "灰色", "粉色"],
          "en": ["black", "white", "red", "navy", "beige", "grey", "pink"]}
QUANTITY = {"zh": [("两件", "2"), ("三件", "3"), ("2件", "2"), ("一件", "1")],
            "en": [("two pieces", "2"), ("3 items", "3"), ("two pairs", "2")]}
REASONS = {"zh": [("太大了", "too_big"), ("太小了", "too_small"), ("不合适", "does_not_fit"), ("有质量问题", "quality"),
                  ("破了", "damaged"), ("发错了", "wrong_item")],
           "en": [("too big", "too_big"), ("too small", "too_small"), ("damaged", "damaged"), ("defective", "damaged"),
                  ("the wrong item", "wrong_item")]}
ADDRESSES = ["上海市浦东新区世纪大道100号", "杭州市西湖区文三路", "北京市朝阳区建国路88号", "广州市天河区体育西路"]
AMOUNTS = ["199", "79", "459", "1200"]

HOMOPHONES_ZH = [("订单", "定单"), ("快递", "快地"), ("发货", "发过"), ("退货", "推货"), ("尺码", "尺马"), ("退款", "推款"),
                 ("物流", "无流"), ("客服", "客户"), ("包裹", "包过")]
MIXED_ZH = [("订单", "order"), ("快递", "快递package"), ("退款", "refund"), ("优惠券", "coupon"), ("尺码", "size"),
            ("退货", "return")]
FILLERS = {"zh": ["嗯，", "那个，", "就是，", "喂，", "呃，", "你好，"], "en": ["um, ", "uh, ", "so ", "hi, ", "yeah, ", "okay so "]}
ASR_EN = [("shipped", "chipped"), ("order", "Order"), ("return", "returned"), ("where is", "where's"), ("I want to", "I wanna")]


def spoken_number(rng: random.Random, digits: str, lang: str) -> str:
    form = rng.random()
    if form < 0.45:
        return digits
    if form < 0.65:
        return digits[:4] + " " + digits[4:]
    if lang == "zh":
        return "".join(DIGITS_ZH[int(c)] for c in digits)
    return " ".join(DIGITS_EN[int(c)] for c in digits)


# Catalog items and colours the template writers named in plain words instead of a slot marker
# ("这件羽绒服…"): they are slots all the same, so the gold annotation names them too, by the same
# catalog matching the shop uses, over the demo catalog's base lines.
CATALOG_ROWS = [(f"P{idx:02d}0", keywords, zh, en) for idx, (_, zh, en, keywords, *_rest) in enumerate(CATALOG)]
COLOR_WORDS = [*COLORS_ZH, *COLORS_EN]


def literal_product(text: str) -> str | None:
    return match_product(text, CATALOG_ROWS)


def literal_color(text: str) -> str | None:
    """The first colour word written out in full (the gold annotation takes no "黑的" shorthand)."""
    lowered = text.lower()
    found = [(m.start(), w) for w in COLOR_WORDS for m in re.finditer(rf"(?<![a-z]){w}(?![a-z])" if w.isascii() else w, lowered)]
    return min(found)[1] if found else None


def fill(template: str, lang: str, rng: random.Random) -> tuple[str, dict]:
    slots: dict[str, str] = {}
    if "{product}" not in template and (sku := literal_product(template)):
        slots["product"] = sku
    if "{color}" not in template and (color := literal_color(template)):
        slots["color"] = color
    text = template
    if "{order_id}" in text:
        value = str(rng.randint(10_000_000, 99_999_999))
        slots["order_id"] = value
        text = text.replace("{order_id}", spoken_number(rng, value, lang))
    if "{phone}" in text:
        value = f"1{rng.choice('3578')}{rng.randint(100_000_000, 999_999_999)}"
        slots["phone"] = value
        text = text.replace("{phone}", value if rng.random() < 0.6 else f"{value[:3]} {value[3:7]} {value[7:]}")
    if "{tracking_no}" in text:
        value = rng.choice(["SF", "YT", "ZT", "JD"]) + str(rng.randint(10**11, 10**12 - 1))
        slots["tracking_no"] = value
        text = text.replace("{tracking_no}", value if rng.random() < 0.7 else value.lower())
    if "{product}" in text:
        idx, zh, en = rng.choice(PRODUCTS)
        slots["product"] = f"P{idx:02d}0"
        text = text.replace("{product}", rng.choice(zh if lang == "zh" else en))
    if "{size}" in text:
        said, value = rng.choice(SIZES[lang])
        slots["size"] = value
        text = text.replace("{size}", said)
    if "{color}" in text:
        value = rng.choice(COLORS[lang])
        slots["color"] = value
        text = text.replace("{color}", value)
    if "{quantity}" in text:
        said, value = rng.choice(QUANTITY[lang])
        slots["quantity"] = value
        text = text.replace("{quantity}", said)
    if "{reason}" in text:
        said, value = rng.choice(REASONS[lang])
        slots["reason"] = value
        text = text.replace("{reason}", said)
    if "{address}" in text:
        value = rng.choice(ADDRESSES)
        slots["address"] = value
        text = text.replace("{address}", value)
    if "{amount}" in text:
        value = rng.choice(AMOUNTS)
        slots["amount"] = value
        text = text.replace("{amount}", value)
    return text, slots


def roughen(text: str, lang: str, rng: random.Random) -> tuple[str, str]:
    """Caller and ASR noise. Returns the text and what was done (for the record)."""
    done = []
    if rng.random() < 0.25:
        text = rng.choice(FILLERS[lang]) + text
        done.append("filler")
    if lang == "zh":
        if rng.random() < 0.3:
            a, b = rng.choice(HOMOPHONES_ZH)
            if a in text:
                text = text.replace(a, b, 1)
                done.append("homophone")
        if rng.random() < 0.15:
            a, b = rng.choice(MIXED_ZH)
            if a in text:
                text = text.replace(a, b, 1)
                done.append("mixed")
        if rng.random() < 0.5:
            text += rng.choice(["。", "？", "", "啊", "呢"])
    else:
        if rng.random() < 0.3:
            a, b = rng.choice(ASR_EN)
            if a in text:
                text = text.replace(a, b, 1)
                done.append("asr")
        text = text[0].upper() + text[1:] if rng.random() < 0.5 else text
        if rng.random() < 0.5:
            text += rng.choice([".", "?", ""])
    return text, "+".join(done)


def build(seed: int = 13, train_fills: int = 5, dev_fills: int = 3) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train, dev = [], []
    for intent, by_lang in load_templates().items():
        for lang, templates in by_lang.items():
            for i, template in enumerate(templates):
                split, n = (dev, dev_fills) if i % 4 == 3 else (train, train_fills)
                seen = set()
                for _ in range(n):
                    text, slots = fill(template, lang, rng)
                    text, noise = roughen(text, lang, rng)
                    if text in seen:
                        continue
                    seen.add(text)
                    split.append({"text": text, "lang": lang, "intent": intent, "slots": slots,
                                  "template": f"{intent}/{lang}/{i}", "noise": noise})
    return train, dev


def as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    train, dev = build()
    for name, rows in (("train", train), ("dev", dev)):
        split_path(name).write_text(as_jsonl(rows), encoding="utf-8")
        print(f"{name}: {len(rows)} utterances")


if __name__ == "__main__":
    main()
