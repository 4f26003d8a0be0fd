"""Turn segmentation: VAD probabilities to speech-start / end-of-turn events.

Fed with audio of any frame size at 16 kHz; emits `SpeechStarted` when speech has lasted
`min_speech_ms`, and `TurnEnded` once `min_silence_ms` of silence follow it. `TurnEnded` carries
the caller's audio and the moment speech actually stopped (the last voiced chunk), which is what
voice-to-voice latency is measured from, not the later moment the silence window closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import VadConfig
from .vad import SAMPLE_RATE, VoiceActivityDetector


@dataclass(frozen=True)
class SpeechStarted:
    start_s: float


@dataclass(frozen=True)
class TurnEnded:
    start_s: float  # first voiced chunk (before padding)
    speech_end_s: float  # end of the last voiced chunk: when the caller stopped speaking
    detected_s: float  # when the end of turn was decided
    audio: np.ndarray  # the turn's audio, 16 kHz, padded before the start


Event = SpeechStarted | TurnEnded


class Endpointer:
    def __init__(self, vad: VoiceActivityDetector, config: VadConfig, start_s: float = 0.0):
        self.vad = vad
        self.config = config
        self._chunk = vad.chunk_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._pos = int(round(start_s * SAMPLE_RATE))  # samples consumed by the VAD so far
        self._pad = int(config.speech_pad_ms * SAMPLE_RATE / 1000)
        self._history = np.zeros(0, dtype=np.float32)  # recent audio for the pre-speech pad
        self._speech: list[np.ndarray] = []
        self._voiced_run = 0  # consecutive voiced samples before speech is confirmed
        self._silence_run = 0
        self._in_speech = False
        self._confirmed = False
        self._start = 0
        self._last_voiced_end = 0

    @property
    def in_speech(self) -> bool:
        return self._confirmed

    def feed(self, samples: np.ndarray) -> list[Event]:
        events: list[Event] = []
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            events.extend(self._step(chunk))
        return events

    def flush(self) -> list[Event]:
        """End of input: a turn still open ends where the audio ends."""
        if self._pending.size:
            events = self.feed(np.zeros(self._chunk - len(self._pending), dtype=np.float32))
        else:
            events = []
        if self._in_speech and self._confirmed:
            events.append(self._end_turn())
        self._reset_turn()
        return events

    def _step(self, chunk: np.ndarray) -> list[Event]:
        events: list[Event] = []
        prob = self.vad.speech_probability(chunk)
        start = self._pos
        self._pos += len(chunk)
        # Hysteresis, as Silero's own segmenter does: a turn starts above `threshold` and carries on
        # while the probability stays above `threshold - 0.15` (phone audio hovers near the line).
        voiced = prob >= (self.config.threshold - 0.15 if self._in_speech else self.config.threshold)
        if not self._in_speech:
            if voiced:
                self._in_speech = True
                self._start = start
                self._speech = [self._history[-self._pad :] if self._pad else np.zeros(0, np.float32), chunk]
                self._voiced_run = len(chunk)
                self._silence_run = 0
                self._last_voiced_end = self._pos
            else:
                self._history = np.concatenate([self._history, chunk])[-max(self._pad, 1) :]
            if self._in_speech and self._voiced_run >= self.config.min_speech_ms * SAMPLE_RATE / 1000:
                self._confirmed = True
                events.append(SpeechStarted(self._start / SAMPLE_RATE))
            return events
        self._speech.append(chunk)
        if voiced:
            self._silence_run = 0
            self._last_voiced_end = self._pos
            if not self._confirmed:
                self._voiced_run += len(chunk)
                if self._voiced_run >= self.config.min_speech_ms * SAMPLE_RATE / 1000:
                    self._confirmed = True
                    events.append(SpeechStarted(self._start / SAMPLE_RATE))
        else:
            self._silence_run += len(chunk)
            if not self._confirmed and self._silence_run >= len(chunk) * 3:
                # a click or a breath: too short to be a turn
                self._reset_turn()
            elif self._confirmed and self._silence_run >= self.config.min_silence_ms * SAMPLE_RATE / 1000:
                events.append(self._end_turn())
                self._reset_turn()
        return events

    def _end_turn(self) -> TurnEnded:
        audio = np.concatenate(self._speech)
        # keep a little of the trailing silence (it helps the ASR) but not the whole window
        keep_tail = int(0.2 * SAMPLE_RATE)
        excess = (self._pos - self._last_voiced_end) - keep_tail
        if excess > 0:
            audio = audio[: len(audio) - excess]
        return TurnEnded(
            start_s=self._start / SAMPLE_RATE,
            speech_end_s=self._last_voiced_end / SAMPLE_RATE,
            detected_s=self._pos / SAMPLE_RATE,
            audio=audio,
        )

    def _reset_turn(self) -> None:
        self._in_speech = False
        self._confirmed = False
        self._speech = []
        self._voiced_run = 0
        self._silence_run = 0
        self._history = np.zeros(0, dtype=np.float32)
        # the VAD's recurrent state is not reset: it runs across turns, as on a live stream
