"""Natural-language understanding of one caller turn: intent with a confidence, slots, emotion,
language and dialect.

Intent: a calibrated linear classifier over the multilingual sentence embedding (zh and en share
one space, so mixed speech works) and lexical n-grams, trained by train_intents.py on
dialog/data/nlu_train.jsonl, plus high-precision cue rules for the intents where a miss is costly
(a caller asking for a person, a complaint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..embeddings import Embedder
from ..errors import ModelMissing
from ..perception import detect_dialect, detect_emotion
from ..textnorm import guess_language
from .intents import INTENTS
from .features import lexical
from .slots import extract_slots
from .train_intents import MODEL_PATH

# Cue rules: (intent, pattern, confidence floor). Checked on the raw text, before the embedding.
RULES: list[tuple[str, re.Pattern, float]] = [
    ("handoff.human", re.compile(r"转人工|人工客服|人工服务|转接人工|找人工|真人|活人|主管|经理|不想跟机器|不要机器人|"
                                 r"real person|human|live agent|a person|supervisor|manager|operator|representative|"
                                 r"talk to (someone|somebody)|not a (robot|bot|machine)", re.I), 0.95),
    ("aftersales.complaint", re.compile(r"投诉|曝光|12315|差评|态度(太|很|极)?差|发错|坏了的|破的|碎了|"
                                        r"complain|complaint|arrived broken|was broken|damaged|wrong item|unacceptable|"
                                        r"ridiculous|report you", re.I), 0.8),
    ("aftersales.refund", re.compile(r"退款|退的钱|钱.{0,4}退|refund|money back", re.I), 0.75),
    ("aftersales.exchange", re.compile(r"换货|换(一|个)?(尺码|码|颜色|大|小)|exchange|swap", re.I), 0.75),
    ("aftersales.return", re.compile(r"退货|退回|退掉|寄回|\breturn(ing|ed)?\b|send (it )?back", re.I), 0.7),
    ("order.cancel", re.compile(r"取消(订单|这个单|掉)?|不要了|cancel", re.I), 0.75),
    ("aftersales.invoice", re.compile(r"发票|收据|invoice|receipt", re.I), 0.8),
    ("aftersales.warranty", re.compile(r"保修|维修|warranty|repair", re.I), 0.75),
    ("product.size", re.compile(r"什么码|几码|尺码|码数|偏码|偏大|偏小|显瘦|显胖|身高|体重|穿\s*\d+\s*码|what size|which size|"
                                r"size chart|run(s)? (small|large|big)|true to size|\bsize\b", re.I), 0.6),
    ("product.stock", re.compile(r"有货|现货|补货|缺货|库存|in stock|restock|sold out|available", re.I), 0.6),
    ("promo.coupon", re.compile(r"优惠券|优惠|满减|折扣|活动|coupon|discount|promo|promotion|\bsale\b", re.I), 0.6),
    ("logistics.track", re.compile(r"快递|物流|包裹|签收|运单|到哪|parcel|package|tracking|delivery|delivered|courier", re.I), 0.6),
    ("order.status", re.compile(r"发货|发了没|订单状态|什么时候发|ship(ped)?\b|order status|my order|\border\b", re.I), 0.6),
]
# Which intent wins when several rules fire: a person > a complaint > the specific request > the generic
# order and parcel words that most requests mention.
PRIORITY = [r[0] for r in RULES]


@dataclass
class Understanding:
    text: str
    intent: str
    confidence: float
    slots: dict[str, str] = field(default_factory=dict)
    emotion: str = "neutral"
    anger: float = 0.0
    language: str = "zh"
    dialect: str | None = None
    scores: dict[str, float] = field(default_factory=dict)


class IntentClassifier:
    """Logistic regression over [e5 embedding, lexical n-grams], temperature-calibrated
    (train_intents.py), then the cue rules."""

    def __init__(self, embedder: Embedder, model_path: Path = MODEL_PATH):
        if not model_path.exists():
            raise ModelMissing(f"intent model {model_path} is missing; run: python -m voiceagent.dialog.train_intents")
        data = np.load(model_path)
        if [str(x) for x in data["labels"]] != list(INTENTS):
            raise ModelMissing(f"intent model {model_path} has other labels; retrain: python -m voiceagent.dialog.train_intents")
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
        return intent, round(float(confidence), 3), scores


class NLU:
    def __init__(self, embedder: Embedder, shop=None):
        self.classifier = IntentClassifier(embedder)
        self.shop = shop

    def understand(self, text: str, language: str | None = None) -> Understanding:
        text = (text or "").strip()
        lang = language or guess_language(text)
        if not text or not re.search(r"[\w\u4e00-\u9fff]", text):
            return Understanding(text, "other", 0.0, language=lang, dialect=None if lang != "zh" else "mandarin")
        clipped = text[:500]  # an embedding of a 10 000-character turn means nothing; its start does
        intent, confidence, scores = self.classifier.classify(clipped)
        emotion = detect_emotion(clipped)
        slots = extract_slots(clipped, self.shop)
        return Understanding(
            text=text,
            intent=intent,
            confidence=confidence,
            slots=slots,
            emotion=emotion.label,
            anger=emotion.anger,
            language=lang,
            dialect=detect_dialect(clipped, lang),
            scores=scores,
        )
