"""Addresses as callers say them: a Chinese postal address ("改到上海市浦东新区张江路88号") or an English
street address ("5 Main Street, Springfield", "room 1203, 7 nanjing west road jing'an"), found in a
turn or taken as the answer to "what's the new address?"."""

from __future__ import annotations

import re

ADDRESS_WORDS = re.compile(r"地址|寄到|送到|发到|收货|\baddress\b|ship (it )?to|deliver(ed)? to|send it to", re.I)
# An address spoken: a Chinese one (…路/街/号…) or an English street address.
EN_ADDRESS = re.compile(r"(?:\b(?:room|rm|apt|apartment|unit|flat|suite)\s*#?\w{1,6},?\s*)?\b\d{1,5}\s+[A-Za-z][A-Za-z.'-]{0,30}(?:\s+[A-Za-z][A-Za-z.'-]{0,30}){0,3}?\s+(street|st|road|rd|"
                        r"avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|square|sq)\b\.?"
                        r"(?:,?\s*(?:apt|apartment|unit|suite|flat|#)\s*\w{1,6})?"
                        r"(?-i:(?:,?\s+[A-Z][A-Za-z'’-]{1,30}(?:\s+(?:[A-Z][A-Za-z'’-]{1,30}|an|de|la|of|on)){0,3}){0,3})", re.I)  # city: capitalised
# bounded: an unbounded run of Chinese characters backtracks for minutes on a long turn with no 路 in it
# Speech-to-text often writes an address in lower case: the city words after the street, up to a word
# that is not part of an address
EN_CITY_LOWER = re.compile(r"(?:,?\s+(?!(?:please|thanks|thank|and|instead|for|by|so|but|it|that|thats|that's|is|asap|now|"
                           r"today|tomorrow|ok|okay|cheers|thx|ty|instead)\b)[a-z][a-z'’-]{1,30}){1,3}")
ZH_ADDRESS = re.compile(r"[\u4e00-\u9fff]{2,12}[\u4e00-\u9fff\d\-]{0,24}?(?:路|街|道|巷|村|小区|大厦|广场|弄)"
                        r"[\u4e00-\u9fff\d\-号栋室楼单元座]{0,20}")
LONGEST_ADDRESS = 600  # characters: a longer turn is not read as an address
ADDRESS_LEAD = re.compile(r"^(?:\W|嗯|呃|那个|就是|新的|新|收货|地址|是|改到|改成|改为|换成|寄到|送到|发到|帮我|麻烦|请)+|"
                          r"^(?:(?:please\s+)?(?:change|update|send|ship|deliver)\s+(?:it\s+)?to|the new address is|"
                          r"new address is|my new address is|it's|it is|address is|to)\s+", re.I)


def spoken_address(text: str) -> str | None:
    """The address in the turn ("改到上海市浦东新区张江路88号" -> "上海市浦东新区张江路88号")."""
    if len(text) > LONGEST_ADDRESS:
        return None
    m = EN_ADDRESS.search(text)
    if m:
        found = m.group(0).strip(" .,")
        if text == text.lower():  # all lower case: the city is not capitalised either
            city = EN_CITY_LOWER.match(text, m.end())
            if city:
                found = (found + city.group(0)).strip(" .,")
        return found
    m = ZH_ADDRESS.search(text)
    if m:
        return ADDRESS_LEAD.sub("", m.group(0)).strip() or None
    return None


def answer_as_address(text: str) -> str | None:
    """A turn given as the address the agent asked for: the spoken address, else the words cleaned."""
    found = spoken_address(text)
    if found:
        return found
    if len(text) > LONGEST_ADDRESS:
        return None
    cleaned = ADDRESS_LEAD.sub("", text.strip()).strip(" 。.,，!！")
    if re.fullmatch(r"[\W\d_]*(手机号?|电话|号码|phone|number|my|is|it's)*[\W\d_]*", cleaned, re.I):
        return None  # a phone or order number, not an address
    return cleaned if len(cleaned) >= 6 and re.search(r"\d", cleaned) else None
