"""Caller perception: emotion from the words and the voice, language and dialect.

    words ──► text_emotion ─────────────┐
    audio ──► prosody ─► voice_emotion ─┼─► emotion_state (per turn, running per call)
          └─► ser (optional model) ─────┘
    ASR language + words ─► language (steady language, Mandarin / Cantonese / other Chinese)

The dialog's escalation policy (dialog/escalation.py) acts on what this perceives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .emotion_state import CallerEmotion, TurnEmotion
from .language import LanguageTracker, detect_dialect
from .prosody import VoiceFeatures, measure
from .text_emotion import TextEmotion, detect_emotion
from .voice_emotion import VoiceBaseline, VoiceReading

log = logging.getLogger(__name__)

__all__ = ["CallerEmotion", "HeardVoice", "LanguageTracker", "Perception", "TextEmotion", "TurnEmotion",
           "VoiceBaseline", "VoiceFeatures", "VoiceReading", "detect_dialect", "detect_emotion", "measure"]


@dataclass
class HeardVoice:
    """What one turn's audio says beyond its words: prosody and, with a model, its emotion."""

    features: VoiceFeatures | None
    model: dict[str, float] | None = None


class Perception:
    """The process-wide part (the optional speech-emotion model); per-call state is CallerEmotion."""

    def __init__(self, ser_model: str = "", voice: bool = True):
        self.voice_enabled = voice
        self.ser = None
        if ser_model:
            from .ser import SpeechEmotionModel

            self.ser = SpeechEmotionModel(ser_model)

    @property
    def name(self) -> str:
        return self.ser.name if self.ser is not None else "prosody"

    def hear(self, audio: np.ndarray | None, rate: int, text: str) -> HeardVoice | None:
        """Runs in a worker thread (Praat and the model release the GIL)."""
        if audio is None or not self.voice_enabled or len(audio) == 0:
            return None
        try:
            features = measure(audio, rate, text)
            model = self.ser.probabilities(audio) if self.ser is not None and rate == 16000 else None
        except Exception:  # a voice we cannot measure is no reason to fail the turn
            log.exception("voice measures failed")
            return None
        return HeardVoice(features, model)
