"""Anger heard in the voice, against the caller's own baseline.

People differ too much in level, pitch and pace (and phone lines in gain) for absolute values to
mean anything, so a turn is compared with the same caller's calm turns earlier in the call. A
raised, agitated voice is louder, higher, more effortful (energy moves above 1 kHz) and often
faster. A louder line alone is not anger: at least two of loudness, pitch and effort must rise.
Until the caller has spoken one calm turn long enough to measure, the voice says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from .prosody import VoiceFeatures

BASELINE_MIN_VOICED_S = 0.8  # a turn this long (voiced) can stand for the caller's normal voice
JUDGE_MIN_VOICED_S = 0.5  # a shorter turn is not judged
BASELINE_TURNS = 5  # the most recent calm turns make the baseline


def _ramp(value: float, start: float, full: float) -> float:
    return min(1.0, max(0.0, (value - start) / (full - start)))


@dataclass
class VoiceReading:
    """One turn's voice against the baseline."""

    features: VoiceFeatures
    anger: float | None  # 0..1; None: no baseline yet, or too little speech
    deltas: dict[str, float] = field(default_factory=dict)  # dB, semitones, dB, ratio

    def to_dict(self) -> dict:
        return {"features": self.features.to_dict(), "anger": self.anger,
                "deltas": {k: round(v, 2) for k, v in self.deltas.items()}}


@dataclass
class VoiceBaseline:
    turns: list[VoiceFeatures] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.turns)

    def add(self, features: VoiceFeatures) -> None:
        if features.voiced_s >= BASELINE_MIN_VOICED_S:
            self.turns = (self.turns + [features])[-BASELINE_TURNS:]

    def read(self, features: VoiceFeatures) -> VoiceReading:
        if not self.turns or features.voiced_s < JUDGE_MIN_VOICED_S:
            return VoiceReading(features, None)
        base_loud = median(t.loudness_db for t in self.turns)
        base_pitch = median(t.pitch_st for t in self.turns)
        base_effort = median(t.effort_db for t in self.turns)
        rates = [t.rate_sps for t in self.turns if t.rate_sps]
        deltas = {"loudness_db": features.loudness_db - base_loud, "pitch_st": features.pitch_st - base_pitch,
                  "effort_db": features.effort_db - base_effort}
        if rates and features.rate_sps:
            deltas["rate_ratio"] = features.rate_sps / median(rates)
        loud = _ramp(deltas["loudness_db"], 2.0, 8.0)
        pitch = _ramp(deltas["pitch_st"], 1.0, 5.0)
        effort = _ramp(deltas["effort_db"], 1.0, 6.0)
        pace = _ramp(deltas.get("rate_ratio", 1.0), 1.1, 1.4)
        raised = sum(c >= 0.25 for c in (loud, pitch, effort))
        if raised < 2:  # one cue alone: a louder line, a question's rising pitch, a different vowel mix
            return VoiceReading(features, 0.0, deltas)
        arousal = 0.35 * loud + 0.35 * pitch + 0.2 * effort + 0.1 * pace
        return VoiceReading(features, round(min(1.0, 1.2 * arousal), 2), deltas)
