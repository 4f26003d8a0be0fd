"""Knowledge base retrieval over the shop's FAQ and policy documents (zh and en).

Passages are embedded once with multilingual-e5 ("passage:" side) and cached under var/; a
question is matched by cosine similarity. A hit above the threshold answers with the passage
itself, and the turn records the passage id it came from; below it, nothing is said from the KB.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths

FAQ = Path(__file__).with_name("faq.jsonl")


@dataclass(frozen=True)
class Passage:
    id: str
    lang: str
    question: str
    answer: str
    intents: tuple[str, ...] = ()  # the caller intents it answers; empty: any question


# Which caller intents each shop policy answers.
POLICY_INTENTS = {
    "return": ("aftersales.return",), "exchange": ("aftersales.exchange",), "refund": ("aftersales.refund",),
    "shipping": ("order.status", "logistics.track", "order.modify"), "cancel": ("order.cancel",),
    "warranty": ("aftersales.warranty",), "invoice": ("aftersales.invoice",), "coupon": ("promo.coupon",),
    "membership": ("account.info",), "size_guide": ("product.size",),
}


def _passage(row: dict) -> Passage:
    return Passage(row["id"], row["lang"], row["question"], row["answer"], tuple(row.get("intents", ())))


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float


class KnowledgeBase:
    def __init__(self, embedder, shop=None, threshold: float = 0.87, margin: float = 0.015, scoped_allowance: float = 0.04):
        self.threshold = threshold
        self.scoped_allowance = scoped_allowance
        self.margin = margin
        self._embedder = embedder
        self.passages = [_passage(json.loads(line)) for line in FAQ.read_text(encoding="utf-8").splitlines() if line.strip()]
        if shop is not None:  # the shop's policies are passages too
            for key in ("return", "exchange", "refund", "shipping", "cancel", "warranty", "invoice", "coupon",
                        "membership", "size_guide"):
                for lang in ("zh", "en"):
                    policy = shop.policy(key, lang)
                    if policy:
                        self.passages.append(Passage(f"policy:{key}", lang, policy[0], policy[1], POLICY_INTENTS[key]))
        self.matrix = self._embed_passages()

    def _embed_passages(self) -> np.ndarray:
        texts = [f"{p.question} {p.answer}" for p in self.passages]
        key = hashlib.sha256(("\n".join(texts) + self._embedder.name).encode()).hexdigest()[:16]
        cache = paths.var_dir() / f"kb-{key}.npy"
        if cache.exists():
            return np.load(cache)
        matrix = self._embedder.embed_passages(texts)
        np.save(cache, matrix)
        return matrix

    def prepare(self, question: str) -> None:
        """Encode a question ahead of search() (the encoder remembers recent sentences); blocking."""
        self._embedder.embed([question[:300]])

    def search(self, question: str, lang: str, top_k: int = 3, intent: str | None = None) -> list[Hit]:
        q = self._embedder.embed([question[:300]])[0]
        scores = self.matrix @ q
        hits = []
        for i in np.argsort(-scores):
            p = self.passages[i]
            if p.lang != lang or (intent is not None and intent not in p.intents):
                continue
            hits.append(Hit(p, float(scores[i])))
            if len(hits) == top_k:
                break
        return hits

    def answer(self, question: str, lang: str, intent: str | None = None) -> Hit | None:
        """The best passage when it is clearly relevant: very similar, or similar and well ahead of
        the runner-up (e5 similarities are compressed, so the margin tells relevance apart).

        With the caller's intent known, only the passages written for that intent compete ("怎么申请
        退货" must not get the cancellation policy because it mentions returns), and the bar is lower:
        the intent already says what the question is about."""
        hits = self.search(question, lang, top_k=2, intent=intent)
        if not hits:
            return None
        top = hits[0]
        if intent is not None:
            return top if top.score >= self.threshold - self.scoped_allowance else None
        margin = top.score - hits[1].score if len(hits) > 1 else 1.0
        if top.score >= self.threshold + 0.03 or (top.score >= self.threshold - 0.03 and margin >= self.margin):
            return top
        return None
