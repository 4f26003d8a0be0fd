"""The size and colour a caller wants, as they say it: "S码小了，我想换M" -> M, "没有米色啊，那就白色" ->
white, "make that a forty three" -> 43, "swap it for a large" -> L, "三个X" -> XXXL. The values the
turn names after its last asking word win; else the last ones named."""

from __future__ import annotations

import re

from ..slots import COLORS_ZH, _color, _size

TARGET_LEAD = re.compile(r"换成|改成|改为|换个|换一|那就|就要|就换|就改|我要|想要|整个|给我|换|要|就|instead|rather|\bfor\b|"
                         r"\bto\b|\binto\b|\bmake (it|that|them|those)\b|\bthinking\b|"
                         r"\bthen\b|\bmake it\b|\bgo with\b|\bi'?ll take\b|\bwant\b|\bneed\b", re.I)


_EN_NUMBER = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
              "seven": 7, "eight": 8, "nine": 9}
_SPOKEN_SIZE = re.compile(r"\b(twenty|thirty|forty|fifty)[\s-]?(one|two|three|four|five|six|seven|eight|nine)?\b", re.I)
_WORD_SIZE = re.compile(r"(?:^\W*|\b(?:a|an|the|in|to|for|size|thinking|want|need|take|get|yes|yeah|ok|okay)\W+)"
                        r"(extra[\s-]small|x-?small|small|medium|large|extra[\s-]large|x-?large)\b", re.I)
_X_COUNT = re.compile(r"([两二三四2-4])\s*个\s*[Xx]\s*[Ll]?")


def _sizes_spelled(text: str) -> str:
    """Sizes as callers say them, written as the shop lists them: "forty three" -> 43, "a large" -> L,
    "三个X" -> XXXL."""
    text = _SPOKEN_SIZE.sub(lambda m: "size " + str(_EN_NUMBER[m.group(1).lower()]
                                                    + _EN_NUMBER.get((m.group(2) or "").lower(), 0)), text)
    words = {"extra small": "XS", "x-small": "XS", "xsmall": "XS", "small": "S", "medium": "M", "large": "L",
             "extra large": "XL", "x-large": "XL", "xlarge": "XL"}
    text = _WORD_SIZE.sub(lambda m: m.group(0)[: -len(m.group(1))] + words[re.sub(r"[\s-]+", " ", m.group(1).lower())
                                                                       .replace("x small", "x-small").replace("x large", "x-large")]
                          + "码", text)
    return _X_COUNT.sub(lambda m: "X" * {"两": 2, "二": 2, "三": 3, "四": 4}.get(m.group(1), int(m.group(1)) if
                                                                            m.group(1).isdigit() else 2) + "L", text)


def wanted(text: str) -> tuple[str | None, str | None]:
    """The size and colour the caller wants: those after the last word that asks for something
    ("S码小了，我想换M" -> M; "没有米色啊，那就白色" -> white), else the last ones named."""
    text = _sizes_spelled(text)
    cues = list(TARGET_LEAD.finditer(text))
    tails = [text[m.end():] for m in reversed(cues)]
    # each of size and colour from the last asking word that has one after it ("换成30码的 要黑色": 30, black)
    size = next((found for tail in tails if (found := _size(tail))), None) if cues else None
    colour = next((found for tail in tails if (found := _color(tail))), None) if cues else None
    if size or colour:
        return size, colour and COLORS_ZH.get(colour, colour)
    return _last(text, _size), (lambda c: c and COLORS_ZH.get(c, c))(_last(text, _color))


# Where a size or a colour can begin, besides the start of a word in Latin letters or digits: the
# Chinese characters that start a size, a colour or a word _size needs around one (码, 穿, 拿...).
# A suffix that starts anywhere else finds nothing its own suffix does not (see _last).
_CJK_STARTS = frozenset("码号拍穿选买要换改没拿" + "".join(zh[0] for zh in COLORS_ZH))


def _ascii_word_char(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _last(text: str, find) -> str | None:
    """The last value `find` sees in the text (it returns the first of a string): the suffixes are
    tried from the end, from the starts of Latin words and the characters in _CJK_STARTS only (one
    starting on any other character would only find what the suffix after it finds), so a long turn
    with no size in it costs one pass over it, not one per character."""
    for i in range(len(text) - 1, -1, -1):
        if i > 0 and _ascii_word_char(text[i - 1]):
            continue  # inside a word: the "L" of "XL"
        if not (_ascii_word_char(text[i]) or text[i] in _CJK_STARTS):
            continue
        found = find(text[i:])
        if found is not None:
            return found
    return None
