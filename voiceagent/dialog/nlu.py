"""Natural-language understanding of one caller turn: intent with a confidence, slots, emotion,
language and dialect.

Intent: a calibrated linear classifier over a multilingual sentence embedding (zh and en share
one space, so mixed speech works) and lexical n-grams, trained by training/train_intents.py on
training/data/nlu_train.jsonl, plus a high-precision cue rule where a miss is costly
(a caller asking for a person). The embedding comes from multilingual-e5-small with its upper
layers fine-tuned on the intents (training/finetune_encoder.py), run by the same 4-bit engine.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..embeddings import Embedder
from ..errors import ModelMissing
from ..perception import detect_dialect, detect_emotion
from ..perception.text_emotion import AngerClassifier
from ..textnorm import guess_language, repair_misheard_service_words
from .intents import INTENTS
from ..lexical import lexical
from .slots import extract_slots
from .nlu_model import MODEL_PATH, encoder_sha

# Cue rules: (intent, pattern, confidence floor), checked on the raw text after the classifier.
# Only where a miss is costly and the words are unambiguous: a caller asking for a person must be
# put through even when the rest of the sentence is about something else. Keyword rules for the
# other intents were measured to cost dev macro-F1 (0.913 -> 0.874 with them: "order" and "ship" are
# in half the requests, "membership" contains "ship"), so the classifier decides those alone.
RULES: list[tuple[str, re.Pattern, float]] = [
    ("handoff.human", re.compile(r"转人工|人工客服|人工服务|转接人工|找人工|真人|活人|主管|经理|不想跟机器|不要机器人|"
                                 r"real person|\bhuman\b|live agent|a person\b|supervisor|manager|operator|representative|"
                                 r"talk to (someone|somebody)|not a (robot|bot|machine)", re.I), 0.95),
]
PRIORITY = [r[0] for r in RULES]
# The intents where a reason ("太小了", "damaged") means something to the dialog.
REASON_INTENTS = {"aftersales.return", "aftersales.exchange", "aftersales.complaint", "aftersales.refund",
                  "aftersales.warranty", "order.cancel"}


@dataclass
class Understanding:
    text: str
    intent: str
    confidence: float
    slots: dict[str, str] = field(default_factory=dict)
    emotion: str = "neutral"  # from the words and, on a call, the voice (the dialog fuses them)
    anger: float = 0.0
    text_emotion: str = "neutral"  # from the words alone
    text_anger: float = 0.0
    emotion_cues: list[str] = field(default_factory=list)
    language: str = "zh"
    dialect: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    cue: str | None = None  # the intent a cue rule fired for (the caller's own words: "转人工")


class IntentClassifier:
    """Logistic regression over [e5 embedding, lexical n-grams], temperature-calibrated
    (training/train_intents.py), then the cue rules."""

    def __init__(self, embedder: Embedder, model_path: Path = MODEL_PATH):
        if not model_path.exists():
            raise ModelMissing(f"intent model {model_path} is missing; run: make train-nlu")
        data = np.load(model_path)
        if [str(x) for x in data["labels"]] != list(INTENTS):
            raise ModelMissing(f"intent model {model_path} has other labels; retrain: make train-nlu")
        if "encoder_sha" not in data.files or str(data["encoder_sha"]) != encoder_sha():
            raise ModelMissing(f"intent model {model_path} was fitted on another intent encoder; retrain: make train-nlu")
        self.embedder = embedder
        self.w, self.b = data["w"], data["b"]
        self.temperature = float(data["temperature"])
        self.lexical_weight = float(data["lexical_weight"])

    def scores(self, text: str) -> dict[str, float]:
        x = np.hstack([self.embedder.embed([text])[0], self.lexical_weight * lexical([text])[0]])
        logits = (x @ self.w + self.b) / self.temperature
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return {INTENTS[i]: float(probs[i]) for i in range(len(INTENTS))}

    def classify(self, text: str) -> tuple[str, float, dict[str, float]]:
        intent, confidence, scores, _ = self.classify_with_cue(text)
        return intent, confidence, scores

    def classify_with_cue(self, text: str) -> tuple[str, float, dict[str, float], str | None]:
        scores = self.scores(text)
        intent = max(scores, key=scores.get)
        confidence = scores[intent]
        fired = [(name, floor) for name, pattern, floor in RULES if pattern.search(text)]
        if fired:
            fired.sort(key=lambda f: PRIORITY.index(f[0]))
            rule_intent, floor = fired[0]
            # a rule decides unless the embedding is sure of another intent the rule does not contradict
            if rule_intent != intent and not (confidence > 0.8 and intent in {f[0] for f in fired}):
                intent, confidence = rule_intent, max(floor, scores[rule_intent])
            else:
                confidence = max(confidence, floor)
        return intent, round(float(confidence), 3), scores, (fired[0][0] if fired else None)


class NLU:
    def __init__(self, embedder: Embedder, shop=None, anger: AngerClassifier | None = None):
        """`embedder` is the intent encoder (nlu_model.intent_encoder()); `anger`, the anger
        classifier (text_emotion.load_anger_classifier; None: word cues alone)."""
        self.classifier = IntentClassifier(embedder)
        # The anger classifier also reads the base encoder's embedding of the turn: computed beside the
        # intent encoder's on the other core (the engine releases the GIL), it halves the NLU's time.
        base = getattr(anger, "base", None)
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="nlu-base") if base is not None and base is not embedder \
            else None
        repair_misheard_service_words("快避")  # loads pypinyin's dictionaries now (~180 ms), not on the first call
        self.shop = shop
        self.anger = anger

    def prepare(self, text: str) -> None:
        """Encode a turn before it is understood: the streaming recogniser's transcript at a pause is
        usually the final one, and the encoders remember recent sentences, so a turn prepared in the
        silence window leaves understand() (and the knowledge base's search) only the cheap rest.
        Nothing else changes: understand() gives the same result prepared or not. Blocking: for a
        worker thread."""
        clipped = _clipped(text)
        if clipped is None:
            return
        beside = self._beside.submit(self.anger.base.embed, [clipped]) if self._beside is not None else None
        self.classifier.embedder.embed([clipped])
        if beside is not None:
            beside.result()

    def understand(self, text: str, language: str | None = None,
                   language_scores: dict[str, float] | None = None) -> Understanding:
        text = (text or "").strip()
        lang = language or guess_language(text)
        clipped = _clipped(text)
        if clipped is None:
            return Understanding(text, "other", 0.0, language=lang, dialect=None if lang != "zh" else "mandarin")
        beside = self._beside.submit(self.anger.base.embed, [clipped]) if self._beside is not None else None
        intent, confidence, scores, cue = self.classifier.classify_with_cue(clipped)
        if beside is not None:
            beside.result()  # now in the base encoder's cache of recent sentences
        emotion = detect_emotion(clipped, self.anger)
        slots = extract_slots(clipped, self.shop)
        if intent not in REASON_INTENTS:
            slots.pop("reason", None)  # "会不会一穿就坏" asks about a product; it is no reason for a return
        return Understanding(
            text=text,
            intent=intent,
            confidence=confidence,
            slots=slots,
            emotion=emotion.label,
            anger=emotion.anger,
            text_emotion=emotion.label,
            text_anger=emotion.anger,
            emotion_cues=emotion.cues,
            language=lang,
            dialect=detect_dialect(clipped, lang, language_scores),
            scores=scores,
            cue=cue,
        )


_WORDS = re.compile(r"[\w\u4e00-\u9fff]")


def _clipped(text: str) -> str | None:
    """What the encoders read of a turn; None when it has no words."""
    text = (text or "").strip()
    if not text or not _WORDS.search(text):
        return None
    # an embedding of a 10 000-character turn means nothing; its start does; read as the caller
    # meant it, not as one syllable was misheard ("我的快避到哪里了": 快递)
    return repair_misheard_service_words(text[:500])
