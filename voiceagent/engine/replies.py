"""The agent's side of the conversation: caller turns and prompts in, speech out.

    TurnReady ─► perception ─► dialog (cache, NLU, tools, LLM) ─► text pieces ─► TTS ─► Playout
    PromptDue ─► template ────────────────────────────────────────┘
                                               reply.handoff ─► transfer (or a callback, and the caller stays)

One item at a time, in order. The first piece of a reply plays while the next is made (and, for a
streamed LLM reply, while it is still being generated). A caller who takes the floor (`FloorTaken`)
voids the reply in hand. A failing stage gets an apology and the call listens on; after
`max_stage_errors` failures in a row the call ends. Model calls run in threads (they release the
GIL), so the frame loop never waits for them.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import logging
import time
from typing import Callable, Iterable

from ..dialog import templates
from ..dialog.flows import marketing
from ..dialog.engine import Reply
from ..events import (AgentTurnDone, CallerTurnNoted, Event, FinalTranscript, IntentRecognized, Interruption,
                      PartialTranscript, ReplyText, StageFailed, TransferRequested)
from ..legs import TransferResult
from ..playout import ReplyPlayback
from ..record import AgentTurn, CallerTurn
from ..textnorm import mask_pii
from ..tts import split_sentences, synthesize_clauses
from .context import CallContext
from .intake import ENGINE_RATE
from .signals import EndRequested, FloorTaken, PromptDue, ReplyDone, TurnReady

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Answered:
    """The last caller turn answered: the conversation before it, and what the record got."""
    before: object  # DialogState
    caller: CallerTurn | None = None
    agent: AgentTurn | None = None


def _snapshot(state):
    # a campaign call's script and progress are shared, not copied (its turns are not withdrawn)
    memo = {id(state.marketing): state.marketing} if state.marketing is not None else {}
    return copy.deepcopy(state, memo)


def _restore(state, before) -> None:
    for f in dataclasses.fields(state):
        setattr(state, f.name, getattr(before, f.name))


def _restore_but_what_was_done(state, before) -> None:
    """The conversation as it was before the withdrawn answer (what it asked, its apology, the
    escalation's count: the caller did not hear it out, and the joined turn must not read as a
    second complaint), except what was done in the shop: a ticket logged, a task acted on, a
    campaign's progress, and the list of what was tried (a coupon issued stays in the summary)."""
    kept = {"tried": state.tried, "complaint_ticket": state.complaint_ticket,
            "callback_ticket": state.callback_ticket, "marketing": state.marketing}
    task, was = state.task, before.task
    if task is not None and task.result and (was is None or was.result != task.result):
        kept["task"] = task
    _restore(state, before)
    for name, value in kept.items():
        setattr(state, name, value)


