"""One call: the real-time engine every transport drives.

    leg.receive() ─► listen: frames in order, gaps filled ─► TurnDetector (VAD, streaming ASR,
        │               DTMF keys, silence/length timers      end of turn from the words)
        │                                                          │ events
        │        ┌─────────────── turn-taking (barge-in, backchannels) ◄──┤
        │        ▼                                                 ▼
        └── Playout (20 ms pacing) ◄── reply: dialog ─► text pieces ─► TTS ─► audio pieces

Small stages passing typed events (events.py); each runs as its own task or in worker threads, so
a slow model call never stalls the frame loop, and many calls share one process and one set of
models (CPU-heavy work runs in threads: CTranslate2, ONNX Runtime and llama.cpp release the GIL).
Observers (a LatencyObserver per call, the log) see every event. The record of the call is kept
whatever happens: a stage that fails is reported and the call recovers or ends cleanly; other
calls never notice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .audio import AudioFrame, resample
from .config import CallConfig
from .dialog import templates
from .dialog.engine import DialogState, Reply
from .events import (Dtmf, Event, FinalTranscript, Hangup, IntentRecognized, Interruption,
                     PartialTranscript, PlaybackPaused, PlaybackResumed, ReplyText, SpeechDiscarded, SpeechStarted,
                     StageFailed, TransferRequested)
from .latency import LatencyObserver
from .legs import CallLeg, DtmfDigit, TransferResult
from .playout import Playout, ReplyPlayback
from .record import AgentTurn, CallerTurn, CallRecord
from .runtime import Runtime
from .textnorm import mask_pii
from .tts import split_sentences, synthesize_clauses
from .turn_completion import is_backchannel, is_interruption
from .turn_detector import TurnDetector

log = logging.getLogger(__name__)

ENGINE_RATE = 16000
MAX_GAP_FILL_S = 30.0  # a longer hole in the input restarts the timeline instead of being filled


@dataclass
class SessionOptions:
    language: str = "auto"  # "zh", "en" or "auto"
    customer_id: str | None = None
    handoff_target: str | None = None  # None: [escalation] targets
    greeting: bool | None = None  # None: as configured ([call] greeting)
    call: CallConfig | None = None  # None: the runtime's [call] section


@dataclass
class _Prompt:
    """Something the agent says on its own: greeting, re-prompt, goodbye, an apology."""

    key: str
    kind: str
    trigger_s: float  # what it answers: the call's start, the silence deadline...
    hangup: str | None = None  # end the call afterwards, for this reason


@dataclass
class _BargeIn:
    speech_start_s: float
    hold_until_s: float | None = None  # after a syllable too short to be a turn: resume then unless more


@dataclass
class _Stats:
    frames_in: int = 0
    frames_dropped: int = 0
    gaps_filled_ms: float = 0.0
    barge_ins: int = 0
    backchannels: int = 0
    stage_failures: int = 0
    stop_ms: list[float] = field(default_factory=list)  # caller speech start -> agent audio stopped


class CallSession:
    def __init__(self, runtime: Runtime, leg: CallLeg, options: SessionOptions | None = None,
                 call_id: str | None = None, observers: list[Callable[[Event], None]] | None = None,
                 on_handoff: Callable[[dict], None] | None = None):
        """`on_handoff`: called with the handoff summary just before a transfer (to store it where the
        human's desk reads it, CallStore.save_handoff)."""
        self.rt = runtime
        self.leg = leg
        self.options = options or SessionOptions()
        self.call = self.options.call or runtime.config.call
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.on_handoff = on_handoff
        pinned = self.options.language if self.options.language in ("zh", "en") else None
        self.language = pinned
        self.state = DialogState(language=pinned or runtime.config.dialog.default_language,
                                 customer_id=self.options.customer_id)
        self.record = CallRecord(self.call_id, pinned or "", self.options.customer_id, models=runtime.model_names())
        self.latency = LatencyObserver()
        self.observers = [self.latency.on_event, *(observers or [])]
        self.playout = Playout(leg, self.emit, lead_ms=self.call.playout_lead_ms)
        self.detector = TurnDetector(runtime.new_vad(), runtime.asr, runtime.config.vad, self.call, self.emit,
                                     clock=leg.clock, language=lambda: self.language,
                                     expecting_number=self._expecting_number, language_pinned=pinned is not None)
        self._turns: asyncio.Queue[FinalTranscript | _Prompt | None] = asyncio.Queue()
        self._stats = _Stats()
        self._barge: _BargeIn | None = None
        self._replying = False  # the reply stage is working on a turn (thinking or speaking)
        self._finished = asyncio.Event()
        self._turn_no = 0
        self._timeline_s = 0.0  # end of the caller audio fed so far, on the call's timeline
        self._last_activity_s = 0.0  # caller speech or agent audio, for the silence timer
        self._reprompts = 0
        self._errors_in_row = 0
        self._dtmf = ""
        self._dtmf_first_s = self._dtmf_last_s = 0.0
        self._max_length_said = False
        self._interrupt_epoch = 0
        self._cut_turns: dict[int, str] = {}  # reply turn -> what the caller heard of it

    # -- events -------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # an observer never breaks the call
                log.exception("call %s: observer failed on %s", self.call_id, type(event).__name__)
        self._on_event(event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SpeechStarted):
            self._last_activity_s = max(self._last_activity_s, event.start_s)
            # (a turn waiting in the queue counts: its reply must not start over the caller either)
            busy = self.playout.active or self._replying or not self._turns.empty()
            if self.call.barge_in and busy and self._barge is None:
                self.playout.pause()
                self._barge = _BargeIn(event.start_s)
                self.emit(PlaybackPaused(event.at_s))
        elif isinstance(event, PartialTranscript):
            # "嗯" and a pause: carry on speaking. (Anything else waits for the caller's turn to end, or
            # to run past a backchannel's length: partials of a few syllables are too unreliable.)
            if self._barge is not None and is_backchannel(event.text) and \
                    self.detector.speech_end_s < self._timeline_s - 0.09:
                self._let_backchannel_through()
        elif isinstance(event, SpeechDiscarded):
            # Too short to be a turn, but it may be the first syllable of one ("你" of "你好"): stay
            # paused a moment; the listen loop resumes the agent if nothing follows.
            if self._barge is not None:
                self._barge.hold_until_s = self._timeline_s + self.call.barge_in_hold_ms / 1000
        elif isinstance(event, FinalTranscript):
            self._last_activity_s = max(self._last_activity_s, event.speech_end_s)
            text = event.text.strip()
            if self._barge is not None:
                # Still paused, so the turn was shorter than backchannel_max_ms (longer ones have
                # interrupted already): it stops the agent only if it says so.
                if event.source == "voice" and not is_interruption(text):
                    self._let_backchannel_through(discard=False)
                    return
                self._interrupt()
            elif not text or (is_backchannel(text) and event.source == "voice" and self._replying):
                return  # noise, or "ok" while the agent is still thinking
            self._reprompts = 0
            self._turns.put_nowait(event)
        elif isinstance(event, StageFailed):
            self._stats.stage_failures += 1
            self.record.errors.append(f"{event.stage}: {event.error}")
            if event.stage == "asr":  # the recogniser failed on a turn: ask again
                self._after_failure("not_heard", event)

    # -- turn-taking --------------------------------------------------------------------------
    def _interrupt(self) -> None:
        barge, self._barge = self._barge, None
        self._interrupt_epoch += 1  # a reply still being thought of is not said either
        cut = self.playout.drop()
        now = self.leg.clock.now()
        for playback in cut:
            heard = playback.heard_text(now, self.playout.rate)
            self._cut_turns[playback.turn] = heard
            stopped = playback.end_s if playback.end_s is not None else now
            self.emit(Interruption(now, barge.speech_start_s if barge else now, stopped, heard))
            if barge is not None and playback.start_s is not None:
                self._stats.stop_ms.append(round(max(0.0, stopped - barge.speech_start_s) * 1000, 1))
        self._stats.barge_ins += 1

    def _let_backchannel_through(self, discard: bool = True) -> None:
        self._barge = None
        self._stats.backchannels += 1
        if discard:
            self.detector.discard_turn()
        self.playout.resume()
        self.emit(PlaybackResumed(self.leg.clock.now()))

    def _expecting_number(self) -> bool:
        return self.state.pending_intent is not None and "order_id" not in self.state.slots

    def _stage_failed(self, stage: str, exc: Exception, key: str = "system_error") -> None:
        log.error("call %s: %s failed: %s: %s", self.call_id, stage, type(exc).__name__, exc)
        event = StageFailed(self.leg.clock.now(), stage, f"{type(exc).__name__}: {exc}")
        self.emit(event)
        self._after_failure(key, event)

    def _after_failure(self, key: str, event: StageFailed) -> None:
        """Apologise and listen on; after `max_stage_errors` failures in a row, end the call."""
        self._errors_in_row += 1
        if self._errors_in_row >= self.call.max_stage_errors:
            self.record.outcome.error = f"{event.stage}: {event.error}"
            self._end("error", "stage_errors")
        else:
            self._turns.put_nowait(_Prompt(key, "notice", event.at_s))

    def _end(self, by: str, reason: str | None = None) -> None:
        if self._finished.is_set():
            return
        self.record.outcome.ended_by = by
        self.record.outcome.end_reason = reason
        self.emit(Hangup(self.leg.clock.now(), by, reason))
        self._finished.set()

    # -- the call -----------------------------------------------------------------------------
    async def run(self) -> CallRecord:
        greeting = self.call.greeting if self.options.greeting is None else self.options.greeting
        if greeting:
            self._turns.put_nowait(_Prompt("greeting", "greeting", 0.0))
        tasks = [asyncio.create_task(self._listen(), name=f"{self.call_id}-listen"),
                 asyncio.create_task(self._reply_loop(), name=f"{self.call_id}-reply"),
                 asyncio.create_task(self.playout.run(), name=f"{self.call_id}-playout")]
        if self.leg.clock.realtime:
            tasks.append(asyncio.create_task(self._ticker(), name=f"{self.call_id}-timers"))
        listen, reply, playout = tasks[:3]
        try:
            # The call lasts until the caller is gone (input ends) or the agent ends it.
            done_waiter = asyncio.create_task(self._finished.wait())
            await asyncio.wait([listen, done_waiter, playout], return_when=asyncio.FIRST_COMPLETED)
            if listen.done() and not self._finished.is_set() and self.playout.error is None:
                # the caller hung up (or the recording ended): finish the turn in hand, say nothing more
                self._turns.put_nowait(None)
                await asyncio.wait([reply, done_waiter], return_when=asyncio.FIRST_COMPLETED)
            done_waiter.cancel()
        except asyncio.CancelledError:
            self.record.outcome.ended_by = "error"
            self.record.outcome.error = "cancelled"
            raise
        finally:
            self.playout.close()
            self.detector.close()
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results):
                if isinstance(result, Exception):
                    log.error("call %s: %s failed: %r", self.call_id, task.get_name(), result)
                    self.record.errors.append(f"{task.get_name()}: {type(result).__name__}: {result}")
                    self.record.outcome.ended_by = "error"
                    self.record.outcome.error = self.record.outcome.error or f"{type(result).__name__}: {result}"
            if self.playout.error is not None and self.record.outcome.ended_by not in ("transfer", "agent", "error"):
                self.record.outcome.ended_by = "caller"
                self.record.outcome.end_reason = "leg_lost"
            self._finish()
        return self.record

    async def _ticker(self) -> None:
        """Timers on the wall clock too, for legs that go quiet (no frames at all)."""
        while not self._finished.is_set():
            await asyncio.sleep(0.25)
            now = self.leg.clock.now()
            if now - self._timeline_s > 0.5:
                self._check_timers(now)

    async def _listen(self) -> None:
        async for item in self.leg.receive():
            if self._finished.is_set():
                break
            if isinstance(item, DtmfDigit):
                self._on_dtmf(item)
                continue
            try:
                samples = self._in_order(item)
            except Exception:  # a frame nothing can be made of: drop it, keep the call
                log.warning("call %s: unusable frame dropped", self.call_id, exc_info=True)
                self._stats.frames_dropped += 1
                continue
            if samples is None:
                continue
            await self.detector.feed(samples)
            barge = self._barge
            if barge is not None and self.detector.voiced_total >= self.call.backchannel_max_ms * 16:
                self._interrupt()  # too long for "嗯": the caller is taking the turn
            elif barge is not None and barge.hold_until_s is not None and not self.detector.in_speech and \
                    self._timeline_s >= barge.hold_until_s:
                self._let_backchannel_through(discard=False)  # a click or a lone syllable after all
            self._check_timers(self._timeline_s)
        if not self._finished.is_set():
            await self.detector.flush()

    def _in_order(self, frame: AudioFrame) -> np.ndarray | None:
        """The frame's audio at 16 kHz, in timeline order: late duplicates are dropped, holes are filled
        with silence (the VAD and the timers see real time pass), garbage is made safe."""
        self._stats.frames_in += 1
        samples = np.nan_to_num(np.asarray(frame.samples, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if not frame.sample_rate or frame.sample_rate <= 0 or samples.ndim != 1 or samples.size == 0:
            self._stats.frames_dropped += 1
            return None
        samples = np.clip(resample(samples, frame.sample_rate, ENGINE_RATE), -1.0, 1.0)
        gap = frame.start_s - self._timeline_s
        if gap < -0.5 * len(samples) / ENGINE_RATE:  # late, duplicated or out of order
            self._stats.frames_dropped += 1
            return None
        if gap > MAX_GAP_FILL_S:  # a long outage: start again from here
            self._timeline_s = frame.start_s
            self.detector.discard_turn()
        elif gap > 0.005:  # a hole (lost packets): silence, so the VAD and the timers see time pass
            if self._stats.frames_in > 1:  # before the first frame the line was still connecting: no hole
                self._stats.gaps_filled_ms += gap * 1000
            samples = np.concatenate([np.zeros(int(round(gap * ENGINE_RATE)), np.float32), samples])
        self._timeline_s += len(samples) / ENGINE_RATE
        return samples

    def _on_dtmf(self, key: DtmfDigit) -> None:
        digit = key.digit.upper()
        self.emit(Dtmf(key.at_s, digit))
        self._last_activity_s = max(self._last_activity_s, key.at_s)
        if self.playout.active:  # typing over the agent: they know what they want
            self._barge = _BargeIn(key.at_s)
            self._interrupt()
        if digit == "*":
            self._dtmf = ""
        elif digit == "#":
            self._submit_dtmf()
        elif digit in "0123456789ABCD":
            if not self._dtmf:
                self._dtmf_first_s = key.at_s
            self._dtmf += digit
            self._dtmf_last_s = key.at_s

    def _submit_dtmf(self) -> None:
        if not self._dtmf:
            return
        digits, self._dtmf = self._dtmf, ""
        now = self.leg.clock.now()
        self.emit(FinalTranscript(now, digits, self.language or self.state.language, 1.0, self._dtmf_first_s,
                                  self._dtmf_last_s, now, 0.0, source="dtmf"))

    def _check_timers(self, t: float) -> None:
        if self._finished.is_set():
            return
        if self._dtmf and t - self._dtmf_last_s >= self.call.dtmf_timeout_s:
            self._submit_dtmf()
        if t >= self.call.max_call_s and not self._max_length_said:
            self._max_length_said = True
            self._turns.put_nowait(_Prompt("max_length_goodbye", "goodbye", t, hangup="max_duration"))
            return
        busy = self._replying or self.playout.active or self.detector.in_speech or not self._turns.empty() or self._dtmf
        if busy:
            return
        if t - self._last_activity_s >= self.call.reprompt_after_s:
            self._last_activity_s = t
            self._reprompts += 1
            if self._reprompts > self.call.max_reprompts:
                self._turns.put_nowait(_Prompt("silence_goodbye", "goodbye", t, hangup="silence"))
            else:
                self._turns.put_nowait(_Prompt("reprompt", "reprompt", t))

    # -- replies ------------------------------------------------------------------------------
    async def _reply_loop(self) -> None:
        while True:
            item = await self._turns.get()
            try:
                if item is None:
                    return
                if self._finished.is_set():
                    continue
                self._replying = True
                if isinstance(item, _Prompt):
                    await self._say_prompt(item)
                else:
                    await self._answer(item)
            finally:
                self._replying = False
                self._last_activity_s = max(self._last_activity_s, self.leg.clock.now())
                self._turns.task_done()

    def _reply_language(self) -> str:
        return self.state.language if self.state.language in ("zh", "en") else (self.language or "zh")

    async def _say_prompt(self, prompt: _Prompt) -> None:
        text = templates.render(self._reply_language(), prompt.key)
        if not await self._say_text(text, prompt.kind, prompt.trigger_s):
            return  # they spoke up after all
        if prompt.hangup:
            await self._hangup()
            self._end("agent", prompt.hangup)

    async def _say_text(self, text: str, kind: str, trigger_s: float | None = None) -> bool:
        """Say something of the agent's own; False when the caller spoke over it."""
        lang = self._reply_language()
        trigger_s = self.leg.clock.now() if trigger_s is None else trigger_s
        turn = self._next_turn()
        self.latency.begin(turn, trigger_s=trigger_s)
        playback = await self._speak(turn, [text], lang, self._interrupt_epoch)
        if playback is not None:
            agent = AgentTurn(text=text, start_s=0.0, end_s=0.0, latency_ms={}, kind=kind)
            self.record.turns.append(agent)
            await playback.done.wait()
            self._settle_agent_turn(agent, playback, turn)
            if playback.interrupted:
                return False
        return True

    async def _answer(self, final: FinalTranscript) -> None:
        if final.source == "voice" and self.options.language not in ("zh", "en"):
            # the call's language, steadied: one short turn in another language does not switch it
            steady = self.state.languages.observe_language(final.language, final.language_probability,
                                                           final.speech_end_s - final.start_s)
            if steady is not None:
                self.language = steady
        lang = final.language or self.language or self.state.language
        self.record.language = self.language or lang
        text = final.text.strip()
        log.info("call %s caller [%s%s]: %s", self.call_id, lang, "/dtmf" if final.source == "dtmf" else "", mask_pii(text))
        turn = self._next_turn()
        epoch = self._interrupt_epoch
        self.latency.begin(turn, final)
        t1 = time.perf_counter()
        try:
            voice = None
            if final.source == "voice" and final.audio is not None and self.rt.perception is not None:
                voice = await self.leg.clock.run_in_thread(self.rt.perception.hear, final.audio, ENGINE_RATE, text)
            reply: Reply | None = self.rt.dialog.respond_cached(text, self.state, lang, voice, final.start_s)
            if reply is None:
                reply = await self.leg.clock.run_in_thread(
                    functools.partial(self.rt.dialog.respond, text, self.state, lang, cache_checked=True, stream=True,
                                      voice=voice, at_s=final.start_s, language_scores=final.language_scores))
        except Exception as exc:  # a failing dialog: apologise and listen on
            self._stage_failed("dialog", exc)
            return
        dialog_ms = (time.perf_counter() - t1) * 1000
        u = reply.understanding
        self.emit(IntentRecognized(self.leg.clock.now(), turn, reply.intent, u.confidence, dict(u.slots),
                                   round(dialog_ms, 1), reply.llm_first_token_ms))
        emotion = reply.emotion
        self.record.turns.append(CallerTurn(
            text=text, start_s=round(final.start_s, 3), end_s=round(final.speech_end_s, 3), intent=reply.intent,
            confidence=u.confidence, slots=u.slots, emotion=u.emotion, language=lang, dialect=u.dialect, anger=u.anger,
            text_emotion=u.text_emotion, emotion_from=emotion.sources() if emotion else [],
            voice=emotion.voice if emotion else None, escalation=reply.escalation.to_dict(),
        ))
        self.record.dialect = self.state.languages.dialect
        self.record.emotion = {"running_anger": self.state.emotion.running_anger,
                               "peak_anger": max((t.anger for _, t in self.state.emotion.timeline), default=0.0)}
        self.record.slots = dict(self.state.slots)
        agent = AgentTurn(text=reply.text, start_s=0.0, end_s=0.0, latency_ms={}, reply_source=reply.source,
                          grounding=reply.grounding, handoff=reply.handoff)
        pieces = reply.pieces if reply.pieces is not None else split_sentences(reply.text)
        playback = await self._speak(turn, pieces, self.state.language, epoch)
        agent.text = (reply.text or playback.text) if playback is not None else reply.text
        if playback is None or not agent.text:
            return
        self._errors_in_row = 0
        self.record.turns.append(agent)
        await playback.done.wait()
        self._settle_agent_turn(agent, playback, turn)
        log.info("call %s agent: %s (v2v %.0f ms%s)", self.call_id, mask_pii(reply.text),
                 agent.latency_ms["voice_to_voice"], ", interrupted" if agent.interrupted else "")
        outcome = self.record.outcome
        outcome.resolved = outcome.resolved or reply.resolved
        if reply.handoff:
            await self._transfer(reply)

    async def _transfer(self, reply: Reply) -> None:
        """Hand the caller to a person with the summary; if the transfer fails (busy, no answer),
        say so, book a callback, and keep the caller."""
        outcome = self.record.outcome
        # the transport's target, if it names one, except for a dialect: that goes where the policy says
        # ([escalation] targets), to someone who speaks it
        target = reply.handoff_target or "human-queue"
        if self.options.handoff_target and reply.handoff_reason != "dialect":
            target = self.options.handoff_target
        summary = dict(reply.handoff_summary or {}, call_id=self.call_id, target=target)
        outcome.handoff, outcome.handoff_reason, outcome.handoff_target = True, reply.handoff_reason, target
        self.record.handoff = summary
        if self.on_handoff is not None:  # stored before the transfer: the human's screen reads it as the call rings
            try:
                self.on_handoff(summary)
            except Exception:
                log.exception("call %s: storing the handoff summary failed", self.call_id)
        self.emit(TransferRequested(self.leg.clock.now(), target, reply.handoff_reason))
        try:
            result = TransferResult.of(await self.leg.transfer(target, summary))
        except Exception as exc:
            log.exception("call %s: transfer failed", self.call_id)
            self.record.errors.append(f"transfer: {type(exc).__name__}: {exc}")
            result = TransferResult(False, "failed")
        outcome.transfer_ok, outcome.transfer_status = result.ok, result.status
        if result.ok:
            self._end("transfer")
            return
        log.info("call %s: transfer to %s failed (%s): the caller stays", self.call_id, target, result.status)
        lang = self._reply_language()
        try:
            text = await self.leg.clock.run_in_thread(self.rt.dialog.callback_ticket, self.state, summary, lang)
        except Exception:
            log.exception("call %s: callback ticket failed", self.call_id)
            text = templates.render(lang, "transfer_failed_no_ticket")
        outcome.callback_ticket = self.state.callback_ticket
        await self._say_text(text, "notice")

    def _next_turn(self) -> int:
        self._turn_no += 1
        return self._turn_no

    async def _speak(self, turn: int, pieces: Iterable[str], language: str, epoch: int) -> ReplyPlayback | None:
        """Synthesise `pieces` one by one and queue them: the first plays while the next is made (and,
        for a streamed LLM reply, while the next is generated). Returns the playback, or None when
        nothing was said (the caller spoke up first, or the voice failed)."""
        playback = self.playout.begin_reply(turn)
        if epoch != self._interrupt_epoch:  # interrupted while the reply was being thought of
            playback.interrupted = True
        queued = False
        texts = iter(pieces)
        try:
            voice = self.rt.tts.voice(language)
            while not playback.interrupted and not self._finished.is_set():
                text = await self.leg.clock.run_in_thread(next, texts, None)
                if text is None:
                    break
                self.emit(ReplyText(self.leg.clock.now(), text, turn))
                chunks = iter(synthesize_clauses(voice, text))
                while not playback.interrupted:
                    chunk = await self.leg.clock.run_in_thread(next, chunks, None)
                    if chunk is None:
                        break
                    queued = True
                    self.playout.enqueue(turn, chunk.samples, chunk.sample_rate, chunk.text or text)
        except Exception as exc:  # a failing voice: what was made still plays
            if not queued:
                self.playout.end_reply(turn)
                playback.done.set()
                self._stage_failed("tts", exc)
                return None
            log.exception("call %s: TTS failed mid-reply", self.call_id)
            self.emit(StageFailed(self.leg.clock.now(), "tts", f"{type(exc).__name__}: {exc}"))
        finally:
            close = getattr(texts, "close", None)
            if close is not None:  # a streamed reply cut short: let the LLM go
                await self.leg.clock.run_in_thread(close)
        self.playout.end_reply(turn)
        if not queued:
            playback.done.set()
            if playback.interrupted:
                self._cut_turns.setdefault(turn, "")
                return playback
            return None
        return playback

    def _settle_agent_turn(self, agent: AgentTurn, playback: ReplyPlayback, turn: int) -> None:
        start = playback.start_s if playback.start_s is not None else self.leg.clock.now()
        end = playback.end_s if playback.end_s is not None else start
        agent.start_s, agent.end_s = round(start, 3), round(max(end, start), 3)
        agent.latency_ms = self.latency.latency(turn)
        if playback.interrupted:
            agent.interrupted = True
            agent.heard_text = self._cut_turns.get(turn, "")
        self._last_activity_s = max(self._last_activity_s, end)

    async def _hangup(self) -> None:
        try:
            await self.leg.hangup()
        except Exception:
            log.exception("call %s: hangup failed", self.call_id)

    def _finish(self) -> None:
        outcome = self.record.outcome
        if outcome.handoff or self.state.pending_intent:
            outcome.resolved = False
        self.record.duration_s = round(max(self.leg.clock.now(), getattr(self.leg, "play_end_s", 0.0)), 3)
        if not self.record.language:
            self.record.language = self.state.language
        s = self._stats
        self.record.stats = {
            "frames_in": s.frames_in, "frames_dropped": s.frames_dropped, "gaps_filled_ms": round(s.gaps_filled_ms, 1),
            "barge_ins": s.barge_ins, "backchannels": s.backchannels, "stage_failures": s.stage_failures,
            "underruns": self.playout.underruns, "late_frames": self.playout.late_frames,
        }
        if s.stop_ms:
            self.record.stats["barge_in_stop_ms"] = max(s.stop_ms)
