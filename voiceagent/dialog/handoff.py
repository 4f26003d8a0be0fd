"""When the agent lets go: the caller asks, is angry, raises a topic that needs a person, or the
bot keeps failing. Returns the decision with its reason; the transfer itself is the transport's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .nlu import Understanding

SENSITIVE = re.compile(r"律师|起诉|法院|12315|消协|媒体|曝光|报警|警察|受伤|着火|爆炸|过敏|盗刷|被骗|拒付|"
                       r"lawyer|sue\b|court|police|injur|fire|explod|allerg|fraud|chargeback|stolen card", re.I)


@dataclass
class HandoffDecision:
    handoff: bool
    reason: str | None = None


def decide(u: Understanding, angry_turns: int = 0, failed_turns: int = 0) -> HandoffDecision:
    if u.intent == "handoff.human":
        return HandoffDecision(True, "caller_request")
    if SENSITIVE.search(u.text):
        return HandoffDecision(True, "sensitive_topic")
    if u.anger >= 0.8 or (u.emotion == "angry" and angry_turns >= 1):
        return HandoffDecision(True, "angry")
    if failed_turns >= 3:
        return HandoffDecision(True, "repeated_failure")
    return HandoffDecision(False, None)
