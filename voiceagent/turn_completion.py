"""End of turn: how long a pause to wait before the caller's turn is over.

A fixed silence window either cuts callers off while they read out an order number ("20241..."
pause "108") or makes every finished question wait. The words decoded so far say which case this
is: a finished sentence ends on a short pause; a trailing filler or conjunction ("嗯...", "and,
um"), a number cue with no number yet, or a number read half-way waits longer; anything else
gets the ordinary window. The end-of-turn model (turn_end.py), weighing the same kinds of
evidence and the voice, chooses when configured (the default); the rules here are the fallback.
"""

from __future__ import annotations

import re
from enum import Enum

import numpy as np

from .config import VadConfig
from .turn_end import load_model


class Completion(Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"


# Backchannels: the caller acknowledging, not taking the turn ("嗯", "ok", "对").
_BACKCHANNEL = re.compile(
    r"^(?:嗯+|恩+|哦+|噢+|喔+|啊+|呃+|额+|对+|是+|好+|行|可以|没错|明白|知道了|好的|对的|是的|嗯嗯|对对|好好|"
    r"ok(?:ay)?|yeah|yep|yes|yup|right|sure|uh[- ]?huh|mm+(?:[- ]?hmm+)?|hmm+|i see|got it|alright|all right)$",
    re.I,
)
_FILLER_END_ZH = re.compile(r"(?:嗯+|呃+|额+|那个|这个|就是|然后|还有|而且|但是|因为|所以|或者|还是|和|跟|是|的话|我想|我要|请问)$")
_FILLER_END_EN = re.compile(
    r"\b(?:um+|uh+|er+|erm|hmm+|and|but|or|so|because|the|a|an|my|your|to|of|for|with|is|was|it's|is it|like|"
    r"i mean|you know|i'd like to|i want to|i need to|could you|can you|about|number|is uh)$",
    re.I,
)
_NUMBER_CUE = re.compile(r"(?:订单号|单号|订单|号码|手机号|电话|尾号|编号|是|order(?: number)?|number|tracking|phone|it's|is)\s*$", re.I)
_DIGITS_END = re.compile(r"(\d[\d\s\-]*)$")
_CUE_THEN_DIGITS = re.compile(r"(?:订单号|单号|号码|手机号|电话|编号|尾号|order number|number|tracking|phone)\D{0,8}$", re.I)
_SENTENCE_END = re.compile(r"[。！？!?]$|(?<![\d])\.$|[吗呢吧嘛]$")
_TRAILING = re.compile(r"[\s,，、;；:：\"'”’)）]+$")

# Identifiers callers read out (orders here are 8 digits; phones 11); fewer means they are not done.
FULL_NUMBER_DIGITS = 8


_GREETING = re.compile(r"^(?:喂+|您好|你好|哈喽|嗨|hello|hi|hey|hiya|good (?:morning|afternoon|evening)|yes hello|"
                       r"喂你好|喂您好|你好你好|hello hello|hi there)$", re.I)


def is_greeting(text: str) -> bool:
    """The turn is only a greeting ("喂？", "Hello,")."""
    words = re.sub(r"[\s,，。.!！?？~…、]+", " ", text).strip().lower()
    return bool(words) and bool(_GREETING.match(words.replace(" ", "") if re.search(r"[\u4e00-\u9fff]", words) else words))


def is_backchannel(text: str) -> bool:
    words = re.sub(r"[\s,，。.!！?？~…、]+", " ", text).strip().lower()
    return bool(words) and all(_BACKCHANNEL.match(w) for w in _split_backchannel(words))


# A short utterance over the agent that stops, corrects or asks something takes the turn ("不对",
# "等一下", "wait", "what?"); anything else that short (a backchannel the recogniser garbled, a
# cough) does not: Whisper makes little of one or two isolated syllables.
_INTERRUPTION_CUE = re.compile(
    r"不|别|等|停|错|喂|什么|怎么|为什么|多少|哪|吗|呢|人工|转|退|换|投诉|[?？]|"
    r"\b(?:no|nope|not|don't|wait|stop|hold|what|why|how|where|when|which|who|hello|hey|excuse|sorry|but|"
    r"actually|human|agent|person|operator|cancel|help|again|repeat)\b",
    re.I,
)


def is_interruption(text: str) -> bool:
    """A short utterance over the agent that should stop it (see _INTERRUPTION_CUE)."""
    return bool(text.strip()) and not is_backchannel(text) and bool(_INTERRUPTION_CUE.search(text))


def _split_backchannel(words: str) -> list[str]:
    # "ok ok", "嗯 对" and "好的好的" are still backchannels; whole phrases ("uh huh", "i see") too
    if _BACKCHANNEL.match(words):
        return [words]
    return [w for w in re.split(r"\s+", words) if w]


def completion(text: str, expecting_number: bool = False) -> Completion:
    """Does `text` (the turn so far) read as finished?

    `expecting_number`: the agent just asked for an order number, so a short run of digits is the
    caller still reading it out."""
    ellipsis = bool(re.search(r"(?:\.\.\.|…|——|--)\s*$", text))
    stripped = re.sub(r"(?:\.\.\.|…|——|--)+\s*$", "", text.strip())
    stripped = _TRAILING.sub("", stripped)
    if not stripped:
        return Completion.UNKNOWN
    if is_backchannel(stripped):
        return Completion.COMPLETE
    bare = re.sub(r"[。！？!?.,，]+$", "", stripped)
    digits = _DIGITS_END.search(bare)
    if digits:
        count = sum(c.isdigit() for c in digits.group(1))
        before = bare[: digits.start()]
        reading_number = expecting_number or _CUE_THEN_DIGITS.search(before) or count >= 3
        if reading_number and count < FULL_NUMBER_DIGITS:
            return Completion.INCOMPLETE
        if count >= FULL_NUMBER_DIGITS:
            return Completion.COMPLETE
    if _FILLER_END_ZH.search(bare) or _FILLER_END_EN.search(bare) or _NUMBER_CUE.search(bare):
        return Completion.INCOMPLETE
    if ellipsis:
        return Completion.INCOMPLETE
    if _SENTENCE_END.search(stripped):
        return Completion.COMPLETE
    return Completion.UNKNOWN


def silence_window_ms(text: str, config: VadConfig, expecting_number: bool = False,
                      audio: np.ndarray | None = None, language: str = "") -> int:
    """How long a pause ends this turn. With `config.turn_end_model` (turn_end.py): P(finished) from the
    words and the voice of `audio` (the turn's speech, 16 kHz); at or above the model's `high` the
    complete window, at or below its `low` the incomplete one, in between a window as far along as P
    is. Without a model (`turn_end_model = ""`) the word rules above choose."""
    if config.turn_end_model:
        if is_greeting(text):
            # "喂？" / "Hello," is finished as words, but callers mostly go on to say why they called
            # after a breath: answered at once it is talked over; one who waits is greeted soon
            return config.unsure_silence_ms
        model = load_model(config.turn_end_model)
        p = model.probability(text, language, audio, expecting_number)
        if p >= model.high:
            return config.complete_silence_ms
        if p <= model.low:
            return config.incomplete_silence_ms
        share = (model.high - p) / (model.high - model.low)
        return round(config.complete_silence_ms + share * (config.incomplete_silence_ms - config.complete_silence_ms))
    verdict = completion(text, expecting_number)
    if verdict is Completion.COMPLETE:
        return config.complete_silence_ms
    if verdict is Completion.INCOMPLETE:
        return config.incomplete_silence_ms
    return config.unsure_silence_ms
