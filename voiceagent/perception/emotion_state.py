"""The caller's emotion per turn and as a running state across the call.

Each turn's anger joins three kinds of evidence as independent signals (noisy-or): the words
(text_emotion), the voice against the caller's baseline (voice_emotion) and, when one is plugged
in, a speech-emotion model. Mild words and a somewhat raised voice together make anger where
neither alone does. Loud thanks are joy, not anger: the voice counts half when the words are
warm. The running state remembers: anger fades by half a turn, so a caller who was angry a turn
ago and is curt now is still treated with care.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .text_emotion import ANGRY_AT, TextEmotion
from .voice_emotion import VoiceBaseline, VoiceReading

RUNNING_DECAY = 0.5
SOURCE_AT = 0.4  # evidence this strong is named as a source of a turn's anger
CLEAR_AT = 0.62  # anger from the classifier alone is acted on from here (see TurnEmotion.clear)


@dataclass
class TurnEmotion:
    label: str
    anger: float  # 0..1, all evidence together
    text_anger: float
    voice_anger: float | None = None  # None: the voice was not judged (no baseline yet, too short, text only)
    model_anger: float | None = None
    cues: list[str] = field(default_factory=list)
    voice: dict | None = None  # the voice measures and their change from the baseline

    @property
    def clear(self) -> bool:
        """Anger clear enough to act on (apologise, compensate, transfer): angry, and backed by an
        anger cue in the words, by the voice or model, or well past the line. The classifier alone
        just past its threshold labels a turn but does not spend a coupon or a colleague's time."""
        return self.label == "angry" and (bool(self.cues) or (self.voice_anger or 0.0) >= SOURCE_AT
                                          or (self.model_anger or 0.0) >= SOURCE_AT or self.anger >= CLEAR_AT)

    def sources(self) -> list[str]:
        """Which evidence made this turn angry (for the record)."""
        if self.label != "angry":
            return []
        out = []
        if self.text_anger >= SOURCE_AT:
            out.append("words")
        if (self.voice_anger or 0.0) >= SOURCE_AT:
            out.append("voice")
        if (self.model_anger or 0.0) >= SOURCE_AT:
            out.append("model")
        return out


@dataclass
class CallerEmotion:
    """One caller's emotional state over the call."""

    baseline: VoiceBaseline = field(default_factory=VoiceBaseline)
    timeline: list[tuple[float, TurnEmotion]] = field(default_factory=list)  # (turn start on the call's timeline, emotion)
    running_anger: float = 0.0

    def observe(self, text: TextEmotion, voice: VoiceReading | None = None,
                model: dict[str, float] | None = None, at_s: float = 0.0) -> TurnEmotion:
        voice_anger = voice.anger if voice is not None else None
        model_anger = model.get("angry") if model else None
        warm = text.label == "satisfied" and text.anger < 0.2
        v = (voice_anger or 0.0) * (0.5 if warm else 1.0)
        m = (model_anger or 0.0) * (0.5 if warm else 1.0)
        anger = 1.0 - (1.0 - text.anger) * (1.0 - v) * (1.0 - m)
        anger = round(min(1.0, anger), 2)
        label = "angry" if anger >= ANGRY_AT else ("neutral" if text.label == "angry" else text.label)
        turn = TurnEmotion(label, anger, text.anger, voice_anger, model_anger, list(text.cues),
                           voice.to_dict() if voice is not None else None)
        if voice is not None and anger < ANGRY_AT * 0.6:
            self.baseline.add(voice.features)  # a calm turn: the caller's normal voice
        self.running_anger = round(max(anger, RUNNING_DECAY * self.running_anger + (1 - RUNNING_DECAY) * anger), 2)
        self.timeline.append((at_s, turn))
        return turn

    def angry_turns(self, last: int = 3) -> int:
        """Clearly angry turns among the last `last` (this one included)."""
        return sum(t.clear for _, t in self.timeline[-last:])
