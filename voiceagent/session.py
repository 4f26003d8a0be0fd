"""One call: caller audio from a CallLeg through VAD/endpointing, ASR, dialog and TTS, and back.

The same code runs a live call and `voiceagent call`: only the leg differs. Turns are handled in
order by one worker while the frame loop keeps listening; CPU-heavy steps (ASR, NLU, TTS) run in
worker threads so the event loop, and the other calls on it, stay responsive.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from .audio import resample
from .dialog.engine import DialogState, Reply
from .endpointing import Endpointer, TurnEnded
from .legs import CallLeg
from .record import AgentTurn, CallerTurn, CallRecord
from .runtime import Runtime
from .textnorm import mask_pii

log = logging.getLogger(__name__)

ENGINE_RATE = 16000
LANGUAGE_PIN_PROBABILITY = 0.7  # auto-detected language is kept for the rest of the call above this


@dataclass
class SessionOptions:
    language: str = "auto"  # "zh", "en" or "auto"
    customer_id: str | None = None
    handoff_target: str = "human-queue"
    # Simulated calls: wait for each reply before reading on (keeps the fast-forward clock honest).
    sequential: bool = False


class CallSession:
    def __init__(self, runtime: Runtime, leg: CallLeg, options: SessionOptions | None = None, call_id: str | None = None):
        self.rt = runtime
        self.leg = leg
        self.options = options or SessionOptions()
        self.call_id = call_id or uuid.uuid4().hex[:12]
        pinned = self.options.language if self.options.language in ("zh", "en") else None
        self.language = pinned
        self.state = DialogState(language=pinned or runtime.config.dialog.default_language,
                                 customer_id=self.options.customer_id)
        self.record = CallRecord(self.call_id, pinned or "", self.options.customer_id, models=runtime.model_names())
        self._turns: asyncio.Queue[TurnEnded | None] = asyncio.Queue()
        self._finished = False

    async def run(self) -> CallRecord:
        worker = asyncio.create_task(self._turn_worker())
        endpointer = Endpointer(self.rt.new_vad(), self.rt.config.vad)
        try:
            async for frame in self.leg.frames():
                if self._finished:
                    break
                samples = resample(frame.samples, frame.sample_rate, ENGINE_RATE)
                for event in endpointer.feed(samples):
                    await self._on_event(event)
            if not self._finished:
                for event in endpointer.flush():
                    await self._on_event(event)
        finally:
            await self._turns.put(None)
            try:
                await worker
            except Exception as exc:  # a failing stage ends this call, never the process
                log.exception("call %s: turn worker failed", self.call_id)
                self.record.outcome.ended_by = "error"
                self.record.outcome.error = f"{type(exc).__name__}: {exc}"
        self._finish()
        return self.record

    async def _on_event(self, event) -> None:
        if isinstance(event, TurnEnded):
            await self._turns.put(event)
            if self.options.sequential:
                await self._turns.join()

    async def _turn_worker(self) -> None:
        while True:
            turn = await self._turns.get()
            try:
                if turn is None:
                    return
                if not self._finished:
                    await self._handle_turn(turn)
            finally:
                self._turns.task_done()

    async def _handle_turn(self, turn: TurnEnded) -> None:
        detected_at = self.leg.clock.now()
        t0 = time.perf_counter()
        transcript = await asyncio.to_thread(self.rt.asr.transcribe, turn.audio, self.language)
        asr_ms = (time.perf_counter() - t0) * 1000
        if self.language is None and transcript.language_probability >= LANGUAGE_PIN_PROBABILITY:
            self.language = transcript.language
        text = transcript.text.strip()
        if not text:  # noise that looked like speech: nothing to answer
            log.info("call %s: empty transcript for %.2f-%.2f s", self.call_id, turn.start_s, turn.speech_end_s)
            return
        lang = transcript.language
        self.record.language = self.language or lang
        log.info("call %s caller [%s]: %s", self.call_id, lang, mask_pii(text))

        t1 = time.perf_counter()
        reply: Reply = await asyncio.to_thread(self.rt.dialog.respond, text, self.state, lang)
        dialog_ms = (time.perf_counter() - t1) * 1000
        u = reply.understanding
        self.record.turns.append(CallerTurn(
            text=text, start_s=round(turn.start_s, 3), end_s=round(turn.speech_end_s, 3), intent=reply.intent,
            confidence=u.confidence, slots=u.slots, emotion=u.emotion, language=lang, dialect=u.dialect, anger=u.anger,
        ))
        self.record.slots = dict(self.state.slots)

        # Speak the reply sentence by sentence: the first plays while the rest is synthesised.
        voice = self.rt.tts.voice(self.state.language)
        t2 = time.perf_counter()
        chunks = iter(voice.synthesize(reply.text))
        first_audio_ms = None
        start_s = end_s = None
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            at = self.leg.play(chunk.samples, chunk.sample_rate)
            if first_audio_ms is None:
                first_audio_ms = (time.perf_counter() - t2) * 1000
                start_s = at
            end_s = at + len(chunk.samples) / chunk.sample_rate
        if start_s is None:  # nothing to say (should not happen): keep the turn's record honest
            start_s = end_s = self.leg.clock.now()
        llm_ms = reply.llm_first_token_ms if reply.llm_first_token_ms is not None else dialog_ms
        latency = {
            "endpoint": round((detected_at - turn.speech_end_s) * 1000, 1),
            "asr": round(asr_ms, 1),
            "llm_first_token": round(llm_ms, 1),
            "tts_first_audio": round(first_audio_ms or 0.0, 1),
            "voice_to_voice": round((start_s - turn.speech_end_s) * 1000, 1),
            "dialog": round(dialog_ms, 1),
        }
        self.record.turns.append(AgentTurn(
            text=reply.text, start_s=round(start_s, 3), end_s=round(end_s, 3), latency_ms=latency,
            reply_source=reply.source, grounding=reply.grounding, handoff=reply.handoff,
        ))
        log.info("call %s agent: %s (v2v %.0f ms)", self.call_id, mask_pii(reply.text), latency["voice_to_voice"])
        outcome = self.record.outcome
        outcome.resolved = outcome.resolved or reply.resolved
        if reply.handoff:
            outcome.handoff, outcome.handoff_reason = True, reply.handoff_reason
            outcome.handoff_target = self.options.handoff_target
            # let the bridge sentence play out before the caller leaves us
            await self.leg.clock.wait_until(end_s)
            ok = await self.leg.transfer(self.options.handoff_target)
            outcome.transfer_ok = ok
            if ok:
                outcome.ended_by = "transfer"
                self._finished = True

    def _finish(self) -> None:
        outcome = self.record.outcome
        if outcome.handoff or self.state.pending_intent:
            outcome.resolved = False
        self.record.duration_s = round(max(self.leg.clock.now(), getattr(self.leg, "play_end_s", 0.0)), 3)
        if not self.record.language:
            self.record.language = self.state.language
