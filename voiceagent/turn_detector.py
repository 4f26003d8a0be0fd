"""Live turn-taking for one call: VAD, streaming ASR and the end-of-turn decision.

Fed the caller's audio as it arrives (16 kHz, any frame size), it emits SpeechStarted as soon as the
caller is heard (that is what pauses the agent: barge-in), PartialTranscripts while they speak, and
one FinalTranscript per turn.

Whisper is not incremental, so "streaming" here means decoding *while the caller speaks*, so that
little is left to do when they stop:
- every `partial_interval_ms` of speech the turn so far is decoded (low priority) for partials;
- at every pause the audio since the last committed point is decoded at once (high priority). If the
  caller goes on, a decode of 4 s or more is committed and later decodes start after it; if the
  caller has finished, that decode *is* the final transcript, ready before the silence window ends;
- the words decoded at the pause choose the silence window (turn_completion.py): short after a
  finished sentence, long after "嗯..." or half an order number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .asr import SpeechRecognizer, Transcript
from .config import CallConfig, VadConfig
from .legs import Clock
from .events import (Event, FinalTranscript, PartialTranscript, SpeechDiscarded, SpeechStarted, SpeechStopped,
                     StageFailed)
from .turn_completion import silence_window_ms
from .vad import SAMPLE_RATE, VoiceActivityDetector

log = logging.getLogger(__name__)

PAUSE_MS = 96  # voiced audio followed by this much silence is a pause worth decoding at
COMMIT_MIN_S = 4.0  # a decoded stretch this long is kept when the caller goes on (shorter ones decode
# better again with what follows: Whisper leans on context)
TAIL_KEEP_S = 0.2  # trailing silence kept after the last voiced chunk (Whisper likes a little)
CARRY_MAX_S = 1.5  # the most audio a short syllable carries into the turn that follows it


@dataclass
class _Decode:
    task: asyncio.Task
    start: int  # sample offsets into the turn's audio buffer
    end: int
    urgent: bool
    turn: int
    checks_language: bool = False  # the call's language was only a guess for this decode
    handled: bool = False


def _join(texts: list[str], language: str) -> str:
    joiner = "" if language in ("zh", "ja") else " "
    return joiner.join(t for t in texts if t).strip()


class TurnDetector:
    def __init__(self, vad: VoiceActivityDetector, asr: SpeechRecognizer, vad_config: VadConfig,
                 call_config: CallConfig, emit: Callable[[Event], None], clock: Clock,
                 language: Callable[[], str | None] = lambda: None,
                 expecting_number: Callable[[], bool] = lambda: False, language_pinned: bool = False):
        """`language`: the call's language so far (decodes use it); unless `language_pinned`, each
        turn checks once whether the caller switched (SpeechRecognizer.transcribe check_switch)."""
        self.vad = vad
        self.asr = asr
        self.config = vad_config
        self.call = call_config
        self.emit = emit
        self.clock = clock
        self.now = clock.now
        self.language = language
        self.language_pinned = language_pinned
        self.expecting_number = expecting_number
        self._chunk = vad.chunk_samples
        self._pending = np.zeros(0, np.float32)
        self._pos = 0  # samples consumed on the call's timeline (16 kHz)
        self._pad = int(vad_config.speech_pad_ms * SAMPLE_RATE / 1000)
        self._history = np.zeros(0, np.float32)
        self._carry: tuple[int, int] | None = None  # (start, until) of a short syllable kept in _history
        # Deciding the end of a turn waits for a decode; it runs beside the frame loop, which goes on
        # hearing the caller (a new syllable must pause the agent however busy the recogniser is).
        self._decider: asyncio.Task | None = None
        self._pause_no = 0
        self._reset_turn()

    # -- state --------------------------------------------------------------------------------
    def _reset_turn(self) -> None:
        self._turn_id = getattr(self, "_turn_id", 0) + 1
        self.in_speech = False  # a candidate turn is open
        self._confirmed = False  # ... and long enough to be one
        self._started_emitted = False
        self._buffer: list[np.ndarray] = []
        self._buffer_len = 0
        self._start = 0  # timeline sample of the first voiced chunk
        self._buffer_t0 = 0  # timeline sample of the buffer's first sample (start minus the pad)
        self._voiced_run = 0
        self.voiced_total = 0  # voiced samples in this turn
        self._silence_run = 0
        self._last_voiced_end = 0
        self._paused = False
        self._committed: list[str] = []
        self._commit_at = 0  # buffer offset decodes start from
        self._turn_language: str | None = None
        self._decode: _Decode | None = None
        self._decoded: tuple[_Decode, Transcript] | None = None  # the latest finished decode
        self._last_partial_at = 0
        self._window_ms: int | None = None
        self._decided: Transcript | None = None  # the transcript the window was chosen from
        self._stop_deciding()

    @property
    def speech_end_s(self) -> float:
        return self._last_voiced_end / SAMPLE_RATE

    def discard_turn(self) -> None:
        """The session judged the open turn a backchannel: forget it."""
        self._cancel_tasks()
        self._reset_turn()

    def close(self) -> None:
        self._cancel_tasks()

    def _cancel_tasks(self) -> None:
        if self._decode is not None:
            self._decode.task.cancel()
        self._stop_deciding()

    def _stop_deciding(self) -> None:
        if self._decider is not None and self._decider is not asyncio.current_task():
            self._decider.cancel()
        self._decider = None

    # -- input --------------------------------------------------------------------------------
    async def feed(self, samples: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            await self._step(chunk)

    async def flush(self) -> None:
        """End of input: a turn still open ends where the audio ends."""
        if self._pending.size:
            await self.feed(np.zeros(self._chunk - len(self._pending), np.float32))
        self._stop_deciding()
        if self.in_speech and self._confirmed:
            try:
                await self._end_turn()
            except Exception as exc:
                self._asr_failed(exc)
        self._reset_turn()

    async def _step(self, chunk: np.ndarray) -> None:
        prob = self.vad.speech_probability(chunk)
        start = self._pos
        self._pos += len(chunk)
        # Hysteresis, as Silero's own segmenter does: a turn starts above `threshold` and carries on
        # while the probability stays above `threshold - 0.15` (phone audio hovers near the line).
        voiced = prob >= (self.config.threshold - 0.15 if self.in_speech else self.config.threshold)
        if not self.in_speech:
            carry = self._carry is not None and start < self._carry[1]
            if not voiced:
                keep = int(CARRY_MAX_S * SAMPLE_RATE) if carry else max(self._pad, 1)
                self._history = np.concatenate([self._history, chunk])[-keep:]
                if not carry:
                    self._carry = None
                return
            self.in_speech = True
            self._start = start
            pad = self._history[-self._pad:] if self._pad else np.zeros(0, np.float32)
            if carry:  # the short syllable just before is where this turn began
                pad = self._history
                self._start = max(self._carry[0], start - len(pad))
            self._carry = None
            self._buffer_t0 = start - len(pad)
            self._append(pad)
            self._history = np.zeros(0, np.float32)
        self._append(chunk)
        if voiced:
            self._voiced(chunk)
        else:
            await self._silent(chunk)

    def _append(self, audio: np.ndarray) -> None:
        if len(audio):
            self._buffer.append(audio)
            self._buffer_len += len(audio)

    def _voiced(self, chunk: np.ndarray) -> None:
        self._silence_run = 0
        self._last_voiced_end = self._pos
        self._voiced_run += len(chunk)
        self.voiced_total += len(chunk)
        if self._paused:  # the caller goes on: whatever was being decided about the pause is moot
            self._paused = False
            self._window_ms = None
            self._decided = None
            self._stop_deciding()
        if self._voiced_run >= self.call.barge_in_ms * SAMPLE_RATE / 1000 and not self._started_emitted:
            self._started_emitted = True
            self.emit(SpeechStarted(self.now(), self._start / SAMPLE_RATE))
        if not self._confirmed and self._voiced_run >= self.config.min_speech_ms * SAMPLE_RATE / 1000:
            self._confirmed = True
        elif self._confirmed and self._decode is None and \
                self._buffer_len - self._last_partial_at >= self.call.partial_interval_ms * SAMPLE_RATE / 1000 and \
                not getattr(self.asr, "queue_depth", 0):  # partials only from spare capacity
            self._launch(urgent=False)

    async def _silent(self, chunk: np.ndarray) -> None:
        self._silence_run += len(chunk)
        if not self._confirmed:
            if self._silence_run >= 3 * len(chunk):  # a click or a breath: too short to be a turn
                if self._started_emitted:  # a syllable, though: the first of a turn if more follows soon
                    self.emit(SpeechDiscarded(self.now(), self._start / SAMPLE_RATE))
                    self._history = self._audio(0, self._buffer_len)[-int(CARRY_MAX_S * SAMPLE_RATE):]
                    self._carry = (self._start, self._pos + int(self.call.barge_in_hold_ms * SAMPLE_RATE / 1000))
                self._reset_turn()
            return
        if not self._paused and self._silence_run >= PAUSE_MS * SAMPLE_RATE / 1000:
            self._paused = True
            self._pause_no += 1
            self._voiced_run = 0
            self.emit(SpeechStopped(self.now(), self.speech_end_s))
            if self._decode is None:
                self._launch(urgent=True)
        if self._silence_run < self.config.complete_silence_ms * SAMPLE_RATE / 1000:
            return
        # Long enough to end on a finished sentence: what was said decides the window.
        if self._window_ms is None:
            if self._decider is None:
                self._decider = asyncio.get_running_loop().create_task(self._decide(self._pause_no))
            return
        self._end_if_due()

    async def _decide(self, pause_no: int) -> None:
        """Wait for the transcript through the pause; from its words choose the silence window."""
        try:
            result = await self._transcript_to_speech_end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the recogniser failed on this turn: say so, and listen on
            if pause_no == self._pause_no and self._paused:
                self._asr_failed(exc)
                self._reset_turn()
            return
        if pause_no != self._pause_no or not self._paused:
            return  # the caller went on meanwhile
        self._decider = None
        self._decided = result
        text = _join(self._committed + [result.text], result.language)
        self._window_ms = silence_window_ms(text, self.config, self.expecting_number())
        self._end_if_due(late=True)

    def _asr_failed(self, exc: Exception) -> None:
        log.error("ASR failed on a turn", exc_info=exc)
        self.emit(StageFailed(self.now(), "asr", f"{type(exc).__name__}: {exc}"))

    def _end_if_due(self, late: bool = False) -> None:
        if self._decided is None or self._window_ms is None:
            return
        over_ms = self._silence_run * 1000 / SAMPLE_RATE - self._window_ms
        if over_ms < 0:
            return
        # The transcript was ready within the window unless it is only just in (late): then the
        # caller waited on the recogniser for as long as the window has been over.
        self._emit_final(self._decided, asr_ms=over_ms if late else 0.0)
        self._reset_turn()

    # -- decoding -----------------------------------------------------------------------------
    def _audio(self, start: int, end: int) -> np.ndarray:
        audio = np.concatenate(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        self._buffer = [audio]
        return audio[start:end]

    def _launch(self, urgent: bool) -> None:
        start = self._commit_at
        tail_end = self._last_voiced_end - self._buffer_t0 + int(TAIL_KEEP_S * SAMPLE_RATE)
        end = min(self._buffer_len, tail_end) if urgent else self._buffer_len
        if end - start < self._chunk:
            return
        audio = self._audio(start, end)
        language = self._turn_language or self.language()
        check = language is not None and self._turn_language is None and not self.language_pinned
        task = asyncio.get_running_loop().create_task(
            self.clock.run_in_thread(self.asr.transcribe, audio, language, urgent, check))
        decode = _Decode(task, start, end, urgent, self._turn_id, checks_language=check)
        self._decode = decode
        if not urgent:
            self._last_partial_at = self._buffer_len
        task.add_done_callback(lambda t, d=decode: self._decoded_cb(d, t))

    def _decoded_cb(self, decode: _Decode, task: asyncio.Task) -> None:
        if self._decode is decode:
            self._decode = None
        if decode.handled:
            return
        decode.handled = True
        if task.cancelled() or task.exception() is not None:
            return  # the final decode is retried (and its error surfaced) at the end of turn
        result: Transcript = task.result()
        if decode.turn != self._turn_id or decode.start != self._commit_at:
            return  # a decode of a turn (or a stretch) that is gone
        self._decoded = (decode, result)
        if self._turn_language is None and decode.checks_language and result.language_scores:
            self._turn_language = result.language  # the call's language checked (kept, or switched): once a turn
        elif self._turn_language is None and decode.end - decode.start >= COMMIT_MIN_S * SAMPLE_RATE and \
                result.language_probability >= 0.8:
            self._turn_language = result.language  # detected on enough speech to trust: keep it for the turn
        text = _join(self._committed + [result.text], result.language)
        if result.text:
            self.emit(PartialTranscript(self.now(), text, result.language))
        # The caller went on after this pause: keep what was decoded so far.
        resumed = self._last_voiced_end - self._buffer_t0 > decode.end
        if decode.urgent and resumed and (decode.end - decode.start) >= COMMIT_MIN_S * SAMPLE_RATE and result.text:
            self._committed.append(result.text)
            self._commit_at = decode.end
            self._decoded = None
        if self._paused and self._decode is None and not self._covered():
            self._launch(urgent=True)  # the caller paused while this ran: decode up to the pause now

    def _covered(self) -> bool:
        """The latest decode covers everything since the last commit through the last voiced chunk."""
        done = self._decoded
        return done is not None and done[0].start == self._commit_at and \
            done[0].end >= self._last_voiced_end - self._buffer_t0

    async def _transcript_to_speech_end(self) -> Transcript:
        """The transcript of the stretch since the last commit, through the last voiced chunk."""
        while True:
            if self._decode is not None:
                decode = self._decode
                try:
                    await asyncio.shield(decode.task)
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                except Exception:
                    pass
                self._decoded_cb(decode, decode.task)
                continue
            if self._covered():
                return self._decoded[1]
            # nothing covers it yet (or the decode failed): decode now, and let errors out
            self._launch(urgent=True)
            if self._decode is None:  # too little audio to decode
                return Transcript("", self._turn_language or self.language() or "", 0.0, 0.0)
            decode = self._decode
            result = await decode.task
            self._decoded_cb(decode, decode.task)
            if self._decoded is None or self._decoded[0] is not decode:
                return result

    async def _end_turn(self) -> None:
        t0 = time.perf_counter()
        result = await self._transcript_to_speech_end()
        self._emit_final(result, asr_ms=(time.perf_counter() - t0) * 1000)

    def _emit_final(self, result: Transcript, asr_ms: float) -> None:
        language = result.language or self._turn_language or ""
        text = _join(self._committed + [result.text], language)
        speech = max(0, min(self._buffer_len, self._last_voiced_end - self._buffer_t0))
        audio = self._audio(0, speech) if speech else None
        self.emit(FinalTranscript(
            at_s=self.now(), text=text, language=language, language_probability=result.language_probability,
            # decided: when the silence window closed; the transcript may have come after (asr_ms)
            start_s=self._start / SAMPLE_RATE, speech_end_s=self.speech_end_s, decided_s=self.now() - asr_ms / 1000,
            asr_ms=round(asr_ms, 1), audio=audio, language_scores=dict(result.language_scores),
        ))
