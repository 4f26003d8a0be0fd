"""Caller perception from the words: emotion (with a 0-1 anger score) and Chinese dialect.

Lexicon cues, weighted; a neutral question scores neutral (no sentiment model that reads every
question as negative). The voice-based cues and the running per-call state come with the
perception issue; this is the text half, used by `understand` and every call turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANGER_ZH = {"怎么回事": 0.35, "太差": 0.4, "垃圾": 0.6, "投诉": 0.45, "气死": 0.6, "骗子": 0.7, "骗人": 0.6,
             "什么破": 0.6, "搞什么": 0.5, "受够": 0.6, "离谱": 0.45, "欺骗": 0.6, "恶劣": 0.5, "无语": 0.35,
             "坑人": 0.6, "太过分": 0.55, "忍无可忍": 0.8, "曝光": 0.5, "差评": 0.4, "退钱": 0.4, "到底": 0.2,
             "还没": 0.1, "都是破的": 0.4, "12315": 0.6, "律师": 0.5, "起诉": 0.6, "媒体": 0.4, "滚": 0.7}
_ANGER_EN = {"ridicul": 0.5, "unacceptable": 0.55, "terrible": 0.45, "worst": 0.5, "angry": 0.5, "furious": 0.7,
             "scam": 0.6, "complaint": 0.35, "complain": 0.35, "nobody has answered": 0.35, "nobody answered": 0.35,
             "money back": 0.3, "useless": 0.45, "awful": 0.45, "disgusting": 0.6, "fed up": 0.55,
             "sick of": 0.55, "lawyer": 0.5, "sue ": 0.6, "report you": 0.5, "what the hell": 0.6, "damn": 0.4,
             "pathetic": 0.55, "never again": 0.4, "joke": 0.3, "three days": 0.1}
_ANXIOUS = ["着急", "急用", "快点", "赶紧", "怎么还没", "还没到", "担心", "急死", "尽快", "urgent", "asap", "as soon as",
            "worried", "still haven't", "still hasn't", "hurry", "need it by", "still not"]
_HESITANT = ["犹豫", "纠结", "不知道选", "哪个好", "拿不准", "要不要", "考虑一下", "not sure", "can't decide", "hesitat",
             "which one", "thinking about", "torn between", "maybe"]
_SATISFIED = ["谢谢", "太好了", "满意", "不错", "棒", "辛苦了", "好评", "thank", "great", "perfect", "appreciate",
              "awesome", "excellent", "wonderful", "helpful"]

# Words and particles used in written/spoken Cantonese but not in Mandarin.
_CANTONESE = ["嘅", "唔", "咗", "冇", "係", "佢", "哋", "乜嘢", "咁", "啲", "喺", "嚟", "睇", "咩", "㗎", "嘞", "噉", "點解",
              "而家", "幾時", "邊度", "点解", "边度", "几时", "咪", "嗰", "畀", "俾"]
_STRONG_CANTONESE = {"嘅", "唔", "咗", "冇", "佢", "哋", "喺", "嚟", "㗎", "嗰", "乜嘢"}


@dataclass
class EmotionResult:
    label: str
    anger: float  # 0..1


def detect_emotion(text: str) -> EmotionResult:
    lowered = text.lower()
    anger = 0.0
    for cue, weight in (_ANGER_ZH | _ANGER_EN).items():
        if cue in lowered:
            anger += weight
    exclaims = len(re.findall(r"[!！]", text))
    if exclaims and anger > 0:
        anger += min(0.1 * exclaims, 0.3)
    if re.search(r"\b[A-Z]{4,}\b", text) and anger > 0:  # shouting in capitals
        anger += 0.15
    anger = min(anger, 1.0)
    if anger >= 0.45:
        return EmotionResult("angry", round(anger, 2))
    if any(c in lowered for c in _ANXIOUS):
        return EmotionResult("anxious", round(anger, 2))
    if any(c in lowered for c in _HESITANT):
        return EmotionResult("hesitant", round(anger, 2))
    if any(c in lowered for c in _SATISFIED) and anger < 0.2:
        return EmotionResult("satisfied", round(anger, 2))
    return EmotionResult("neutral", round(anger, 2))


def detect_dialect(text: str, language: str) -> str | None:
    if language != "zh":
        return None
    hits = [m for m in _CANTONESE if m in text]
    if any(h in _STRONG_CANTONESE for h in hits) or len(hits) >= 2:
        return "cantonese"
    return "mandarin"
