"""Numbers on a phone line, as Chinese call centers take them: after one spoken try that gave no
usable number (no digits heard, too few or too many, an order not found), the caller is asked to
key it in, ending with "#" (engine/dtmf.py makes the keys a turn, read like words); and an order
number the caller gave is said back digit by digit in groups before an action is taken on it.

Only a call can carry keys (`DialogState.keypad`, set by the call session: SIP, Asterisk and the
page's keypad all send DTMF); a chat keeps asking in words."""

from __future__ import annotations

import re

from ...textnorm import digits_to_zh
from .. import templates
from ..slots import normalise_numbers
from .finishing import sentence_key
from .patterns import BARE_VALUE, CORRECTION
from .state import DialogState

# the keypad offered in the agent's last reply (any language, any of the templates that offer it)
_OFFERED = re.compile(r"按键上|井号键|keypad|press pound", re.I)
_NUMBER_SLOTS = {"order_id", "tracking_no", "phone"}


def offered(state: DialogState) -> bool:
    """The agent's last reply offered the keypad (a second offer in a row is no progress)."""
    last = next((said for role, said in reversed(state.history) if role == "agent"), "")
    return bool(_OFFERED.search(last))


def number_attempt(text: str, slots: dict) -> bool:
    """The turn tries to give a number but gives none usable: three or more digits heard (spoken or
    written, in one run: "三八五一二零七", "three eight five one") with no order, tracking or phone
    number among them, or nothing but the words around a number ("订单号是…", "it's"), its digits lost."""
    if _NUMBER_SLOTS & slots.keys():
        return False
    if re.search(r"\d{3,}", normalise_numbers(text)):  # one run ("37, not 39" is two sizes, not a try)
        return True
    # the words around a number with nothing left: only when they name one ("订单号是…"); a bare
    # "嗯", "不是" or "sorry?" is the caller looking it up or asking, not a number lost
    if not re.search(r"订单|单号|号码|号是|number|order|it'?s|is", text, re.I):
        return False
    return bool(text.strip()) and not BARE_VALUE.sub("", CORRECTION.sub("", text))


def ask_order_id(state: DialogState, lang: str, failed: bool, words_key: str = "ask_order_id") -> tuple[str, bool]:
    """The order number asked for: after a failed spoken try on a line with keys, by the keypad.
    Returns the text and whether the turn is progress (the first offer moves the call on to keys;
    the next ones are failures, counted towards a person)."""
    if failed and state.keypad:
        return templates.render(lang, "keypad_order_id"), not offered(state)
    return templates.render(lang, words_key), False


def order_not_found(state: DialogState, lang: str, number: str) -> tuple[str, bool]:
    """A number that names no order: said back, and the number asked again (by the keypad on a call)."""
    if state.keypad:
        return templates.render(lang, "order_not_found_keypad", order_id=number), not offered(state)
    return templates.render(lang, "order_not_found", order_id=number), False


def ask_last4(state: DialogState, lang: str) -> tuple[str, bool]:
    """The phone's last four digits asked for; asked again right after (the spoken answer was not
    four digits), by the keypad on a call."""
    last = next((said for role, said in reversed(state.history) if role == "agent"), "")
    if state.keypad and asks_last4(last):
        return templates.render(lang, "keypad_last4"), not offered(state)
    return templates.render(lang, "ask_last4"), False


def asks_last4(said: str) -> bool:
    """An agent's reply that asked for the phone's last four digits (first, again, or by the keypad)."""
    return any(templates.render(lang, key) in said for lang in ("zh", "en")
               for key in ("ask_last4", "keypad_last4", "last4_wrong", "last4_wrong_keypad"))


def grouped(order_id: str, lang: str) -> str:
    """An order number as it is said back: digit by digit in groups of four ("三八五幺，二零七四"; in
    English the digits stay one run, which the voice reads "3 8 5 1, 2 0 7 4": textnorm.speakable_en)."""
    if lang != "zh":
        return order_id
    return "，".join(digits_to_zh(order_id[i:i + 4]) for i in range(0, len(order_id), 4))


def said_by_caller(state: DialogState, order_id: str) -> bool:
    """The caller gave this order number (said or keyed), rather than the agent finding it."""
    return any(order_id in normalise_numbers(said) for role, said in state.history if role == "caller")


def read_back_lead(state: DialogState, lang: str, order_id: str) -> str:
    """Before an action on a call, the order number the caller gave, said back in groups: a misheard
    digit is caught at the "对吗？" already asked, with no turn added. "" otherwise."""
    if not state.keypad or not said_by_caller(state, order_id):
        return ""
    lead = templates.render(lang, "order_said_back", digits=grouped(order_id, lang))
    return "" if sentence_key(lead) in state.said else lead  # once a call: a read-back said again has it
