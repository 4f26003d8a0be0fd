"""The caller's language and Chinese dialect, per turn and steadied across the call.

Language: Whisper's detection per turn. One short turn ("嗯", "OK") is weak evidence, so the call's
language changes only on strong evidence: a confident detection on enough speech, or two turns in
a row. Dialect: Mandarin, Cantonese or another Chinese variety from what the recogniser wrote
(words and particles only Cantonese uses, or Wu, Min and Hakka ones) and, where the recogniser
detects Cantonese as a language of its own (Whisper large-v3's "yue"), from that probability.
The call's dialect likewise needs two turns, or one turn with unmistakable markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Written/spoken Cantonese that Mandarin does not use.
_CANTONESE_STRONG = re.compile(r"嘅|唔|咗|冇|佢|哋|喺|嚟|㗎|嗰|乜嘢|咩嘢|點解|点解|邊度|边度|而家|宜家|"
                               r"嘢|噉|咁樣|咁样|畀|俾我|睇|攞|揾|搵|瞓|諗|谂|啱|嘞|喎|囉|啩|咋|吖")
_CANTONESE_WEAK = re.compile(r"係|系咪|幾時|几时|咁|啲|咪|嚟|呢度|嗰度|乜|咩|食咗|好似")
# Wu (Shanghainese), Min (Hokkien/Teochew) and Hakka words a recogniser writes in characters.
_OTHER_CHINESE = re.compile(r"阿拉|侬|伊拉|勿要|覅|啥个|个辰光|交关|晓得伐|伐\b|"  # Wu
                            r"汝|恁|阮|袂|毋|佮|呣|囝|厝|食饭未|"  # Min
                            r"涯|佢兜|冇得|麼个|么个")  # Hakka
YUE_PROBABILITY = 0.3  # a detector that knows Cantonese: this much says Cantonese
SWITCH_PROBABILITY = 0.9  # one turn detected this surely (on enough speech) switches the language
SWITCH_MIN_S = 1.5


def detect_dialect(text: str, language: str, language_scores: dict[str, float] | None = None) -> str | None:
    """One turn's dialect: "mandarin", "cantonese", "other_chinese", or None outside Chinese."""
    scores = language_scores or {}
    if language not in ("zh", "yue") and scores.get("yue", 0.0) < YUE_PROBABILITY:
        return None
    if language == "yue" or scores.get("yue", 0.0) >= YUE_PROBABILITY:
        return "cantonese"
    strong = len(_CANTONESE_STRONG.findall(text))
    weak = len(_CANTONESE_WEAK.findall(text))
    if strong or weak >= 2:
        return "cantonese"
    if _OTHER_CHINESE.search(text):
        return "other_chinese"
    return "mandarin"


def dialect_markers(text: str) -> int:
    """How many unmistakable non-Mandarin markers a turn has (one turn with two is enough)."""
    return len(_CANTONESE_STRONG.findall(text)) + len(_OTHER_CHINESE.findall(text))


@dataclass
class LanguageTracker:
    """The call's steady language and dialect, from turn after turn of evidence."""

    language: str | None = None
    dialect: str | None = None
    history: list[tuple[str, float]] = field(default_factory=list)  # (detected language, probability) per turn
    dialects: list[str] = field(default_factory=list)  # per Chinese turn

    def observe_language(self, language: str, probability: float, speech_s: float) -> str | None:
        """A turn's detection; returns the call's language after it (None while nothing is sure)."""
        if not language:
            return self.language
        previous = self.history[-1] if self.history else None
        self.history.append((language, probability))
        if self.language is None:
            if probability >= 0.7:
                self.language = language
        elif language != self.language:
            sure = probability >= SWITCH_PROBABILITY and speech_s >= SWITCH_MIN_S
            again = previous is not None and previous[0] == language and previous[1] >= 0.7 and probability >= 0.7
            if sure or again:
                self.language = language
        return self.language

    def observe_dialect(self, dialect: str | None, text: str) -> str | None:
        """A Chinese turn's dialect; returns the call's dialect after it."""
        if dialect is None:
            return self.dialect
        self.dialects.append(dialect)
        last_two = self.dialects[-2:]
        if dialect != "mandarin" and (dialect_markers(text) >= 2 or last_two == [dialect, dialect]):
            self.dialect = dialect
        elif self.dialect is None or (dialect == "mandarin" and last_two == ["mandarin", "mandarin"]):
            self.dialect = "mandarin" if dialect != "mandarin" else dialect
        return self.dialect
