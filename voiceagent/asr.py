"""Speech recognition: faster-whisper (CTranslate2), language pinned or detected.

The model is loaded once per process and shared by every call (CTranslate2 releases the GIL, so
decoding runs in worker threads without blocking the event loop). Chinese output is kept in
Simplified characters with a Simplified initial prompt plus a character map for what slips through.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .config import AsrConfig
from .errors import ModelMissing
from .provision import resolve
from .textnorm import to_simplified

SAMPLE_RATE = 16000


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    language: str
    language_probability: float
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


class SpeechRecognizer(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript: ...

    def warm_up(self) -> None:
        """The first decode of a process pays one-off costs (~1 s); pay them at start-up, not on a call."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        self.detect_language(noise)
        self.transcribe(noise, self.config.languages[0] if self.config.languages else "en")

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...


def _load_whisper(ref: str, config: AsrConfig):
    from faster_whisper import WhisperModel

    path = resolve(ref, "asr")
    # Not a manifest id nor a path: a faster-whisper size or hub name (needs a model hub).
    source = str(path) if path is not None else ref
    try:
        return WhisperModel(source, device="cpu", compute_type=config.compute_type, cpu_threads=config.cpu_threads)
    except Exception as exc:  # ctranslate2/huggingface raise many types; all mean "cannot load"
        raise ModelMissing(f"cannot load ASR model {ref!r}: {exc}") from None


class _EncoderCache:
    """Remembers the encoder output of the last 30 s window.

    Whisper encodes a padded 30 s window before anything else. Detecting the language encodes the
    turn's window, and decoding would encode the very same window again; with this cache in front
    of `WhisperModel.encode` the second pass is free (saves ~0.8 s on a call's first turn here).
    """

    def __init__(self, model):
        self._encode = model.encode
        self._key: tuple | None = None
        self._value = None
        model.encode = self  # an instance attribute shadows the method for this model only

    def __call__(self, features: np.ndarray):
        key = (features.shape, hashlib.blake2b(np.ascontiguousarray(features).tobytes(), digest_size=16).digest())
        if key != self._key:
            self._value = self._encode(features)
            self._key = key
        return self._value


class WhisperASR:
    def __init__(self, config: AsrConfig):
        self.config = config
        self.name = f"faster-whisper:{config.model}"
        self._model = _load_whisper(config.model, config)
        self._english = _load_whisper(config.english_model, config) if config.english_model else None
        _EncoderCache(self._model)
        # One decode at a time per model: CTranslate2 already uses every core we give it.
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """The first decode of a process pays one-off costs (~1 s); pay them at start-up, not on a call."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        self.detect_language(noise)
        self.transcribe(noise, self.config.languages[0] if self.config.languages else "en")

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Most likely language among the configured ones, with its probability among them."""
        from faster_whisper.audio import pad_or_trim

        model = self._model
        if not model.model.is_multilingual:
            return "en", 1.0
        with self._lock:
            features = model.feature_extractor(audio.astype(np.float32))
            # the same window the decoder will encode first (it drops the last frame), so the
            # encoder cache serves both
            frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
            encoder_output = model.encode(pad_or_trim(features[:, :frames]))
            results = model.model.detect_language(encoder_output)[0]
        all_probs = [(token[2:-2], prob) for token, prob in results]
        allowed = {lang: p for lang, p in all_probs if lang in self.config.languages}
        if not allowed:
            lang, prob = all_probs[0]
            return lang, float(prob)
        total = sum(allowed.values()) or 1.0
        lang = max(allowed, key=allowed.get)
        return lang, float(allowed[lang] / total)

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        audio = audio.astype(np.float32, copy=False)
        duration = len(audio) / SAMPLE_RATE
        prob = 1.0
        if language is None:
            language, prob = self.detect_language(audio)
        model = self._english if (language == "en" and self._english is not None) else self._model
        prompt = self.config.zh_initial_prompt if language == "zh" else None
        with self._lock:
            segments, _info = model.transcribe(
                audio,
                language=language,
                beam_size=self.config.beam_size,
                temperature=0.0,
                condition_on_previous_text=False,
                initial_prompt=prompt,
                vad_filter=False,  # turns are already cut by our own VAD
                without_timestamps=False,
            )
            segs = [Segment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments]
        if language == "zh":
            segs = [Segment(s.start, s.end, to_simplified(s.text)) for s in segs]
        joiner = "" if language in ("zh", "ja") else " "
        text = joiner.join(s.text for s in segs if s.text).strip()
        return Transcript(text, language, round(prob, 3), round(duration, 3), segs)


def create_asr(config: AsrConfig) -> SpeechRecognizer:
    return WhisperASR(config)
