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


# The first piece of a long English sentence is what the caller waits for: piper takes about as long
# as the piece is to say, so a clause of more than FIRST_MAX_WORDS words is cut after three to eight
# of them, where a speaker pauses anyway: at a comma, even after one word ("Sure, | ..."), or before
# a joining word ("... running shoes | for size 39"); never after an article or preposition, never
# before a number (piper blurs an utterance's first digit). Only a very long clause with no such
# place is cut after six words or fewer anyway.
# A digit counts as a word: it takes as long to say.
FIRST_MAX_WORDS = 9
_FIRST_WORDS = (3, 8)  # the first piece's words when it is cut, fewest and most
_FIRST_FALLBACK = (12, 6)  # a clause of more than 12 words with no place to pause: cut after 6 or fewer
_JOINING = frozenset("and or but so for to with within on in at by from that which who when once before after "
                     "until unless if because while as than please".split())
_NO_END = frozenset("a an the your my our their his her its this these those to of for in on at by from with and or "
                    "but so is are was were be been has have had will would can could should i i'm i'll i've "
                    "you'll we we'll it's that's not".split())


def _words(token: str) -> int:
    """A token's length in spoken words: a number is read digit by digit."""
    return max(1, sum(c.isdigit() for c in token))


def first_words(clause: str) -> list[str]:
    """`clause` as the first piece of a sentence: itself, or its first few words and the rest (joined
    by a space, the two are the clause)."""
    tokens = clause.split()
    weights = [_words(t) for t in tokens]
    if sum(weights) <= FIRST_MAX_WORDS or len(tokens) < 6:
        return [clause]
    fallback = None
    said = 0
    for k in range(1, len(tokens)):  # cut after token k
        said += weights[k - 1]
        if said > _FIRST_WORDS[1]:
            break
        word, following = tokens[k - 1].lower().strip("\"'"), tokens[k]
        if sum(weights[k:]) < 3 or word in _NO_END or any(c.isdigit() for c in following):
            continue
        if word[-1:] in ",;:" or (said >= _FIRST_WORDS[0] and following.lower() in _JOINING):
            return [" ".join(tokens[:k]), " ".join(tokens[k:])]
        if _FIRST_WORDS[0] <= said <= _FIRST_FALLBACK[1] and sum(weights) > _FIRST_FALLBACK[0]:
            fallback = k
    if fallback is None:
        return [clause]
    return [" ".join(tokens[:fallback]), " ".join(tokens[fallback:])]


def speech_pieces(sentence: str) -> list[str]:
    """The pieces a long sentence is synthesised in, in order: its clauses (in English, a long number
    apart from the words before it), the first one cut short (first_words)."""
    cjk = bool(re.search(r"[\u4e00-\u9fff]", sentence))
    pieces: list[str] = []
    for clause in split_clauses(sentence, 6 if cjk else 20):
        head = None if cjk else _BEFORE_NUMBER.split(clause, maxsplit=1)
        if head and len(head) == 2 and len(head[0]) >= _NUMBER_HEAD_MIN:
            pieces.append(head[0])
            clause = head[1]
        pieces.append(clause)
    if not cjk:
        pieces[:1] = first_words(pieces[0])
    return pieces


def synthesize_clauses(voice: Voice, text: str) -> Iterator[SpeechChunk]:
    """Speech for `text` with the first audio as early as possible: sentences the voice has ready
    (pre-synthesised) are played whole; a long sentence that has to be synthesised is made piece by
    piece (speech_pieces), so the first piece plays while the rest is made."""
    has = getattr(voice, "has", None)
    for sentence in split_sentences(text):
        cjk = bool(re.search(r"[\u4e00-\u9fff]", sentence))
        long = _spoken_length(sentence) > (16 if cjk else 60)
        if not long or (has is not None and has(sentence)):
            yield from voice.synthesize(sentence)
            continue
        for piece in speech_pieces(sentence):
            yield from voice.synthesize(piece)
