"""Live turn-taking for one call: streaming ASR and the end-of-turn decision, on the segmenter's speech.

Fed the caller's audio as it arrives (16 kHz, any frame size), it emits SpeechStarted as soon as the
caller is heard (that is what pauses the agent: barge-in), PartialTranscripts while they speak, and
one FinalTranscript per turn. What is speech and what is silence (hysteresis, the pad, pauses, the
short syllable carried into the next turn) is the segmenter's (segmenter.py, shared with whole-file
transcription); this module adds the decoding and decides when a turn has ended.

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
from .events import Event, FinalTranscript, PartialTranscript, StageFailed
from .turn_completion import silence_window_ms
from .turn_end import load_model
from .segmenter import PAUSE_MS, TAIL_KEEP_S, Heard, Segmenter  # noqa: F401 (PAUSE_MS: re-exported)
from .vad import SAMPLE_RATE, VoiceActivityDetector

log = logging.getLogger(__name__)

COMMIT_MIN_S = 4.0  # a decoded stretch this long is kept when the caller goes on (shorter ones decode
# better again with what follows: Whisper leans on context)


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
                 expecting_number: Callable[[], bool] = lambda: False, language_pinned: bool = False,
                 domain: str = "service"):
        """`language`: the call's language so far (decodes use it); unless `language_pinned`, each
        turn checks once whether the caller switched (SpeechRecognizer.transcribe check_switch)."""
        self.vad = vad
        self.asr = asr
        self.domain = domain  # which words the recogniser expects (asr.transcribe)
        self.config = vad_config
        self.call = call_config
        self.emit = emit
        self.clock = clock
        self.now = clock.now
        self.language = language
        self.language_pinned = language_pinned
        self.expecting_number = expecting_number
        if vad_config.turn_end_model:
            load_model(vad_config.turn_end_model)  # a missing model fails here, at the call's start, not at its first pause
        # SpeechStarted as soon as barge_in_ms is voiced; a syllable too short to be a turn starts the
        # next one if that follows within barge_in_hold_ms (the agent stays paused that long).
        self.segmenter = Segmenter(vad, vad_config, started_after_ms=call_config.barge_in_ms,
                                   carry_hold_ms=call_config.barge_in_hold_ms, now=clock.now)
        # Deciding the end of a turn waits for a decode; it runs beside the frame loop, which goes on
        # hearing the caller (a new syllable must pause the agent however busy the recogniser is).
        self._decider: asyncio.Task | None = None
        self._pause_no = 0
        self._reset_turn()

    # -- state --------------------------------------------------------------------------------
    def _reset_turn(self) -> None:
        self._turn_id = getattr(self, "_turn_id", 0) + 1
        self.segmenter.reset_turn()
        self._committed: list[str] = []
        self._commit_at = 0  # buffer offset decodes start from
        self._turn_language: str | None = None
        self._decode: _Decode | None = None
        self._decoded: tuple[_Decode, Transcript] | None = None  # the latest finished decode
        self._last_partial_at = 0
        self._window_ms: int | None = None
        self._decided: Transcript | None = None  # the transcript the window was chosen from
        self._failure: Exception | None = None  # the decode through the pause failed
        self._stop_deciding()

    @property
    def in_speech(self) -> bool:
        """A candidate turn is open."""
        return self.segmenter.in_speech

    @property
    def voiced_total(self) -> int:
        """Voiced samples in this turn."""
        return self.segmenter.voiced_total

    @property
    def speech_end_s(self) -> float:
        return self.segmenter.last_voiced_end / SAMPLE_RATE

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
        for heard in self.segmenter.feed(samples):
            self._heard(heard)

    async def flush(self) -> None:
        """End of input: a turn still open ends where the audio ends."""
        for heard in self.segmenter.flush():
            self._heard(heard)
        self._stop_deciding()
        if self.in_speech and self.segmenter.confirmed:
            try:
                await self._end_turn()
            except Exception as exc:
                self._asr_failed(exc)
        self._reset_turn()

    def _heard(self, heard: Heard) -> None:
        for event in heard.events:  # SpeechStarted (barge-in), SpeechStopped, SpeechDiscarded
            self.emit(event)
        if heard.discarded:
            self._reset_turn()
        elif heard.voiced:
            self._voiced(heard)
        elif self.in_speech:
            self._silent(heard)

    def _voiced(self, heard: Heard) -> None:
        if heard.resumed:  # the caller goes on: whatever was being decided about the pause is moot
            self._window_ms = None
            self._decided = None
            self._failure = None
            self._stop_deciding()
        seg = self.segmenter
        if seg.confirmed and not heard.confirmed and self._decode is None and \
                seg.turn_len - self._last_partial_at >= self.call.partial_interval_ms * SAMPLE_RATE / 1000 and \
                not getattr(self.asr, "queue_depth", 0):  # partials only from spare capacity
            self._launch(urgent=False)

    def _silent(self, heard: Heard) -> None:
        seg = self.segmenter
        if not seg.confirmed:
            return
        if heard.paused:
            self._pause_no += 1
            if self._decode is None:
                self._launch(urgent=True)
        if seg.silence_run < self.config.complete_silence_ms * SAMPLE_RATE / 1000:
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
            if pause_no == self._pause_no and self.segmenter.paused:
                # with no words to judge by, the turn is over only after the unsure window (a
                # breath inside the sentence must not bring an apology over the caller)
                self._decider = None
                self._failure = exc
                self._window_ms = self.config.unsure_silence_ms
                self._end_if_due()
            return
        if pause_no != self._pause_no or not self.segmenter.paused:
            return  # the caller went on meanwhile
        self._decider = None
        self._decided = result
        text = _join(self._committed + [result.text], result.language)
        seg = self.segmenter
        speech = max(0, min(seg.turn_len, seg.last_voiced_end - seg.turn_t0))
        voice = seg.audio(max(0, speech - 3 * SAMPLE_RATE), speech) if speech else None  # the last syllables' prosody
        language = result.language or self._turn_language or self.language() or ""
        self._window_ms = silence_window_ms(text, self.config, self.expecting_number(), voice, language)
        self._end_if_due(late=True)

    def _asr_failed(self, exc: Exception) -> None:
        log.error("ASR failed on a turn", exc_info=exc)
        self.emit(StageFailed(self.now(), "asr", f"{type(exc).__name__}: {exc}"))

    def _end_if_due(self, late: bool = False) -> None:
        if self._failure is not None and self._window_ms is not None:
            if self.segmenter.silence_ms >= self._window_ms:
                self._asr_failed(self._failure)
                self._reset_turn()
            return
        if self._decided is None or self._window_ms is None:
            return
        over_ms = self.segmenter.silence_ms - self._window_ms
        if over_ms < 0:
            return
        # The transcript was ready within the window unless it is only just in (late): then the
        # caller waited on the recogniser for as long as the window has been over.
        self._emit_final(self._decided, asr_ms=over_ms if late else 0.0)
        self._reset_turn()

    # -- decoding -----------------------------------------------------------------------------
    def _launch(self, urgent: bool) -> None:
        seg = self.segmenter
        start = self._commit_at
        tail_end = seg.last_voiced_end - seg.turn_t0 + int(TAIL_KEEP_S * SAMPLE_RATE)
        end = min(seg.turn_len, tail_end) if urgent else seg.turn_len
        if end - start < seg.chunk:
            return
        audio = seg.audio(start, end)
        language = self._turn_language or self.language()
        check = language is not None and self._turn_language is None and not self.language_pinned
        task = asyncio.get_running_loop().create_task(
            self.clock.run_in_thread(self._transcribe, audio, language, urgent, check))
        decode = _Decode(task, start, end, urgent, self._turn_id, checks_language=check)
        self._decode = decode
        if not urgent:
            self._last_partial_at = seg.turn_len
        task.add_done_callback(lambda t, d=decode: self._decoded_cb(d, t))

    def _transcribe(self, audio, language, urgent: bool, check: bool):
        if self.domain == "service":
            return self.asr.transcribe(audio, language, urgent, check)
        return self.asr.transcribe(audio, language, urgent, check, domain=self.domain)

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
        resumed = self.segmenter.last_voiced_end - self.segmenter.turn_t0 > decode.end
        if decode.urgent and resumed and (decode.end - decode.start) >= COMMIT_MIN_S * SAMPLE_RATE and result.text:
            self._committed.append(result.text)
            self._commit_at = decode.end
            self._decoded = None
        if self.segmenter.paused and self._decode is None and not self._covered():
            self._launch(urgent=True)  # the caller paused while this ran: decode up to the pause now

    def _covered(self) -> bool:
        """The latest decode covers everything since the last commit through the last voiced chunk."""
        done = self._decoded
        return done is not None and done[0].start == self._commit_at and \
            done[0].end >= self.segmenter.last_voiced_end - self.segmenter.turn_t0

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
        seg = self.segmenter
        speech = max(0, min(seg.turn_len, seg.last_voiced_end - seg.turn_t0))
        audio = seg.audio(0, speech) if speech else None
        self.emit(FinalTranscript(
            at_s=self.now(), text=text, language=language, language_probability=result.language_probability,
            # decided: when the silence window closed; the transcript may have come after (asr_ms)
            start_s=seg.start / SAMPLE_RATE, speech_end_s=self.speech_end_s, decided_s=self.now() - asr_ms / 1000,
            asr_ms=round(asr_ms, 1), audio=audio, language_scores=dict(result.language_scores),
        ))