class Replies:
    def __init__(self, ctx: CallContext, on_handoff: Callable[[dict], None],
                 caller_paused: Callable[[], bool] = lambda: False):
        """`on_handoff`: stores the summary before the transfer, so the human's screen reads it as
        the call rings. `caller_paused`: the caller is silent now (a transcript heard then is
        probably the turn's final one, worth understanding ahead)."""
        self.ctx = ctx
        self._on_handoff = on_handoff
        self._caller_paused = caller_paused
        self._preparing: asyncio.Task | None = None
        self._answered: _Answered | None = None
        self._prepare_next: str | None = None
        self._queue: asyncio.Queue[TurnReady | PromptDue | None] = asyncio.Queue()
        self._working = False  # a turn in hand (thinking or speaking)
        self._epoch = 0  # FloorTaken count: a reply begun under an older one is not said
        self._cut: dict[int, str] = {}  # reply turn -> what the caller heard of it
        self._turn_no = 0
        self._errors_in_row = 0
        self._heard_until_s = 0.0

    @property
    def busy(self) -> bool:
        return self._working or not self._queue.empty()

    def on_event(self, event: Event) -> None:
        if isinstance(event, (TurnReady, PromptDue)):
            self._queue.put_nowait(event)
        elif isinstance(event, FloorTaken):
            self._epoch += 1
        elif isinstance(event, Interruption):
            self._cut[event.turn] = event.heard_text
        elif isinstance(event, StageFailed) and event.stage == "asr":  # the recogniser failed on a turn: ask again
            self._after_failure("not_heard", event)
        elif isinstance(event, PartialTranscript) and self._caller_paused():
            self._prepare(event.text.strip())

    # -- ahead of the turn ----------------------------------------------------------------------
    def _prepare(self, text: str) -> None:
        """The transcript decoded at a pause is usually the turn's final one: encode it for the
        dialog while the silence window runs, so the answer starts with the encoders' work done
        (DialogEngine.prepare; what is said does not change). One at a time; the latest waits."""
        dialog = self.ctx.runtime.dialog
        if not text or not hasattr(dialog, "prepare"):
            return
        if self._preparing is not None and not self._preparing.done():
            self._prepare_next = text
            return
        self._preparing = asyncio.get_running_loop().create_task(self._prepare_in_thread(dialog, text))

    async def _prepare_in_thread(self, dialog, text: str) -> None:
        while text:
            try:
                await self.ctx.clock.run_in_thread(dialog.prepare, text)
            except Exception:  # only an optimisation: the turn is understood as usual
                log.debug("call %s: preparing a turn failed", self.ctx.call_id, exc_info=True)
            text, self._prepare_next = self._prepare_next, None

    def caller_gone(self) -> None:
        """Finish the turn in hand, say nothing more."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        ctx = self.ctx
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    if self._preparing is not None:
                        self._preparing.cancel()
                    return
                if ctx.finished.is_set():
                    continue
                self._working = True
                if ctx.supervisor is not None:  # a person has the call: the agent only listens
                    if isinstance(item, TurnReady):
                        self._note_supervised_turn(item.final, item.continues)
                    continue
                if isinstance(item, PromptDue):
                    await self._say_prompt(item)
                else:
                    await self._answer(item.final, item.continues)
            finally:
                self._working = False
                now = ctx.clock.now()
                ctx.emit(ReplyDone(now, max(now, self._heard_until_s)))
                self._queue.task_done()

    # -- prompts ------------------------------------------------------------------------------
    async def _say_prompt(self, prompt: PromptDue) -> None:
        text = templates.render(self.ctx.language.for_reply(), prompt.key)
        if prompt.key == "greeting" and self.ctx.state.marketing is not None:  # a campaign call's opening
            text = marketing.opening(self.ctx.state.marketing)
        if not await self._say_text(text, prompt.kind, prompt.trigger_s):
            return  # they spoke up after all
        if prompt.hangup:
            try:
                await self.ctx.leg.hangup()
            except Exception:
                log.exception("call %s: hangup failed", self.ctx.call_id)
            self.ctx.emit(EndRequested(self.ctx.clock.now(), "agent", prompt.hangup))

    async def _say_text(self, text: str, kind: str, trigger_s: float | None = None) -> bool:
        """Say something of the agent's own; False when the caller spoke over it."""
        ctx = self.ctx
        trigger_s = ctx.clock.now() if trigger_s is None else trigger_s
        turn = self._next_turn()
        ctx.latency.begin(turn, trigger_s=trigger_s)
        playback = await self._speak(turn, [text], ctx.language.for_reply(), self._epoch)
        if playback is not None:
            agent = AgentTurn(text=text, start_s=0.0, end_s=0.0, latency_ms={}, kind=kind)
            ctx.record.turns.append(agent)
            await playback.done.wait()
            self._settle(agent, playback, turn)
            if playback.interrupted:
                return False
        return True

    # -- answers ------------------------------------------------------------------------------
    async def _answer(self, final: FinalTranscript, continues: bool = False) -> None:
        ctx, rt, state = self.ctx, self.ctx.runtime, self.ctx.state
        if continues:
            self._withdraw_last_answer()
        try:
            answered = self._answered = _Answered(_snapshot(state))
        except Exception:  # only the safety net for a caller who goes on; never the call's end
            log.exception("call %s: the conversation could not be kept aside", ctx.call_id)
            answered = _Answered(None)
            self._answered = None
        lang = ctx.language.observe(final)
        ctx.record.language = ctx.language.heard or lang
        text = final.text.strip()
        log.info("call %s caller [%s%s]: %s", ctx.call_id, lang, "/dtmf" if final.source == "dtmf" else "", mask_pii(text))
        turn = self._next_turn()
        epoch = self._epoch
        ctx.latency.begin(turn, final)
        t1 = time.perf_counter()
        try:
            voice = None
            if final.source == "voice" and final.audio is not None and rt.perception is not None:
                voice = await ctx.clock.run_in_thread(rt.perception.hear, final.audio, ENGINE_RATE, text)
            reply: Reply | None = rt.dialog.respond_cached(text, state, lang, voice, final.start_s)
            if reply is None:
                reply = await ctx.clock.run_in_thread(
                    functools.partial(rt.dialog.respond, text, state, lang, cache_checked=True, stream=True,
                                      voice=voice, at_s=final.start_s, language_scores=final.language_scores))
        except Exception as exc:  # a failing dialog: apologise and listen on
            self._stage_failed("dialog", exc)
            return
        dialog_ms = (time.perf_counter() - t1) * 1000
        ctx.language.dialog_answered()
        u = reply.understanding
        ctx.emit(IntentRecognized(ctx.clock.now(), turn, reply.intent, u.confidence, dict(u.slots),
                                  round(dialog_ms, 1), reply.llm_first_token_ms))
        self._note_caller_turn(final, text, lang, reply)
        answered.caller = ctx.record.turns[-1]
        agent = AgentTurn(text=reply.text, start_s=0.0, end_s=0.0, latency_ms={}, reply_source=reply.source,
                          grounding=reply.grounding, handoff=reply.handoff)
        pieces = reply.pieces if reply.pieces is not None else split_sentences(reply.text)
        playback = await self._speak(turn, pieces, state.language, epoch)
        agent.text = (reply.text or playback.text) if playback is not None else reply.text
        if playback is None or not agent.text:
            return
        self._errors_in_row = 0
        ctx.record.turns.append(agent)
        answered.agent = agent
        await playback.done.wait()
        self._settle(agent, playback, turn)
        log.info("call %s agent: %s (v2v %.0f ms%s)", ctx.call_id, mask_pii(reply.text),
                 agent.latency_ms["voice_to_voice"], ", interrupted" if agent.interrupted else "")
        outcome = ctx.record.outcome
        outcome.resolved = outcome.resolved or reply.resolved
        if ctx.supervisor is not None:  # taken over meanwhile: the person decides what happens next
            return
        if reply.handoff:
            await self._transfer(reply)
        elif (ctx.options.ask_rating and reply.intent == "chitchat.goodbye" and state.marketing is None
              and ctx.rating_asked_s is None and not agent.interrupted):
            # the caller is leaving: one short question, answered with a key (or not at all)
            question = templates.render(ctx.language.for_reply(), "rating_request", worst=1, best=5)
            if await self._say_text(question, "notice"):
                ctx.rating_asked_s = ctx.clock.now()
        elif reply.end_call and not agent.interrupted:  # said, now the agent hangs up (a marketing call's end);
            # cut off, it listens first: the caller may have said something that matters ("别再打了")
            try:
                await ctx.leg.hangup()
            except Exception:
                log.exception("call %s: hangup failed", ctx.call_id)
            ctx.emit(EndRequested(ctx.clock.now(), "agent", reply.end_call))

    def _withdraw_last_answer(self) -> None:
        """The caller went on with their last turn (TurnReady.continues): its answer was cut before it
        was heard out, and the two parts come as one turn. The conversation goes back to before the
        first part, keeping what was done in the shop (_restore_but_what_was_done). In the record
        the first part's caller turn gives way to the joined one, and the answer cut short stays as
        "withdrawn"."""
        last, self._answered = self._answered, None
        if last is None:
            return
        turns = self.ctx.record.turns
        if last.caller is not None:
            turns[:] = [t for t in turns if t is not last.caller]
        if last.agent is not None:
            last.agent.kind = "withdrawn"
        _restore_but_what_was_done(self.ctx.state, last.before)

    def _note_caller_turn(self, final: FinalTranscript, text: str, lang: str, reply: Reply) -> None:
        record, state, u, emotion = self.ctx.record, self.ctx.state, reply.understanding, reply.emotion
        record.turns.append(CallerTurn(
            text=text, start_s=round(final.start_s, 3), end_s=round(final.speech_end_s, 3), intent=reply.intent,
            confidence=u.confidence, slots=u.slots, emotion=u.emotion, language=lang, dialect=u.dialect, anger=u.anger,
            text_emotion=u.text_emotion, emotion_from=emotion.sources() if emotion else [],
            voice=emotion.voice if emotion else None, escalation=reply.escalation.to_dict(),
            task=state.task.as_record() if state.task is not None else None,
        ))
        self.ctx.emit(CallerTurnNoted(self.ctx.clock.now(), record.turns[-1]))
        record.dialect = state.languages.dialect
        record.emotion = {"running_anger": state.emotion.running_anger,
                          "peak_anger": max((t.anger for _, t in state.emotion.timeline), default=0.0)}
        record.slots = dict(state.slots)

    def _note_supervised_turn(self, final: FinalTranscript, continues: bool = False) -> None:
        """A caller turn while a supervisor has the call: kept in the record and the conversation
        (the agent knows it when the call comes back), not answered. A turn that goes on with the
        last one replaces it."""
        ctx = self.ctx
        text = final.text.strip()
        if not text:
            return
        if continues and ctx.record.turns and ctx.record.turns[-1].role == "caller":
            first = ctx.record.turns.pop()
            if ctx.state.history and ctx.state.history[-1] == ("caller", first.text):
                ctx.state.history = ctx.state.history[:-1]
        lang = ctx.language.observe(final)
        ctx.record.turns.append(CallerTurn(
            text=text, start_s=round(final.start_s, 3), end_s=round(final.speech_end_s, 3), intent="supervised",
            confidence=0.0, slots={}, emotion="neutral", language=lang, dialect=None))
        ctx.state.history = (ctx.state.history + [("caller", text)])[-20:]
        ctx.emit(CallerTurnNoted(ctx.clock.now(), ctx.record.turns[-1]))

    # -- transfer -----------------------------------------------------------------------------
    async def _transfer(self, reply: Reply) -> None:
        """Hand the caller to a person with the summary; if the transfer fails (busy, no answer),
        say so, book a callback, and keep the caller."""
        ctx = self.ctx
        outcome = ctx.record.outcome
        # the transport's target, if it names one, except for a dialect: that goes where the policy says
        # ([escalation] targets), to someone who speaks it
        target = reply.handoff_target or "human-queue"
        if ctx.options.handoff_target and reply.handoff_reason != "dialect":
            target = ctx.options.handoff_target
        summary = dict(reply.handoff_summary or {}, call_id=ctx.call_id, target=target)
        outcome.handoff, outcome.handoff_reason, outcome.handoff_target = True, reply.handoff_reason, target
        ctx.record.handoff = summary
        # stored before the transfer starts (the desk reads it while the call rings), off the event loop: on
        # a Postgres store it is a network round trip, which no other call's audio should wait for
        await asyncio.to_thread(self._on_handoff, summary)
        ctx.emit(TransferRequested(ctx.clock.now(), target, reply.handoff_reason))
        try:
            result = TransferResult.of(await ctx.leg.transfer(target, summary))
        except Exception as exc:
            log.exception("call %s: transfer failed", ctx.call_id)
            ctx.record.errors.append(f"transfer: {type(exc).__name__}: {exc}")
            result = TransferResult(False, "failed")
        outcome.transfer_ok, outcome.transfer_status = result.ok, result.status
        if result.ok:
            ctx.emit(EndRequested(ctx.clock.now(), "transfer"))
            return
        log.info("call %s: transfer to %s failed (%s): the caller stays", ctx.call_id, target, result.status)
        lang = ctx.language.for_reply()
        try:
            text = await ctx.clock.run_in_thread(ctx.runtime.dialog.callback_ticket, ctx.state, summary, lang)
        except Exception:
            log.exception("call %s: callback ticket failed", ctx.call_id)
            text = templates.render(lang, "transfer_failed_no_ticket")
        outcome.callback_ticket = ctx.state.callback_ticket
        await self._say_text(text, "notice")

    # -- speech -------------------------------------------------------------------------------
    def _next_turn(self) -> int:
        self._turn_no += 1
        return self._turn_no

    async def _speak(self, turn: int, pieces: Iterable[str], language: str, epoch: int) -> ReplyPlayback | None:
        """Synthesise `pieces` one by one and queue them: the first plays while the next is made.
        Returns the playback, or None when nothing was said (the caller spoke up first, or the voice
        failed)."""
        ctx = self.ctx
        playout, clock = ctx.playout, ctx.clock
        playback = playout.begin_reply(turn)
        if epoch != self._epoch:  # interrupted while the reply was being thought of
            playback.interrupted = True
        queued = False
        texts = iter(pieces)
        try:
            voice = ctx.runtime.tts.voice(language)
            while not playback.interrupted and not ctx.finished.is_set():
                text = await clock.run_in_thread(next, texts, None)
                if text is None:
                    break
                ctx.emit(ReplyText(clock.now(), text, turn))
                chunks = iter(synthesize_clauses(voice, text))
                while not playback.interrupted:
                    chunk = await clock.run_in_thread(next, chunks, None)
                    if chunk is None:
                        break
                    queued = True
                    playout.enqueue(turn, chunk.samples, chunk.sample_rate, chunk.text or text)
        except Exception as exc:  # a failing voice: what was made still plays
            if not queued:
                playout.end_reply(turn)
                playback.done.set()
                self._stage_failed("tts", exc)
                return None
            log.exception("call %s: TTS failed mid-reply", ctx.call_id)
            ctx.emit(StageFailed(clock.now(), "tts", f"{type(exc).__name__}: {exc}"))
        finally:
            close = getattr(texts, "close", None)
            if close is not None:  # a streamed reply cut short: let the LLM go
                await clock.run_in_thread(close)
        playout.end_reply(turn)
        if not queued:
            playback.done.set()
            if playback.interrupted:
                self._cut.setdefault(turn, "")
                return playback
            return None
        return playback

    def _settle(self, agent: AgentTurn, playback: ReplyPlayback, turn: int) -> None:
        now = self.ctx.clock.now()
        start = playback.start_s if playback.start_s is not None else now
        end = playback.end_s if playback.end_s is not None else start
        agent.start_s, agent.end_s = round(start, 3), round(max(end, start), 3)
        agent.latency_ms = self.ctx.latency.latency(turn)
        if playback.interrupted:
            agent.interrupted = True
            agent.heard_text = self._cut.get(turn, "")
        self._heard_until_s = max(self._heard_until_s, end)
        self.ctx.emit(AgentTurnDone(now, agent))

    # -- failures -----------------------------------------------------------------------------
    def _stage_failed(self, stage: str, exc: Exception, key: str = "system_error") -> None:
        ctx = self.ctx
        log.error("call %s: %s failed: %s: %s", ctx.call_id, stage, type(exc).__name__, exc)
        event = StageFailed(ctx.clock.now(), stage, f"{type(exc).__name__}: {exc}")
        ctx.emit(event)
        self._after_failure(key, event)

    def _after_failure(self, key: str, event: StageFailed) -> None:
        """Apologise and listen on; after `max_stage_errors` failures in a row, end the call."""
        self._errors_in_row += 1
        if self._errors_in_row >= self.ctx.call.max_stage_errors:
            self.ctx.emit(EndRequested(event.at_s, "error", "stage_errors", error=f"{event.stage}: {event.error}"))
        else:
            self._queue.put_nowait(PromptDue(event.at_s, key, "notice", event.at_s))

