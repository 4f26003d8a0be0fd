"""Prometheus metrics (`GET /metrics`, names fixed in SPEC.md "Operator side").

Each `Metrics` has its own registry (several apps live in one test process). Every label takes
values from a bounded set: channels, outcomes, stages, emotions and handoff reasons are known lists
(anything else counts as "other"); campaign names and routes are operator-defined, so only the first
`max_campaigns` / `max_routes` seen get their own series. Never a call id.

Every series carries a `worker` label (voiceagent/cluster.py's name): many workers behind one Kamailio are
scraped by one Prometheus, and `sum by (worker)` or `sum` reads them apart or together.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

from ..cluster import worker_name

from ..events import AgentTurnDone, CallerTurnNoted, StageFailed, TransferRequested

CHANNELS = ("sip", "audiosocket", "webrtc", "campaign", "file", "chat")
OUTCOMES = ("resolved", "handoff", "unresolved", "error", "machine", "abandoned")
LATENCY_STAGES = ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice", "dialog")
FAILING_STAGES = ("asr", "dialog", "tts", "leg")
EMOTIONS = ("angry", "anxious", "hesitant", "neutral", "satisfied")  # dialog/intents.py EMOTIONS
HANDOFF_REASONS = ("caller_request", "sensitive_topic", "dialect", "angry", "low_confidence", "repeated_failure")
# campaigns/store.py OUTCOMES
CAMPAIGN_OUTCOMES = ("converted", "declined", "opted_out", "transferred", "callback", "machine", "busy", "no_answer",
                     "rejected", "failed", "dnc", "no_consent", "outside_window", "pending")
OTHER = "other"

# Voice to voice lives around 0.6-1.5 s (README: p50 ~0.65, p95 ~0.9-1.5 s): dense there; the short
# stages (asr, dialog, tts first audio) take tens of ms, so the low end is covered too.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0,
                   2.5, 3.0, 4.0, 5.0, 7.5, 10.0)


def call_outcome(record) -> str:
    """A finished call's one outcome (a record.CallRecord or its call.json dict): "machine" (a campaign
    call answered by voicemail), "error", "handoff", "resolved", "abandoned" (no caller turn) or "unresolved"."""
    data = record if isinstance(record, dict) else None
    outcome = data.get("outcome", {}) if data is not None else record.outcome
    get = outcome.get if isinstance(outcome, dict) else lambda k, d=None: getattr(outcome, k, d)
    campaign = (data.get("campaign") if data is not None else record.campaign) or {}
    turns = (data.get("turns") if data is not None else record.turns) or []
    if (campaign.get("amd") or {}).get("verdict") == "machine":
        return "machine"
    if get("ended_by") == "error" or get("error") or get("end_reason") == "stage_errors":
        return "error"
    if get("handoff"):
        return "handoff"
    if get("resolved"):
        return "resolved"
    roles = (t.get("role") if isinstance(t, dict) else getattr(t, "role", None) for t in turns)
    return "unresolved" if "caller" in roles else "abandoned"


def _bounded(value: str | None, known: tuple[str, ...]) -> str:
    return value if value in known else OTHER


class _CappedLabel:
    """Operator-defined names (campaigns, routes): the first `cap` seen keep their name, the rest are "other"."""

    def __init__(self, cap: int):
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        name = str(name)[:64] or OTHER
        with self._lock:
            if name in self._seen:
                return name
            if len(self._seen) < self.cap:
                self._seen.add(name)
                return name
        return OTHER


class _WorkerLabelled(Collector):
    """The series of a registry, each with `worker="<name>"` added at scrape time: one place for the label
    instead of one more label on every metric and every `.labels()` call."""

    def __init__(self, registry: CollectorRegistry, worker: str):
        self.registry, self.worker = registry, worker

    def collect(self):
        for family in self.registry.collect():
            labelled = copy.copy(family)
            labelled.samples = [s._replace(labels={**s.labels, "worker": self.worker}) for s in family.samples]
            yield labelled


class Metrics:
    def __init__(self, max_campaigns: int = 50, max_routes: int = 20, worker: str | None = None):
        """`worker`: the label every series carries (default: this process's cluster.worker_name())."""
        self.worker = worker_name(worker or "")
        # the metrics live in `own`; what is scraped is `registry`, which adds the worker label to them
        self.own = CollectorRegistry()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_WorkerLabelled(self.own, self.worker))
        r = self.own
        self.calls_active = Gauge("voiceagent_calls_active", "Calls in progress", ["channel"], registry=r)
        self.calls_total = Counter("voiceagent_calls_total", "Finished calls by outcome", ["channel", "outcome"],
                                   registry=r)
        self.turn_latency = Histogram("voiceagent_turn_latency_seconds", "An agent turn's latency by stage",
                                      ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.handoffs = Counter("voiceagent_handoffs_total", "Calls handed to a person, by reason", ["reason"],
                                registry=r)
        self.stage_failures = Counter("voiceagent_stage_failures_total", "Stage failures in calls", ["stage"],
                                      registry=r)
        self.caller_turns = Counter("voiceagent_caller_turns_total", "Caller turns by emotion", ["emotion"],
                                    registry=r)
        self.agent_turns = Counter("voiceagent_agent_turns_total", "Agent turns said, and cut off by the caller",
                                   ["interrupted"], registry=r)
        self.campaign_attempts = Counter("voiceagent_campaign_attempts_total", "Campaign call attempts by outcome",
                                         ["campaign", "outcome"], registry=r)
        self.chat_turns = Counter("voiceagent_chat_turns_total", "Chat turns by the shopper's emotion", ["emotion"],
                                  registry=r)
        self.rate_limited_total = Counter("voiceagent_http_rate_limited_total", "Requests answered 429", ["route"],
                                          registry=r)
        self.alerts_open = Gauge("voiceagent_alerts_open", "Open alerts by level (1-4)", ["level"], registry=r)
        self._campaign = _CappedLabel(max_campaigns)
        self._route = _CappedLabel(max_routes)
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()
        self._open_alerts: Callable[[], dict[int, int]] | None = None
        for level in (1, 2, 3, 4):
            self.alerts_open.labels(str(level)).set(0)

    # calls
    def call_started(self, channel: str) -> None:
        channel = _bounded(channel, CHANNELS)
        with self._lock:
            self._active[channel] = self._active.get(channel, 0) + 1
            self.calls_active.labels(channel).set(self._active[channel])

    calls_started = call_started  # the brief's name

    def call_ended(self, channel: str, record) -> None:
        """A finished call (record.CallRecord or its dict): one less active, one more by outcome."""
        channel = _bounded(channel, CHANNELS)
        with self._lock:
            # never below zero: a call that started before this Metrics was made
            self._active[channel] = max(0, self._active.get(channel, 0) - 1)
            self.calls_active.labels(channel).set(self._active[channel])
        self.calls_total.labels(channel, call_outcome(record)).inc()

    def on_event(self, channel: str, event) -> None:
        """A live call's event (an observer on the loop: cheap, never raises)."""
        try:
            if isinstance(event, AgentTurnDone):
                latency = getattr(event.turn, "latency_ms", None) or {}
                for stage in LATENCY_STAGES:
                    ms = latency.get(stage)
                    if ms is not None:
                        self.turn_latency.labels(stage).observe(max(0.0, float(ms)) / 1000.0)
                self.agent_turns.labels("yes" if getattr(event.turn, "interrupted", False) else "no").inc()
            elif isinstance(event, CallerTurnNoted):
                self.caller_turns.labels(_bounded(getattr(event.turn, "emotion", None), EMOTIONS)).inc()
            elif isinstance(event, TransferRequested):
                self.handoffs.labels(_bounded(event.reason, HANDOFF_REASONS)).inc()
            elif isinstance(event, StageFailed):
                self.stage_failures.labels(_bounded(event.stage, FAILING_STAGES)).inc()
        except Exception:  # a metric must never break a call
            pass

    # the rest of the product
    def campaign_attempt(self, campaign: str, outcome: str) -> None:
        self.campaign_attempts.labels(self._campaign(campaign), _bounded(outcome, CAMPAIGN_OUTCOMES)).inc()

    def chat_turn(self, emotion: str = "neutral") -> None:
        self.chat_turns.labels(_bounded(emotion, EMOTIONS)).inc()

    def rate_limited(self, route: str) -> None:
        """A request answered 429; `route` is the route's path template (never the raw URL)."""
        self.rate_limited_total.labels(self._route(route)).inc()

    def watch_alerts(self, open_counts: Callable[[], dict[int, int]]) -> None:
        """Where the open alerts are counted at each scrape (Alerts.open_counts)."""
        self._open_alerts = open_counts

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        if self._open_alerts is not None:
            try:
                counts = self._open_alerts()
            except Exception:
                counts = None
            if counts is not None:
                for level in (1, 2, 3, 4):
                    self.alerts_open.labels(str(level)).set(counts.get(level, 0))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
