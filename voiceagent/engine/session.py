"""One call: the conductor of the stages every transport drives.

    leg.receive() ─► CallerAudioIntake ─► TurnDetector (VAD, streaming ASR, end of turn from the words)
        │  (keys) ─► DtmfKeys                    │ events
        │                   CallTimers ◄─────────┤ (silence, call length)
        │                   TurnTaking ◄─────────┤ (barge-in, backchannels) ─► TurnReady
        │                                        ▼
        └──── Playout (20 ms pacing) ◄── Replies: dialog ─► text pieces ─► TTS ─► audio pieces, transfer

The stages are small objects that talk through typed events (events.py for what observers see,
signals.py for what only the stages need): `emit` hands each event to the observers (a
LatencyObserver, the channel's own) and then to every stage. The conductor runs the frame loop
and the reply loop as tasks, ends the call when a stage asks (`EndRequested`) or the caller is
gone, and keeps the record whatever happens: a stage that fails is reported and the call recovers
or ends cleanly; other calls never notice. Model calls run in worker threads (CTranslate2, ONNX
Runtime and llama.cpp release the GIL), so many calls share one process and one set of models.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Callable

from ..dialog.engine import DialogState
from ..events import AgentTurnDone, Event, Hangup, StageFailed, SupervisorChanged
from ..latency import LatencyObserver
from ..legs import CallLeg, DtmfDigit
from ..playout import Playout
from ..record import AgentTurn, CallRecord
from ..runtime import Runtime
from ..turn_detector import TurnDetector
from .context import CallContext, SessionOptions
from .dtmf import DtmfKeys
from .intake import CallerAudioIntake
from .language import LANGUAGES, CallLanguage
from .outcome import close_record, task_failed
from .replies import Replies
from .signals import EndRequested, PromptDue
from .timers import CallTimers
from .turn_taking import TurnTaking

log = logging.getLogger(__name__)

RATING_WAIT_S = 15.0  # a key this long after the rating question still counts as the score


class CallSession:
    def __init__(self, runtime: Runtime, leg: CallLeg, options: SessionOptions | None = None,
                 call_id: str | None = None, observers: list[Callable[[Event], None]] | None = None,
                 on_handoff: Callable[[dict], None] | None = None):
        """`on_handoff`: called with the handoff summary just before a transfer (to store it where the
        human's desk reads it, CallStore.save_handoff)."""
        options = options or SessionOptions()
        call = options.call or runtime.config.call
        call_id = call_id or uuid.uuid4().hex[:12]
        pinned = options.language if options.language in LANGUAGES else None
        greet_in = options.greeting_language if options.greeting_language in LANGUAGES else None
        state = DialogState(language=pinned or greet_in or runtime.config.dialog.default_language,
                            customer_id=options.customer_id, channel="voice",  # replies for the ear
                            keypad=True,  # every leg carries keys (RFC 4733, AudioSocket, the page's keypad)
                            marketing=options.marketing)
        record = CallRecord(call_id, pinned or "", options.customer_id, models=runtime.model_names())
        self.latency = LatencyObserver()
        self.observers = [self.latency.on_event, *(observers or [])]
        self.ctx = ctx = CallContext(call_id, runtime, leg, options, call, record, state,
                                     CallLanguage(options.language, state), self.latency,
                                     Playout(leg, self.emit, lead_ms=call.playout_lead_ms), self.emit)
        self.intake = CallerAudioIntake()
        self.detector = TurnDetector(runtime.new_vad(), runtime.asr, runtime.config.vad, call, self.emit,
                                     clock=leg.clock, language=ctx.language.for_asr,
                                     expecting_number=self._expecting_number, language_pinned=pinned is not None,
                                     domain="marketing" if options.marketing is not None else "service")
        self._on_handoff = on_handoff
        self.replies = Replies(ctx, self._store_handoff, caller_paused=lambda: self.detector.segmenter.paused)
        self.dtmf = DtmfKeys(self.emit, leg.clock.now, ctx.language.current, call.dtmf_timeout_s)
        self.turn_taking = TurnTaking(call, ctx.playout, self.detector, self.emit, leg.clock.now,
                                      lambda: self.intake.timeline_s, lambda: self.replies.busy)
        self.timers = CallTimers(call, self.emit, self._busy)
        self._stages = [self.turn_taking, self.timers, self.replies]
        self.stage_failures = 0

    # the call's identity, for the channels
    call_id = property(lambda self: self.ctx.call_id)
    state = property(lambda self: self.ctx.state)
    record = property(lambda self: self.ctx.record)

    def emit(self, event: Event) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # an observer never breaks the call
                log.exception("call %s: observer failed on %s", self.ctx.call_id, type(event).__name__)
        if isinstance(event, StageFailed):
            self.stage_failures += 1
            self.ctx.record.errors.append(f"{event.stage}: {event.error}")
        elif isinstance(event, EndRequested):
            self._end(event)
        for stage in self._stages:
            stage.on_event(event)

    def _end(self, request: EndRequested) -> None:
        if self.ctx.finished.is_set():
            return
        outcome = self.ctx.record.outcome
        outcome.ended_by, outcome.end_reason = request.by, request.reason
        if request.error:
            outcome.error = request.error
        self.emit(Hangup(self.ctx.clock.now(), request.by, request.reason))
        self.ctx.finished.set()

    # -- supervision --------------------------------------------------------------------------
    def take_over(self, operator: str) -> None:
        """A supervisor takes the call: the agent falls silent now (what is queued is dropped, a
        reply being thought of is not said), and listens on without answering until `release`."""
        ctx = self.ctx
        if ctx.finished.is_set():
            return
        ctx.supervisor = operator
        now = ctx.clock.now()
        ctx.record.supervision.append({"operator": operator, "from_s": round(now, 3), "to_s": None})
        self.turn_taking.interrupt(by_caller=False)
        self.emit(SupervisorChanged(now, True, operator))

    def release(self, said: list[tuple[float, float, str]] = ()) -> None:
        """The supervisor gives the call back: the agent says it is back and answers again. `said`:
        what the supervisor said meanwhile (start_s, end_s, text), if already known."""
        ctx = self.ctx
        operator, ctx.supervisor = ctx.supervisor, None
        if operator is None or ctx.finished.is_set():
            return
        now = ctx.clock.now()
        if ctx.record.supervision:
            ctx.record.supervision[-1]["to_s"] = round(now, 3)
        self.supervisor_said(said)
        self.emit(SupervisorChanged(now, False, operator))
        self.emit(PromptDue(now, "supervisor_released", "notice", now))

    def supervisor_said(self, said: list[tuple[float, float, str]]) -> None:
        """What a supervisor said on the call goes into the conversation as the agent's side (the
        agent knows what was promised), and into the record."""
        ctx = self.ctx
        now = ctx.clock.now()
        for start_s, end_s, text in said:
            turn = AgentTurn(text=text, start_s=round(start_s, 3), end_s=round(end_s, 3), latency_ms={},
                             reply_source="supervisor", kind="supervisor")
            # in its place on the timeline (a turn still being said is last, not yet timed)
            turns = ctx.record.turns
            turns.insert(next((i for i, t in enumerate(turns) if t.start_s > turn.start_s), len(turns)), turn)
            ctx.state.history = (ctx.state.history + [("agent", text)])[-20:]
            self.emit(AgentTurnDone(now, turn))

    def _rated(self, key: DtmfDigit) -> bool:
        """A 1-5 key soon after the agent asked for a score: the caller's rating, thanked, goodbye."""
        ctx = self.ctx
        asked = ctx.rating_asked_s
        if asked is None or ctx.record.rating is not None or key.digit not in "12345" or key.at_s - asked > RATING_WAIT_S:
            return False
        ctx.record.rating = int(key.digit)
        self.emit(PromptDue(key.at_s, "rating_thanks", "goodbye", key.at_s, hangup="goodbye"))
        return True

    def _expecting_number(self) -> bool:
        state = self.ctx.state
        return state.pending_intent is not None and "order_id" not in state.slots

    def _busy(self) -> bool:
        """Silence does not count while anyone speaks, thinks or types (or a supervisor has the call)."""
        return self.ctx.supervisor is not None or self.replies.busy or self.ctx.playout.active or self.detector.in_speech or self.dtmf.pending

    def _store_handoff(self, summary: dict) -> None:
        if self._on_handoff is not None:
            try:
                self._on_handoff(summary)
            except Exception:
                log.exception("call %s: storing the handoff summary failed", self.ctx.call_id)

    # -- the call -----------------------------------------------------------------------------
    async def run(self) -> CallRecord:
        ctx = self.ctx
        greeting = ctx.call.greeting if ctx.options.greeting is None else ctx.options.greeting
        if greeting:
            self.emit(PromptDue(0.0, "greeting", "greeting", 0.0))
        name = ctx.call_id
        tasks = [asyncio.create_task(self._listen(), name=f"{name}-listen"),
                 asyncio.create_task(self.replies.run(), name=f"{name}-reply"),
                 asyncio.create_task(ctx.playout.run(), name=f"{name}-playout")]
        if ctx.clock.realtime:
            tasks.append(asyncio.create_task(self._ticker(), name=f"{name}-timers"))
        listen, reply, playout = tasks[:3]
        try:
            # The call lasts until the caller is gone (input ends) or the agent ends it.
            done_waiter = asyncio.create_task(ctx.finished.wait())
            await asyncio.wait([listen, done_waiter, playout], return_when=asyncio.FIRST_COMPLETED)
            if listen.done() and not ctx.finished.is_set() and ctx.playout.error is None:
                self.replies.caller_gone()  # hung up (or the recording ended): finish the turn in hand
                await asyncio.wait([reply, done_waiter], return_when=asyncio.FIRST_COMPLETED)
            done_waiter.cancel()
        except asyncio.CancelledError:
            ctx.record.outcome.ended_by = "error"
            ctx.record.outcome.error = "cancelled"
            raise
        finally:
            ctx.playout.close()
            self.detector.close()
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results):
                if isinstance(result, Exception):
                    task_failed(self.ctx, task.get_name(), result)
            self._finish()
        return ctx.record

    async def _ticker(self) -> None:
        """Timers on the wall clock too, for legs that go quiet (no frames at all)."""
        while not self.ctx.finished.is_set():
            await asyncio.sleep(0.25)
            now = self.ctx.clock.now()
            if now - self.intake.timeline_s > 0.5:
                self._check_timers(now)

    def _check_timers(self, t: float) -> None:
        if not self.ctx.finished.is_set():
            self.dtmf.check(t)
            self.timers.check(t)

    async def _listen(self) -> None:
        async for item in self.ctx.leg.receive():
            if self.ctx.finished.is_set():
                break
            if isinstance(item, DtmfDigit):
                if not self._rated(item):
                    self.dtmf.on_key(item)
                continue
            try:
                placed = self.intake.place(item)
            except Exception:  # a frame nothing can be made of: drop it, keep the call
                log.warning("call %s: unusable frame dropped", self.ctx.call_id, exc_info=True)
                self.intake.drop()
                continue
            if placed is None:
                continue
            if placed.restarted:
                self.detector.discard_turn()
            await self.detector.feed(placed.samples)
            self.turn_taking.after_audio()
            self._check_timers(self.intake.timeline_s)
        if not self.ctx.finished.is_set():
            await self.detector.flush()

    def _finish(self) -> None:
        stats = {**self.intake.stats(), **self.turn_taking.stats(), "stage_failures": self.stage_failures}
        close_record(self.ctx, stats, self.turn_taking.stop_ms)
