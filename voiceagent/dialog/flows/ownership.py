"""Proof of owning an order, before its details are told to a caller not known to own it.

A caller is known by the caller ID of their call or by an identity the shop signed for a chat
(`DialogState.customer_id`). Anyone else who names an order number or a tracking number is asked
for the last four digits of the phone number on the order's account; the question they asked is
answered once the digits match (DialogEngine replays it). Wrong digits are refused, and after
`MAX_TRIES` wrong answers in a conversation no more are taken. Wrong answers are also counted
per order across conversations (`ORDER_MAX_TRIES` in `ORDER_WINDOW_S`): a new chat session is a
new conversation, and four digits are only 10 000 guesses."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

from ...shop import Order
from .. import templates
from . import keypad
from .base import FlowResult, StateUpdate, Turn
from .state import DialogState, OwnershipProof

MAX_TRIES = 3
ORDER_MAX_TRIES = 5  # wrong answers for one order, whoever gives them, before it is locked ...
ORDER_WINDOW_S = 24 * 3600  # ... for this long after the last one
_MAX_ORDERS = 100_000  # orders being guessed at, remembered (the oldest forgotten beyond)


class OrderGuesses:
    """Wrong last-four answers per order, across every conversation of the process."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._wrong: OrderedDict[str, list[float]] = OrderedDict()

    def wrong(self, order_id: str) -> int:
        """One more wrong answer for the order; how many in the window."""
        now = self._clock()
        with self._lock:
            times = [t for t in self._wrong.pop(order_id, []) if now - t < ORDER_WINDOW_S] + [now]
            self._wrong[order_id] = times
            while len(self._wrong) > _MAX_ORDERS:
                self._wrong.popitem(last=False)
            return len(times)

    def locked(self, order_id: str) -> bool:
        now = self._clock()
        with self._lock:
            return sum(now - t < ORDER_WINDOW_S for t in self._wrong.get(order_id, [])) >= ORDER_MAX_TRIES


GUESSES = OrderGuesses()

_ZH_DIGITS = str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")
_ZH_NUMBER = re.compile(r"[零〇一二三四五六七八九幺两]{4,}")


def trusted(state: DialogState, customer_id: str) -> bool:
    return customer_id == state.customer_id or customer_id in state.verified_customers


def unproven_order(turn: Turn) -> Order | None:
    """The order on the table (named this turn, held by the conversation or its task) whose owner this
    caller has not proven to be; None when there is none. An identified caller is not asked: the
    flows refuse another customer's order to them ("order_not_yours")."""
    state = turn.state
    if state.customer_id is not None:
        return None
    shop, said = turn.tools.shop, turn.understanding.slots
    task_slots = state.task.slots if state.task is not None else {}
    order_ids = dict.fromkeys(x for x in (said.get("order_id"), turn.slots.get("order_id"), task_slots.get("order_id")) if x)
    orders = [shop.order(x) for x in order_ids]
    orders += [shop.order_by_tracking(x) for x in dict.fromkeys(
        x for x in (said.get("tracking_no"), turn.slots.get("tracking_no")) if x)]
    return next((o for o in orders if o is not None and not trusted(state, o.customer_id)), None)


def ask_proof(turn: Turn) -> FlowResult:
    """Ask for the last four digits, holding the turn to answer once they match; or, tries used up,
    say the details cannot be given and drop the order from the conversation."""
    order = unproven_order(turn)
    assert order is not None  # the route's condition
    if turn.state.proof_failures >= MAX_TRIES or GUESSES.locked(order.order_id):
        return FlowResult(templates.render(turn.language, "last4_locked"), state=forget_order(turn.state))
    text, _ = keypad.ask_last4(turn.state, turn.language)  # asked again right after, on a call: by the keypad
    return FlowResult(text, progress=True, state=StateUpdate(
        proof=OwnershipProof(order.customer_id, order.order_id, held_question(turn.state, turn.text))))


def held_question(state: DialogState, text: str) -> str:
    """The question to answer once the digits match: this turn's, unless it only answered the digits
    question badly ("五六七", "我不知道"): then the caller's turn that was first asked for them."""
    turns = state.history[:-1] if state.history and state.history[-1] == ("caller", text) else list(state.history)
    held = text
    while len(turns) >= 2 and turns[-1][0] == "agent" and turns[-2][0] == "caller" and keypad.asks_last4(turns[-1][1]):
        if _names_order(held):
            break  # a question of its own ("不对，是55120963"), not a bad answer to the digits question
        held, turns = turns[-2][1], turns[:-2]
    return held


def _names_order(text: str) -> bool:
    """The turn names an order (a number of six digits or more, in figures or Chinese numerals)."""
    return bool(re.search(r"\d{6,}", re.sub(r"(?<=\d)[ -](?=\d)", "", text.translate(_ZH_DIGITS))))


def forget_order(state: DialogState) -> StateUpdate:
    """The conversation let go of the unproven order: its number, its tracking number, its task."""
    holds_task = state.task is not None and "order_id" in state.task.slots
    return StateUpdate(slots={"order_id": None, "tracking_no": None}, pending_intent=None, awaiting=None, proof=None,
                       **({"task": None} if holds_task else {}))


def digits_given(text: str) -> str | None:
    """The digits a caller answers "the last four digits?" with: a group of four, or a whole phone
    number (its last four are compared). None: the turn is not such an answer."""
    if not re.search(r"\d", text) and (spoken := _ZH_NUMBER.search(text)):
        text = spoken.group(0).translate(_ZH_DIGITS)
    groups = re.findall(r"\d+", re.sub(r"(?<=\d)[ -](?=\d)", "", text))
    # four digits, or a whole phone number (an eight-digit order number is not an answer)
    fitting = [g for g in groups if len(g) == 4 or 10 <= len(g) <= 15]
    if len(groups) != 1 or len(fitting) != 1 or len(re.sub(r"[\W\d_]+", "", text)) > 24:
        return None  # a sentence with a number in it is a new turn, not the answer
    return fitting[0][-4:]


def matches(digits: str, phone: str) -> bool:
    phone_digits = re.sub(r"\D", "", phone or "")
    return len(phone_digits) >= 4 and phone_digits[-4:] == digits
