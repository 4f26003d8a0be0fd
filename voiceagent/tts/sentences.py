"""Cutting a reply into the pieces a voice synthesises one at a time (sentences, and clauses of a
long sentence), so that the first audio is ready as early as possible."""

from __future__ import annotations

import re
from typing import Iterator

from .voice import SpeechChunk, Voice


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
