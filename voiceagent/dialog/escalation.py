"""When the agent lets go, and what it does first: the escalation policy, after the seeds.

    explicit request for a person ............ transfer at once           caller_request
    a topic that needs a person .............. transfer                   sensitive_topic (legal, safety, payment_dispute)
    a dialect the agent does not serve ....... transfer to who can        dialect
    strong anger, in words too ............... transfer                   angry (strong)
    anger that persists (2 of the last 3) .... transfer                   angry (persistent)
    not understood, 3 turns in a row ......... transfer                   low_confidence
    unanswered, 3 turns in a row ............. transfer                   repeated_failure
    first clear dissatisfaction .............. apology + goodwill coupon  dissatisfied

("首次负面反馈→发送补偿优惠券；持续负面→转接人工专家座席.") Every turn gets a decision with its
reason, kept in the call's record. Thresholds and topics are configurable ([escalation]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import EscalationConfig
from ..perception import TurnEmotion
from ..perception.text_emotion import ANGRY_AT

TOPICS: dict[str, re.Pattern] = {
    "legal": re.compile(r"律师|起诉|法院|告你们|打官司|12315|消协|消费者协会|工商局|市场监管|报警|警察|"
                        r"\b(lawyers?|attorney|solicitor|sue|suing|court|legal action|small claims|trading standards|"
                        r"consumer (protection|council)|police)\b", re.I),
    "safety": re.compile(r"受伤|伤到|着火|起火|冒烟|爆炸|漏电|触电|过敏|中毒|烫伤|划伤|割伤|窒息|"
                         r"\b(injur\w*|hurt (me|my|him|her|them|us)|caught fire|on fire|fire hazard|smok(e|ing) came|"
                         r"explod\w*|electric shock|shocked me|allerg\w*|poison\w*|burn(ed|t) (me|my|him|her)|chok\w*)\b", re.I),
    "payment_dispute": re.compile(r"盗刷|被骗|拒付|扣了两次|扣两次|重复扣|多扣|乱扣|扣错|不是我买的|"
                                  r"\b(chargeback|charge ?back|fraud\w*|stolen card|charged (me )?twice|double[- ]charged?|"
                                  r"unauthori[sz]ed (charge|payment|purchase)|dispute (the|this|a) (charge|payment))\b", re.I),
}


@dataclass
class Escalation:
    action: str = "none"  # "none", "apologize" (with compensation where policy allows) or "transfer"
    reason: str | None = None
    detail: str | None = None  # the topic, "strong"/"persistent", the dialect...
    target: str | None = None  # where a transfer goes

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "detail": self.detail, "target": self.target}


def sensitive_topic(text: str, topics: list[str], extra: re.Pattern | None = None) -> str | None:
    """The first of `topics` the turn raises; `extra` (operator's words) counts as "legal"."""
    for name in topics:
        pattern = TOPICS.get(name)
        if pattern is not None and pattern.search(text):
            return name
    if extra is not None and extra.search(text):
        return "legal"
    return None


class EscalationPolicy:
    def __init__(self, config: EscalationConfig | None = None, served_dialects: list[str] | None = None):
        self.config = config or EscalationConfig()
        self.served_dialects = served_dialects if served_dialects is not None else ["mandarin"]
        words = self.config.extra_sensitive_words
        self._extra = re.compile("|".join(f"(?:{w})" for w in words), re.I) if words else None

    def target(self, key: str) -> str:
        targets = self.config.targets
        return targets.get(key) or targets.get("default") or "human-queue"

    def _transfer(self, reason: str, detail: str | None = None, key: str = "default") -> Escalation:
        return Escalation("transfer", reason, detail, self.target(key))

    def decide(self, *, wants_person: bool, text: str, emotion: TurnEmotion, angry_recent: int,
               dialect: str | None, unclear_in_row: int, failed_in_row: int, apologized: bool) -> Escalation:
        """This turn's decision. `angry_recent`: angry turns among the last three, this one included;
        `unclear_in_row`: turns not understood in a row, this one included; `failed_in_row`: the
        unanswered turns before this one; `dialect`: the call's steady dialect."""
        c = self.config
        if wants_person:
            return self._transfer("caller_request")
        topic = sensitive_topic(text, c.sensitive_topics, self._extra)
        if topic:
            return self._transfer("sensitive_topic", topic)
        if dialect is not None and dialect not in self.served_dialects:
            return self._transfer("dialect", dialect, dialect)
        # strong: very angry, and in so many words (a raised voice alone is met with an apology first;
        # if it goes on, it is persistent anger)
        if emotion.clear and emotion.anger >= c.strong_anger and emotion.text_anger >= ANGRY_AT:
            return self._transfer("angry", "strong")
        if emotion.clear and angry_recent >= c.angry_turns_to_transfer:
            return self._transfer("angry", "persistent")
        if unclear_in_row >= c.low_confidence_turns:
            return self._transfer("low_confidence")
        if failed_in_row >= c.failed_turns:
            return self._transfer("repeated_failure")
        if emotion.clear and not apologized and c.apologize_on_dissatisfaction:
            return Escalation("apologize", "dissatisfied", "compensate" if c.compensation else None)
        return Escalation()
