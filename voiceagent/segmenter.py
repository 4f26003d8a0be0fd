"""Speech segmentation: VAD probabilities to stretches of speech, for live calls and whole files alike.

One state machine, fed 16 kHz audio of any frame size, chunk by chunk as the VAD needs it:
- hysteresis, as Silero's own segmenter does: a candidate turn opens on a chunk above `threshold`
  and carries on while the probability stays above `threshold - 0.15` (phone audio hovers near the
  line); it is a turn once `min_speech_ms` of it is voiced, and dropped (a click, a breath) after
  three silent chunks before that;
- the turn's audio is kept from `speech_pad_ms` before its first voiced chunk (or from wherever the
  audio began, if that is nearer: nothing before the start is invented or cut);
- `SpeechStarted` once `started_after_ms` is voiced (a live call pauses the agent on it: barge-in),
  `SpeechStopped` after `PAUSE_MS` of silence in a turn (a pause worth decoding at), and
  `SpeechDiscarded` when a candidate that was announced turns out too short;
- a turn ends after `end_silence_ms` of silence (whole files), or when the owner says so (live calls
  end turns on the words heard: voiceagent/turn_detector.py).

`feed` is a generator: it yields after every chunk, so the owner can act on that chunk (decode at a
pause, end the turn) before the next one is heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .config import VadConfig
from .events import Event, SpeechDiscarded, SpeechStarted, SpeechStopped
from .vad import SAMPLE_RATE, VoiceActivityDetector

PAUSE_MS = 96  # voiced audio followed by this much silence is a pause worth decoding at
TAIL_KEEP_S = 0.2  # trailing silence kept after the last voiced chunk (Whisper likes a little)
CARRY_MAX_S = 1.5  # the most audio a short syllable carries into the turn that follows it
WARM_UP_S = 0.5  # silence the VAD hears before a file's first sample (see Segmenter's `warm_up`)


@dataclass(frozen=True)
class SpeechSegment:
    """A finished stretch of speech (a turn), with its audio."""

    start_s: float  # first voiced chunk (before padding)
    speech_end_s: float  # end of the last voiced chunk: when the speaker stopped
    detected_s: float  # when the end was decided (the silence window closed, or the input ended)
    audio: np.ndarray  # 16 kHz: from the pad before the start to TAIL_KEEP_S after the speech
    audio_start_s: float  # where `audio[0]` lies on the timeline


@dataclass(frozen=True)
class Heard:
    """What one VAD chunk did to the segmentation."""

    voiced: bool  # the chunk counts as speech (after hysteresis)
    events: tuple[Event, ...] = ()  # SpeechStarted / SpeechStopped / SpeechDiscarded, in order
    confirmed: bool = False  # this chunk made the candidate a turn (min_speech_ms voiced)
    resumed: bool = False  # voiced again after a pause
    paused: bool = False  # this chunk completed PAUSE_MS of silence in a turn
    discarded: bool = False  # the candidate was too short to be a turn, and is gone
    ended: SpeechSegment | None = None  # the turn ended after `end_silence_ms` of silence


class Segmenter:
    def __init__(self, vad: VoiceActivityDetector, config: VadConfig, *, started_after_ms: int | None = None,
                 end_silence_ms: int | None = None, carry_hold_ms: int | None = None,
                 now: Callable[[], float] | None = None, warm_up: bool = False):
        """`started_after_ms`: voiced audio that announces speech (default `min_speech_ms`).
        `end_silence_ms`: silence that ends a turn; None: the owner ends turns (`end_turn`).
        `carry_hold_ms`: an announced syllable too short to be a turn starts the next turn if that
        one opens within this long (a live caller's "你" of "你好"); None: no carrying.
        `now`: the clock events are stamped with (`at_s`); default: the position in the audio.
        `warm_up`: the VAD first hears WARM_UP_S of silence (not on the timeline). Silero is recurrent:
        from a cold state it reads the first ~0.2 s of speech on phone audio as silence, longer than the
        pad, so a file whose speech starts at sample 0 lost its first word. A live turn has the line's
        silence before it; a file, whose prompt may start at once, is given that silence here."""
        self.vad = vad
        self.config = config
        self.started_after = (config.min_speech_ms if started_after_ms is None else started_after_ms) * SAMPLE_RATE / 1000
        self.end_silence = None if end_silence_ms is None else end_silence_ms * SAMPLE_RATE / 1000
        self.carry_hold = None if carry_hold_ms is None else int(carry_hold_ms * SAMPLE_RATE / 1000)
        self.now = now or (lambda: self.pos / SAMPLE_RATE)
        self.chunk = vad.chunk_samples
        self.pad = int(config.speech_pad_ms * SAMPLE_RATE / 1000)
        self.min_speech = config.min_speech_ms * SAMPLE_RATE / 1000
        self.pause = PAUSE_MS * SAMPLE_RATE / 1000
        self.pos = 0  # samples consumed on the timeline (16 kHz)
        self._pending = np.zeros(0, np.float32)
        self._history = np.zeros(0, np.float32)  # audio before the turn, for the pad
        self._carry: tuple[int, int] | None = None  # (start, until) of a short syllable kept in _history
        if warm_up:
            silence = np.zeros(self.chunk, np.float32)
            for _ in range(int(np.ceil(WARM_UP_S * SAMPLE_RATE / self.chunk))):
                vad.speech_probability(silence)
        self.reset_turn()

    # -- the turn -------------------------------------------------------------------------------
    def reset_turn(self) -> None:
        """Forget the open turn (ended, discarded or judged a backchannel). The VAD's recurrent state
        and the audio heard before the turn are kept: they run on across turns, as the line does."""
        self.in_speech = False  # a candidate turn is open
        self.confirmed = False  # ... and long enough to be one
        self.started = False  # SpeechStarted was emitted for it
        self.paused = False  # PAUSE_MS of silence since its last voiced chunk
        self._buffer: list[np.ndarray] = []
        self.turn_len = 0  # samples in the turn's audio buffer
        self.start = 0  # timeline sample of the first voiced chunk
        self.turn_t0 = 0  # timeline sample of the buffer's first sample (the start minus the pad)
        self.voiced_run = 0  # voiced samples since the turn opened or the last pause
        self.voiced_total = 0  # voiced samples in this turn
        self.silence_run = 0
        self.last_voiced_end = 0  # timeline sample where the last voiced chunk ended

    @property
    def silence_ms(self) -> float:
        return self.silence_run * 1000 / SAMPLE_RATE

    def audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """The open turn's audio between two offsets into its buffer."""
        audio = np.concatenate(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        self._buffer = [audio]
        return audio[start:end]

    def end_turn(self) -> SpeechSegment:
        """Close the open turn here: its audio, through TAIL_KEEP_S of the silence after it."""
        speech_end = self.last_voiced_end - self.turn_t0
        end = min(self.turn_len, speech_end + int(TAIL_KEEP_S * SAMPLE_RATE))
        segment = SpeechSegment(start_s=self.start / SAMPLE_RATE, speech_end_s=self.last_voiced_end / SAMPLE_RATE,
                                detected_s=self.pos / SAMPLE_RATE, audio=self.audio(0, end),
                                audio_start_s=self.turn_t0 / SAMPLE_RATE)
        self.reset_turn()
        return segment

    # -- input ----------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> Iterator[Heard]:
        """Hear `samples`; yields once per VAD chunk completed, before the next one is heard."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= self.chunk:
            chunk, self._pending = self._pending[: self.chunk], self._pending[self.chunk :]
            yield self._step(chunk)

    def flush(self) -> Iterator[Heard]:
        """End of input: the last partial chunk is heard, padded with silence. A turn still open stays
        open for the owner to end (`end_turn`)."""
        if self._pending.size:
            yield from self.feed(np.zeros(self.chunk - len(self._pending), np.float32))

    def _step(self, chunk: np.ndarray) -> Heard:
        prob = self.vad.speech_probability(chunk)
        start = self.pos
        self.pos += len(chunk)
        voiced = prob >= (self.config.threshold - 0.15 if self.in_speech else self.config.threshold)
        if not self.in_speech:
            carry = self._carry is not None and start < self._carry[1]
            if not voiced:
                keep = int(CARRY_MAX_S * SAMPLE_RATE) if carry else max(self.pad, 1)
                self._history = np.concatenate([self._history, chunk])[-keep:]
                if not carry:
                    self._carry = None
                return Heard(voiced=False)
            self._open(start, carry)
        self._append(chunk)
        return self._voiced(chunk) if voiced else self._silent(chunk)

    def _open(self, start: int, carry: bool) -> None:
        self.in_speech = True
        self.start = start
        # the pad: what was heard just before (near the start of the input, all of it there is)
        pad = self._history[-self.pad :] if self.pad else np.zeros(0, np.float32)
        if carry:  # the short syllable just before is where this turn began
            pad = self._history
            self.start = max(self._carry[0], start - len(pad))
        self._carry = None
        self.turn_t0 = start - len(pad)
        self._append(pad)
        self._history = np.zeros(0, np.float32)

    def _append(self, audio: np.ndarray) -> None:
        if len(audio):
            self._buffer.append(audio)
            self.turn_len += len(audio)

    def _voiced(self, chunk: np.ndarray) -> Heard:
        self.silence_run = 0
        self.last_voiced_end = self.pos
        self.voiced_run += len(chunk)
        self.voiced_total += len(chunk)
        resumed, self.paused = self.paused, False
        events: tuple[Event, ...] = ()
        if self.voiced_run >= self.started_after and not self.started:
            self.started = True
            events = (SpeechStarted(self.now(), self.start / SAMPLE_RATE),)
        confirmed = not self.confirmed and self.voiced_run >= self.min_speech
        self.confirmed = self.confirmed or confirmed
        return Heard(voiced=True, events=events, confirmed=confirmed, resumed=resumed)

    def _silent(self, chunk: np.ndarray) -> Heard:
        self.silence_run += len(chunk)
        if not self.confirmed:
            if self.silence_run < 3 * len(chunk):
                return Heard(voiced=False)
            # a click or a breath: too short to be a turn
            events: tuple[Event, ...] = ()
            if self.started:  # a syllable, though: the first of a turn if more follows soon
                events = (SpeechDiscarded(self.now(), self.start / SAMPLE_RATE),)
                if self.carry_hold is not None:
                    self._history = self.audio(0, self.turn_len)[-int(CARRY_MAX_S * SAMPLE_RATE):]
                    self._carry = (self.start, self.pos + self.carry_hold)
            self.reset_turn()
            return Heard(voiced=False, events=events, discarded=True)
        paused = not self.paused and self.silence_run >= self.pause
        events = ()
        if paused:
            self.paused = True
            self.voiced_run = 0
            events = (SpeechStopped(self.now(), self.last_voiced_end / SAMPLE_RATE),)
        ended = None
        if self.end_silence is not None and self.silence_run >= self.end_silence:
            ended = self.end_turn()
        return Heard(voiced=False, events=events, paused=paused, ended=ended)
