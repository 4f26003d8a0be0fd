"""The live calls of this process, as the operators see them: every channel's calls pass through
`run_call`, which registers them here; the hub watches their events (console feed, metrics,
alerts), wraps their legs for listen-in, takeover and the recording, and files what is left when a
call ends (recording, history columns).

    run_call ─► hub.begin(call) ─► LiveCall (SupervisedLeg, observer) ─► session
                                        │ events ─► console SSE, Metrics, Alerts
    session ends ─► hub.end(record) ─► recording file, history, metrics, alerts, "ended"
    console ─► listen / take_over / release ─► Supervisor peers (WebRTC) on the SupervisedLeg

Many workers (ops/cluster_bus.py): what this hub's consoles get is also published on the bus, and the other
workers' messages reach its consoles too, so the live list holds every worker's calls (each with its
`worker`) and any call's feed can be followed from any worker. Audio stays where the call is: a listen-in or
takeover of another worker's call is sent on to that worker (ops/api.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..cluster import worker_name
from ..events import (AgentTurnDone, CallerTurnNoted, Event, Hangup, IntentRecognized, PartialTranscript,
                      ReplyText, SpeechStarted, StageFailed, SupervisorChanged, TransferRequested)
from ..textnorm import mask_pii
from .metrics import call_outcome
from .supervision import SupervisedLeg

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256  # events a slow console may fall behind by before it is dropped (it reconnects)
HISTORY_EVENTS = 500  # the turns a console opening a call mid-way is shown
RESYNC_S = 5.0  # after the bus reconnects, another worker's call not announced again within this is dropped
# a call's events shared with the other workers (partial transcripts are not: many a second, per call)
SHARED_EVENTS = ("caller", "agent", "state", "handoff", "supervisor", "error", "hangup")


class NotLive(Exception):
    """The call is not in progress (ended, or never was)."""


class Busy(Exception):
    """Another supervisor holds the call."""


@dataclass
class LiveCall:
    call_id: str
    channel: str
    started_at: str
    leg: SupervisedLeg
    customer_id: str | None = None
    language: str = ""
    state: str = "listening"
    emotion: str = "neutral"
    anger: float = 0.0
    intent: str = ""
    supervisor: str | None = None
    session: Any = None  # engine.CallSession, once made
    events: deque = field(default_factory=lambda: deque(maxlen=HISTORY_EVENTS))
    subscribers: set = field(default_factory=set)
    peers: dict = field(default_factory=dict)  # listener id -> ops.peers.SupervisorPeer
    takeover: Any = None  # the SupervisorPeer that holds the call
    ended: bool = False
    worker: str = ""  # the worker (process) the call lives on

    def summary(self) -> dict:
        return {"call_id": self.call_id, "channel": self.channel, "started_at": self.started_at,
                "language": self.language, "state": self.state, "emotion": self.emotion, "anger": round(self.anger, 2),
                "intent": self.intent, "customer_id": self.customer_id, "supervisor": self.supervisor,
                "listeners": len(self.peers), "worker": self.worker}


@dataclass
class RemoteCall:
    """A call of another worker, as its messages on the bus describe it."""

    summary: dict
    worker: str
    events: deque = field(default_factory=lambda: deque(maxlen=HISTORY_EVENTS))
    subscribers: set = field(default_factory=set)
    heard_at: float = field(default_factory=time.monotonic)  # the last message about it


class OperatorHub:
    def __init__(self, config, runtime_getter=lambda: None, metrics=None, alerts=None, recordings=None,
                 history=None):
        self.config = config
        self.runtime = runtime_getter
        self.metrics, self.alerts, self.recordings, self.history = metrics, alerts, recordings, history
        self.calls: dict[str, LiveCall] = {}
        self.watchers: set[asyncio.Queue] = set()  # the call list's consoles
        self.encoding: set[asyncio.Future] = set()  # recordings being encoded
        cluster = getattr(config, "cluster", None)
        self.worker = worker_name(getattr(cluster, "worker", "") or "")
        self.bus = None  # ops.cluster_bus.ClusterBus, with a Postgres store shared by many workers
        self.remote: dict[str, RemoteCall] = {}  # the other workers' live calls

    async def drain(self, timeout_s: float = 120.0) -> None:
        """At shutdown, after the last call: the recordings still being encoded are finished."""
        if self.encoding:
            await asyncio.wait(list(self.encoding), timeout=timeout_s)

    # -- from run_call ------------------------------------------------------------------------
    def begin(self, call_id: str, channel: str, leg, customer_id: str | None, language: str) -> LiveCall:
        recorder = None
        if self.recordings is not None:
            try:
                from .recordings import recording_rate

                recorder = self.recordings.recorder(call_id, recording_rate(channel))
            except Exception:
                log.exception("call %s: no recording", call_id)
        live = LiveCall(call_id, channel, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        SupervisedLeg(leg, recorder), customer_id, language if language in ("zh", "en") else "",
                        worker=self.worker)
        self.calls[call_id] = live
        if self.metrics is not None:
            self._safe(self.metrics.calls_started, channel)
        self._broadcast({"type": "call_started", "call": live.summary()})
        return live

    def observer(self, live: LiveCall):
        def observe(event: Event) -> None:
            self._on_event(live, event)
        return observe

    async def end(self, live: LiveCall, record=None) -> None:
        """The call is over: close the supervisors' peers, keep the recording, tell everyone.
        `record`: None when the call failed before it had one."""
        if live.ended:
            return
        live.ended = True
        if record is None:
            from ..record import CallRecord

            record = CallRecord(live.call_id, live.language, live.customer_id)
            record.outcome.ended_by, record.outcome.error = "error", "the call failed"
        self.calls.pop(live.call_id, None)
        for peer in [*live.peers.values(), *([live.takeover] if live.takeover else [])]:
            await peer.close()
        live.peers.clear()
        live.takeover = None
        outcome = call_outcome(record)  # the same word as /metrics' outcome label
        if self.metrics is not None:
            self._safe(self.metrics.call_ended, live.channel, record)
        if self.alerts is not None:
            self._safe(self.alerts.call_ended, live.call_id, live.channel, record)
        self._tell(live, {"type": "ended", "outcome": outcome})
        self._broadcast({"type": "call_ended", "call_id": live.call_id, "outcome": outcome})
        recorder = live.leg.recorder
        if recorder is not None:
            try:
                # encoded on the store's one low-priority thread: live calls keep the cores; a
                # shutdown waits for what is queued (drain), a cancelled call does not cancel it
                encoding = asyncio.wrap_future(self.recordings.finish_later(recorder))
                self.encoding.add(encoding)
                encoding.add_done_callback(self.encoding.discard)
                await asyncio.shield(encoding)
            except Exception:
                log.exception("call %s: the recording could not be kept", live.call_id)
        if self.history is not None:
            try:
                await asyncio.to_thread(self.history.note_call, live.call_id, record)
                if record.rating is not None:  # "press 1 to 5" after the goodbye
                    await asyncio.to_thread(self.history.ratings.add, live.call_id, record.rating, live.channel)
            except Exception:
                log.exception("call %s: history columns not written", live.call_id)
        for queue in list(live.subscribers):
            queue.put_nowait(None)

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, live: LiveCall, event: Event) -> None:
        if self.metrics is not None:
            self._safe(self.metrics.on_event, live.channel, event)
        if self.alerts is not None:
            self._safe(self.alerts.on_event, live.call_id, live.channel, event)
        message = None
        if isinstance(event, CallerTurnNoted):
            t = event.turn
            live.emotion, live.anger = t.emotion, t.anger
            live.intent = t.intent if t.intent != "supervised" else live.intent
            live.language = t.language or live.language
            message = {"type": "caller", "text": t.text, "intent": t.intent, "confidence": round(t.confidence, 2),
                       "emotion": t.emotion, "anger": round(t.anger, 2), "language": t.language,
                       "start_s": t.start_s, "end_s": t.end_s}
        elif isinstance(event, AgentTurnDone):
            t = event.turn
            message = {"type": "agent", "text": t.heard_text if t.interrupted and t.heard_text else t.text,
                       "kind": t.kind, "interrupted": t.interrupted, "start_s": t.start_s, "end_s": t.end_s,
                       "voice_to_voice_ms": (t.latency_ms or {}).get("voice_to_voice")}
        elif isinstance(event, PartialTranscript):
            message = {"type": "partial", "text": event.text}
        elif isinstance(event, IntentRecognized):
            live.intent = event.intent
            self._set_state(live, "speaking" if live.supervisor is None else "supervised")
        elif isinstance(event, SpeechStarted):
            if live.supervisor is None:
                self._set_state(live, "listening")
        elif isinstance(event, ReplyText):
            if live.supervisor is None:
                self._set_state(live, "speaking")
        elif isinstance(event, TransferRequested):
            self._set_state(live, "transferring")
            message = {"type": "handoff", "target": event.target, "reason": event.reason}
        elif isinstance(event, SupervisorChanged):
            live.supervisor = event.operator if event.active else None
            self._set_state(live, "supervised" if event.active else "listening")
            message = {"type": "supervisor", "active": event.active, "operator": event.operator}
        elif isinstance(event, StageFailed):
            message = {"type": "error", "stage": event.stage}
        elif isinstance(event, Hangup):
            message = {"type": "hangup", "by": event.by, "reason": event.reason}
        if message is not None:
            message["at"] = time.time()
            live.events.append(message)
            self._tell(live, message)
            if message["type"] == "caller":
                self._broadcast({"type": "call_updated", "call": live.summary()})

    def _set_state(self, live: LiveCall, state: str) -> None:
        if live.state != state:
            live.state = state
            self._tell(live, {"type": "state", "state": state, "at": time.time()})
            self._broadcast({"type": "call_updated", "call": live.summary()})

    # -- subscribers (server-sent events) -----------------------------------------------------
    def subscribe(self, call_id: str | None = None) -> asyncio.Queue:
        """A queue of events: one call's (with its snapshot first), or, without a call, the list's."""
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        if call_id is None:
            self.watchers.add(queue)
            return queue
        live = self.calls.get(call_id)
        if live is not None:
            summary = live.summary()
        else:
            live = self.remote.get(call_id)  # another worker's: its feed as the bus brings it
            if live is None:
                raise NotLive(call_id)
            summary = dict(live.summary)
        queue.put_nowait({"type": "snapshot", "call": summary, "events": list(live.events)[-SUBSCRIBER_QUEUE // 2:]})
        live.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue, call_id: str | None = None) -> None:
        self.watchers.discard(queue)
        live = (self.calls.get(call_id) or self.remote.get(call_id)) if call_id else None
        if live is not None:
            live.subscribers.discard(queue)

    def _tell(self, live: LiveCall, message: dict) -> None:
        """To the consoles following this call, here and (through the bus) on the other workers."""
        _tell_subscribers(live.subscribers, message)
        if self.bus is not None and message.get("type") in SHARED_EVENTS:
            shared = dict(message, text=mask_pii(message["text"])) if isinstance(message.get("text"), str) else message
            self.bus.publish({"type": "call_event", "call_id": live.call_id, "event": shared})

    def _broadcast(self, message: dict) -> None:
        """To every console's call list, here and on the other workers."""
        self._to_watchers(message)
        if self.bus is not None:
            self.bus.publish(message)

    def _to_watchers(self, message: dict) -> None:
        for queue in list(self.watchers):
            _offer(queue, message, lambda q=queue: self.watchers.discard(q))

    def alert_raised(self, alert: dict) -> None:
        """An alert (ops.alerts) raised or acknowledged here: to every console and to the call it is about,
        here and on the other workers."""
        self._alert_here(alert)
        if self.bus is not None:
            self.bus.publish({"type": "alert", "alert": alert})

    def _alert_here(self, alert: dict) -> None:
        self._to_watchers({"type": "alert", "alert": alert})
        call_id = alert.get("call_id") or ""
        live = self.calls.get(call_id) or self.remote.get(call_id)
        if live is not None:
            _tell_subscribers(live.subscribers, {"type": "alert", "alert": alert})

    def live_calls(self) -> list[dict]:
        """Every live call, this worker's and (with the bus) the others', each with its `worker`."""
        return [c.summary() for c in self.calls.values()] + [dict(r.summary) for r in self.remote.values()]

    def owner(self, call_id: str) -> str | None:
        """The worker a live call is on: this one's name, another's, or None (no such live call)."""
        if call_id in self.calls:
            return self.worker
        remote = self.remote.get(call_id)
        return remote.worker if remote is not None else None

    # -- the other workers (ops/cluster_bus.py) -----------------------------------------------
    def attach_bus(self, bus) -> None:
        self.bus = bus

    def bus_connected(self) -> None:
        """The bus (re)connected: what was said meanwhile is lost, so every worker is asked to announce its
        calls again, and another worker's call not announced again soon is taken as ended."""
        if self.bus is None:
            return
        self.bus.publish({"type": "sync"})
        self._announce()  # (a worker restarted under the same name: the others forget its old calls)
        asked_at = time.monotonic()
        asyncio.get_running_loop().call_later(RESYNC_S, self._drop_unheard, asked_at)

    def _announce(self) -> None:
        for live in list(self.calls.values()):
            if not live.ended:
                self.bus.publish({"type": "call_started", "call": live.summary()})

    def _drop_unheard(self, since: float, worker: str | None = None) -> None:
        for call_id, remote in list(self.remote.items()):
            if remote.heard_at < since and (worker is None or remote.worker == worker):
                self._remote_ended(call_id, "unknown")

    def forget_workers(self, workers: set[str]) -> None:
        """Workers that stopped beating (ops/cluster_bus.Heartbeat): their calls leave the list."""
        for call_id, remote in list(self.remote.items()):
            if remote.worker in workers:
                self._remote_ended(call_id, "unknown")

    def on_remote(self, message: dict) -> None:
        """A message of another worker's hub (on the loop): into this worker's consoles' feeds."""
        kind, worker = message.get("type"), str(message.get("worker") or "")
        if kind in ("call_started", "call_updated"):
            summary = message.get("call")
            if not isinstance(summary, dict) or not summary.get("call_id"):
                return
            call_id = str(summary["call_id"])
            if call_id in self.calls:  # ours: another worker cannot speak for it
                return
            summary = dict(summary, worker=summary.get("worker") or worker)
            remote = self.remote.get(call_id)
            if remote is None:
                remote = self.remote[call_id] = RemoteCall(summary, summary["worker"])
            remote.summary, remote.heard_at = summary, time.monotonic()
            self._to_watchers({"type": kind, "call": dict(summary)})
        elif kind == "call_event":
            remote = self.remote.get(str(message.get("call_id") or ""))
            event = message.get("event")
            if remote is None or not isinstance(event, dict):
                return
            remote.heard_at = time.monotonic()
            remote.events.append(event)
            _tell_subscribers(remote.subscribers, event)
        elif kind == "call_ended":
            self._remote_ended(str(message.get("call_id") or ""), message.get("outcome") or "unknown")
        elif kind == "alert" and isinstance(message.get("alert"), dict):
            alert = message["alert"]
            if alert.get("acked_by") and alert.get("id") and self.alerts is not None:
                # acknowledged on that worker: if this one raised it, it is no longer open here either
                self._safe(self.alerts.acked_elsewhere, str(alert["id"]))
            self._alert_here(alert)
        elif kind == "sync":  # a worker (re)connected: it hears of this worker's calls again, and announces
            self._announce()  # its own: those of its calls not announced soon are no more
            asyncio.get_running_loop().call_later(RESYNC_S, self._drop_unheard, time.monotonic(), worker)
        elif kind == "worker_stopped":
            self.forget_workers({worker})

    def _remote_ended(self, call_id: str, outcome: str) -> None:
        remote = self.remote.pop(call_id, None)
        if remote is None:
            return
        _tell_subscribers(remote.subscribers, {"type": "ended", "outcome": outcome})
        for queue in list(remote.subscribers):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._to_watchers({"type": "call_ended", "call_id": call_id, "outcome": outcome, "worker": remote.worker})

    # -- supervision --------------------------------------------------------------------------
    def get(self, call_id: str) -> LiveCall:
        live = self.calls.get(call_id)
        if live is None or live.ended or live.session is None or live.session.ctx.finished.is_set():
            raise NotLive(call_id)
        return live

    async def listen(self, call_id: str, offer_sdp: str, operator: str) -> tuple[str, str]:
        """A receive-only peer that hears the caller and the agent (or the supervisor) mixed."""
        from .peers import PeerError, SupervisorPeer

        live = self.get(call_id)
        if len(live.peers) >= self.config.ops.max_listeners_per_call:
            raise Busy(f"{len(live.peers)} people already listen to this call")
        listener_id = uuid.uuid4().hex[:12]
        peer = SupervisorPeer(operator, live.leg, talk=False)
        live.peers[listener_id] = peer  # counted from now: simultaneous requests meet the limit
        try:
            answer = await peer.answer(offer_sdp)
        except BaseException as exc:
            live.peers.pop(listener_id, None)
            await peer.close()
            if live.ended and not isinstance(exc, asyncio.CancelledError):
                raise NotLive(call_id) from exc
            if isinstance(exc, (PeerError, asyncio.CancelledError)) or live.ended:
                raise
            raise PeerError(f"the offer could not be answered: {type(exc).__name__}") from exc
        if live.ended:  # the call ended while this peer connected
            live.peers.pop(listener_id, None)
            await peer.close()
            raise NotLive(call_id)

        def gone() -> None:  # the listener's browser vanished or never connected
            if live.peers.pop(listener_id, None) is not None:
                asyncio.ensure_future(peer.close())
                self._broadcast({"type": "call_updated", "call": live.summary()})

        peer.on_gone = gone
        live.leg.listeners.add(peer.track)
        self._broadcast({"type": "call_updated", "call": live.summary()})
        log.info("call %s: %s listens in", call_id, operator)
        return listener_id, answer

    async def take_over(self, call_id: str, offer_sdp: str, operator: str) -> str:
        """The agent falls silent at once; the supervisor's microphone goes to the caller."""
        from .peers import PeerError, SupervisorPeer

        live = self.get(call_id)
        if live.takeover is not None or live.supervisor is not None:
            raise Busy(f"{live.supervisor or 'another supervisor'} holds this call")
        t0 = time.perf_counter()
        peer = SupervisorPeer(operator, live.leg, talk=True)
        live.takeover = peer  # held from now: a second supervisor meets Busy while this one connects
        try:
            live.leg.take_over(peer.track)
            live.session.take_over(operator)
            peer.silenced_ms = (time.perf_counter() - t0) * 1000
            answer = await peer.answer(offer_sdp)
        except BaseException as exc:
            if live.takeover is peer:  # (a release or the call's end may have undone it meanwhile)
                live.takeover = None
                live.leg.give_back()
                if live.session is not None and live.session.ctx.supervisor == operator:
                    live.session.release()
            await peer.close()
            if live.ended and not isinstance(exc, asyncio.CancelledError):
                raise NotLive(call_id) from exc
            if isinstance(exc, (PeerError, asyncio.CancelledError)):
                raise
            raise PeerError(f"the offer could not be answered: {type(exc).__name__}") from exc
        if live.takeover is not peer or live.ended:  # released or ended while the browser connected
            await peer.close()
            raise NotLive(call_id)
        peer.on_gone = lambda: asyncio.ensure_future(self._supervisor_gone(live, peer))
        log.info("call %s: taken over by %s (agent silent after %.1f ms)", call_id, operator, peer.silenced_ms)
        return answer

    async def release(self, call_id: str, operator: str) -> None:
        live = self.get(call_id)
        peer = live.takeover
        if peer is None:
            raise NotLive(f"call {call_id} is not taken over")
        await self._give_back(live, peer)
        log.info("call %s: given back to the agent by %s", call_id, operator)

    async def _supervisor_gone(self, live: LiveCall, peer) -> None:
        """The supervisor's browser vanished: the call goes back to the agent rather than to silence."""
        if live.takeover is peer and not live.ended:
            log.warning("call %s: the supervisor's connection is gone: back to the agent", live.call_id)
            await self._give_back(live, peer)

    async def _give_back(self, live: LiveCall, peer) -> None:
        """The agent is back at once; what the supervisor said is transcribed after, into its context."""
        live.takeover = None
        live.leg.give_back()
        if live.session is not None:
            live.session.release()
        await peer.close()
        said = await self._transcribe(peer)
        if said and live.session is not None and not live.session.ctx.finished.is_set():
            live.session.supervisor_said(said)

    async def _transcribe(self, peer) -> list[tuple[float, float, str]]:
        """What the supervisor said, for the agent's context (one decode of their speech)."""
        audio, start_s, end_s = peer.speech()
        runtime = self.runtime()
        if audio is None or runtime is None or len(audio) < 16000 * 0.3:
            return []
        try:
            heard = await asyncio.to_thread(runtime.asr.transcribe, audio, None, False)
        except Exception:
            log.exception("the supervisor's words could not be transcribed")
            return []
        text = (heard.text or "").strip()
        return [(start_s, end_s, text)] if text else []

    # -- campaign attempts, chat (not calls, but watched all the same) ------------------------
    def campaign_attempt(self, campaign: str, outcome: str) -> None:
        if self.metrics is not None:
            self._safe(self.metrics.campaign_attempt, campaign, outcome)

    @staticmethod
    def _safe(fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # watching never breaks a call
            log.exception("operator hub: %s failed", getattr(fn, "__qualname__", fn))


def _tell_subscribers(subscribers: set, message: dict) -> None:
    for queue in list(subscribers):
        _offer(queue, message, lambda q=queue: subscribers.discard(q))


def _offer(queue: asyncio.Queue, message: dict, drop) -> None:
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:  # a console that stopped reading: it is let go (EventSource reconnects)
        drop()
        try:
            queue.get_nowait()
            queue.put_nowait(None)
        except (asyncio.QueueEmpty, asyncio.QueueFull):
            pass


# the process's hub (server.create_app makes it): run_call finds it here; a simulated call
# (`voiceagent call`) runs without one
_HUB: OperatorHub | None = None


def install(hub: OperatorHub | None) -> None:
    global _HUB
    _HUB = hub


def current() -> OperatorHub | None:
    return _HUB

