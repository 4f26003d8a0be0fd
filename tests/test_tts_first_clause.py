"""The first piece of a long English sentence is short (the caller waits for it while piper makes
it), cut where a speaker could pause, and the pieces together say the whole sentence."""

import re

import numpy as np
import pytest

from voiceagent.tts import SpeechChunk, synthesize_clauses
from voiceagent.tts.sentences import FIRST_MAX_WORDS, first_words, speech_pieces

LONG = [
    "Sure, I can exchange the cushioned running shoes for a smaller size today.",
    "So I'll exchange limited edition floral midi dress for size S.",
    "So I'll exchange cushioned running shoes for size 39.",
    "Your complaint is already logged as CP2611200001; someone will follow it up.",
    "I'm transferring you to a member of our team now, please hold.",
    "Your order has shipped and should arrive on November 20 unless the weather delays the courier.",
    "Latest update: out for delivery in Shanghai on November 20.",
    "Once the returned item passes inspection the refund goes back to the original payment method within 3 days.",
    "We received the parcel yesterday morning and the warehouse team checked every item carefully already.",
]


def spoken_words(piece: str) -> int:
    return sum(max(1, sum(c.isdigit() for c in token)) for token in piece.split())


@pytest.mark.parametrize("sentence", LONG)
def test_a_long_sentences_first_piece_is_short_and_the_pieces_say_it_all(sentence):
    pieces = speech_pieces(sentence)
    assert len(pieces) >= 2
    assert " ".join(pieces) == sentence  # nothing lost, nothing added, in order
    first = pieces[0]
    assert spoken_words(first) <= FIRST_MAX_WORDS
    assert sentence.startswith(first + " ")  # it ends at a word boundary
    assert first.split()[-1].lower() not in {"a", "an", "the", "your", "to", "of", "for"}  # not mid-phrase
    assert not re.match(r"\S*\d", pieces[1])  # the next piece does not start on a number


def test_the_cut_prefers_a_comma_or_a_joining_word():
    assert speech_pieces("So I'll exchange cushioned running shoes for size 39.") == \
        ["So I'll exchange cushioned running shoes", "for size 39."]
    assert first_words("Latest update: out for delivery in Shanghai on November 20.")[0] == "Latest update:"
    assert speech_pieces("I'm transferring you to a member of our team now, please hold.")[0] == "I'm transferring you"
    # a comma is a pause anyway: even one word before it is a piece of its own
    assert speech_pieces("Sure, I can exchange the cushioned running shoes for a smaller size today.")[0] == "Sure,"


def test_short_clauses_and_numbers_are_not_cut():
    assert first_words("Your order has shipped today.") == ["Your order has shipped today."]
    # a cut before the number would start a piece on its digits (piper blurs the first one)
    assert first_words("Your order 38512074,") == ["Your order 38512074,"]
    # no place to pause within the first eight words, and not long enough to cut anyway
    assert first_words("The cushioned running shoes run half a size small,") == \
        ["The cushioned running shoes run half a size small,"]


def test_mandarin_sentences_keep_their_clauses():
    assert speech_pieces("您的订单38512074已经发货，预计明天送达。") == \
        ["您的订单38512074已经发货，", "预计明天送达。"]


class _Recorder:
    name, sample_rate = "recorder", 16000

    def __init__(self, ready: set[str] = frozenset()):
        self.asked: list[str] = []
        self.ready = ready

    def has(self, sentence: str) -> bool:
        return sentence in self.ready

    def synthesize(self, text):
        self.asked.append(text)
        yield SpeechChunk(np.zeros(160, np.float32), 16000, text)


def test_the_voice_is_asked_for_the_pieces_of_every_sentence_in_order():
    text = "So I'll exchange cushioned running shoes for size 39. Shall I go ahead?"
    voice = _Recorder()
    list(synthesize_clauses(voice, text))
    assert voice.asked == ["So I'll exchange cushioned running shoes", "for size 39.", "Shall I go ahead?"]
    ready = _Recorder({"So I'll exchange cushioned running shoes for size 39."})
    list(synthesize_clauses(ready, text))  # a pre-synthesised sentence is replayed whole
    assert ready.asked[0] == "So I'll exchange cushioned running shoes for size 39."
