"""The four-level alerts (四级预警: 1 关注 notice, 2 预警 warning, 3 危机 crisis, 4 重大危机 major crisis).

Rules over live and recent calls, thresholds in `[alerts]`:

    a caller's anger: twice in a row >= anger_warning, or rising over N turns ... 2   anger        (per call)
    a caller's anger >= anger_crisis ............................................ 3   anger        (per call)
    a threat to go to the press, regulators or a lawyer ......................... 3   threat       (per call)
    ... by an angry caller ...................................................... 4   threat       (per call)
    a transfer to a person that failed .......................................... 2   transfer_failed (per call)
    angry calls per window (15 min) >= angry_calls (2x: level 3) ................ 2/3 angry_calls
    handoffs among the last N calls >= handoff_rate ............................. 2   handoff_rate
    ASR failures per window >= asr_failures ..................................... 2   asr_failures
    voice-to-voice p95 over the last N agent turns > budget (x factor: level 2) . 1/2 latency

A call's alert of one kind and level is raised once in that call; a window's is not raised again
while open, nor until its measure has gone back under the threshold. Observers run on the event
loop: the rules are arithmetic on a few numbers there; the store's writes go to a writer thread and
webhooks to a small pool (retried with backoff), so a slow disk or a dead webhook never holds a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..config import AlertsConfig
from ..events import AgentTurnDone, CallerTurnNoted, StageFailed
from ..db import Database
from ..store import store_database
from ..textnorm import mask_pii
from .metrics import call_outcome

log = logging.getLogger(__name__)

LEVELS: dict[int, tuple[str, str]] = {1: ("notice", "关注"), 2: ("warning", "预警"), 3: ("crisis", "危机"),
                                      4: ("major_crisis", "重大危机")}

# Threats to take the complaint outside: where to (for the message) and the words that say it.
# Words a shopper also uses innocently are kept out or held to their threatening sense (工商 is
# also a bank, 微博 also where they saw an ad, "court shoes", "press 1", "order 315...").
THREATS: dict[str, re.Pattern] = {
    "press": re.compile(
        r"曝光|媒体|记者|电视台|报社|上新闻|上热搜|发(到|在)?(网上|微博|抖音|朋友圈|小红书)|网上(说|讲|发)|让大家(都)?(看看|知道)|"
        r"\b(the press|press release|journalists?|reporters?|newspapers?|news ?(paper|channel|station)s?|"
        r"(to|tell|call|contact|alert) (the )?media|go public|going public|"
        r"(post|put|share|tweet)\w* (it|this|about (it|this|you)|everything)( all)? (online|on (twitter|tiktok|facebook|x|"
        r"social media|reddit|youtube|instagram))|all over (twitter|tiktok|facebook|social media|the internet|reddit)|"
        r"(bad|negative|terrible|1[- ]star|one[- ]star) reviews? everywhere)\b", re.I),
    "regulator": re.compile(
        r"(?<![\d-])(?<!\d )(12315|315)(?![\d-])(?! \d)|消协|消费者协会|消保委|投诉到工商|找工商|工商局|工商部门|市场监管|市场监督|监管部门|监管局|"
        r"有关部门|相关部门|物价局|质监局|"
        r"\b(regulators?|regulatory|ombudsman|trading standards|consumer (protection|council|rights|affairs|agency)|"
        r"bbb|better business bureau|ftc|federal trade commission|attorney general|cpsc|cfpb)\b", re.I),
    "legal": re.compile(
        r"律师|起诉|法院|打官司|告你们|告到底|法律途径|法律手段|诉讼|传票|仲裁|"
        r"\b(lawyers?|attorneys?|solicitors?|sue|suing|sued|lawsuit|legal action|take (you|this|it) to court|"
        r"see you in court|in court|small claims|litigation|legal (team|department)|my legal)\b", re.I),
}
THREAT_WORDS = {"press": ("the press", "媒体曝光"), "regulator": ("regulators", "监管部门投诉"),
                "legal": ("a lawyer", "法律诉讼")}

_ALERT_COLUMNS = ("id", "at", "level", "kind", "call_id", "channel", "message", "message_zh", "dedupe_key", "acked_by",
                  "acked_at")
_UPSERT_ALERT = (f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) VALUES ({','.join('?' * len(_ALERT_COLUMNS))}) "
                 "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _ALERT_COLUMNS[1:]))

MAX_WATCHED_CALLS = 2000  # live calls whose turns are followed; beyond (calls never ended), the oldest are dropped
MAX_PENDING_WEBHOOKS = 200


def threat(text: str, extra: re.Pattern | None = None) -> str | None:
    """Where a caller's words threaten to take the complaint ("press", "regulator", "legal"), or None."""
    for where, pattern in THREATS.items():
        if pattern.search(text):
            return where
    if extra is not None and extra.search(text):
        return "legal"
    return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _get(obj, name: str, default=None):
    """A field of a record's part, whether the dataclass or its call.json dict."""
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


@dataclass
class Alert:
    id: str
    at: float  # epoch seconds
    level: int
    kind: str
    message: str
    message_zh: str
    call_id: str | None = None
    channel: str | None = None
    dedupe_key: str = ""
    acked_by: str | None = None
    acked_at: float | None = None

    def to_dict(self) -> dict:
        """As `GET /api/ops/alerts` lists it."""
        name, name_zh = LEVELS[self.level]
        return {"id": self.id, "level": self.level, "level_name": name, "level_name_zh": name_zh, "kind": self.kind,
                "call_id": self.call_id, "channel": self.channel, "message": self.message,
                "message_zh": self.message_zh, "at": _iso(self.at), "acked_by": self.acked_by,
                "acked_at": _iso(self.acked_at) if self.acked_at is not None else None}

    def webhook_payload(self) -> dict:
        return {"id": self.id, "level": self.level, "level_name": LEVELS[self.level][0], "kind": self.kind,
                "call_id": self.call_id, "message": self.message, "message_zh": self.message_zh, "at": _iso(self.at)}


@dataclass
class _CallWatch:
    """What the rules remember of one live call."""

    angers: deque = field(default_factory=lambda: deque(maxlen=8))
    peak_anger: float = 0.0
    raised: set = field(default_factory=set)  # (kind, level) raised in this call
    counted_angry: bool = False


class Alerts:
    def __init__(self, db: str | Path | Database = "", config: AlertsConfig | None = None,
                 webhook_sender: Callable[[dict], None] | None = None, now: Callable[[], float] = time.time):
        """`webhook_sender(payload)` delivers one alert (raises when it failed); default: a JSON POST to
        `[alerts] webhook_url`, none when that is empty."""
        self.config = config or AlertsConfig()
        self.db = store_database(db)
        self.now = now
        c = self.config
        self._extra = re.compile("|".join(f"(?:{w})" for w in c.threat_words), re.I) if c.threat_words else None
        self._lock = threading.RLock()
        self._open: dict[str, Alert] = {}
        self._open_keys: set[str] = set()  # their dedupe keys: one open alert per kind, call and level
        self._calls: OrderedDict[str, _CallWatch] = OrderedDict()
        self._armed: dict[tuple[str, int], bool] = {}  # window rules: (kind, level) -> may raise
        self._angry_at: deque[float] = deque()  # when each angry call turned angry
        self._asr_failed_at: deque[float] = deque()
        self._recent_handoffs: deque[bool] = deque(maxlen=max(1, c.handoff_rate_calls))
        self._v2v_s: deque[float] = deque(maxlen=max(1, c.v2v_turns))
        self._subscribers: list[tuple[asyncio.Queue, asyncio.AbstractEventLoop]] = []
        self.webhooks_delivered = 0
        self.webhooks_failed = 0
        self._webhooks_pending = 0
        self._send = webhook_sender or (self._post if c.webhook_url else None)
        self._closing = threading.Event()

        with self.db.connect() as conn:
            rows = conn.execute("SELECT id, at, level, kind, message, message_zh, call_id, channel, dedupe_key "
                                "FROM alerts WHERE acked_at IS NULL AND at >= ?",
                                (now() - c.open_for_h * 3600,)).fetchall()
        for row in rows:
            alert = Alert(*row)
            self._open[alert.id] = alert
            self._open_keys.add(alert.dedupe_key)
        self._writes: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="alerts-writer", daemon=True)
        self._writer.start()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alerts-webhook")

    # the calls (observers: on the loop, cheap, never raise)
    def on_event(self, call_id: str, channel: str, event) -> None:
        try:
            if isinstance(event, CallerTurnNoted):
                self._caller_turn(call_id, channel, self._watch(call_id), event.turn)
            elif isinstance(event, AgentTurnDone):
                self._agent_turn(_get(event.turn, "latency_ms") or {})
            elif isinstance(event, StageFailed) and event.stage == "asr":
                self._asr_failed(call_id, channel)
        except Exception:
            log.exception("alerts: event %s of call %s", type(event).__name__, call_id)

    def call_ended(self, call_id: str, channel: str, record) -> None:
        """A finished call (record.CallRecord or its call.json dict). A call not followed live (a recorded
        one, a chat) has its caller turns read now."""
        try:
            with self._lock:
                watch = self._calls.pop(call_id, None)
            if watch is None:
                watch = _CallWatch()
                for turn in _get(record, "turns") or []:
                    if _get(turn, "role") == "caller":
                        self._caller_turn(call_id, channel, watch, turn)
            outcome = _get(record, "outcome") or {}
            if _get(outcome, "transfer_ok") is False:
                status = _get(outcome, "transfer_status") or "failed"
                target = _get(outcome, "handoff_target") or "a person"
                self._raise_in_call(watch, call_id, channel, 2, "transfer_failed",
                                    f"Transfer to {target} failed ({status})", f"转人工失败（{status}）")
            label = call_outcome(record)
            if label not in ("abandoned", "machine"):  # nobody spoke: neither handled nor handed off
                self._handoff_counted(label == "handoff" or bool(_get(outcome, "handoff")))
        except Exception:
            log.exception("alerts: end of call %s", call_id)

    def _watch(self, call_id: str) -> _CallWatch:
        with self._lock:
            watch = self._calls.get(call_id)
            if watch is None:
                watch = self._calls[call_id] = _CallWatch()
                while len(self._calls) > MAX_WATCHED_CALLS:
                    self._calls.popitem(last=False)
            return watch

    # the rules
    def _caller_turn(self, call_id: str, channel: str, watch: _CallWatch, turn) -> None:
        c = self.config
        anger = float(_get(turn, "anger") or 0.0)
        watch.angers.append(anger)
        watch.peak_anger = max(watch.peak_anger, anger)
        angry = anger >= c.anger_warning or _get(turn, "emotion") == "angry"
        recent = list(watch.angers)
        if anger >= c.anger_crisis:
            self._raise_in_call(watch, call_id, channel, 3, "anger", f"Caller very angry (anger {anger:.2f})",
                                f"客户情绪非常激动（愤怒度 {anger:.2f}）")
        elif len(recent) >= 2 and min(recent[-2:]) >= c.anger_warning:
            self._raise_in_call(watch, call_id, channel, 2, "anger",
                                f"Caller angry two turns in a row ({recent[-2]:.2f}, {anger:.2f})",
                                f"客户连续两轮情绪激动（{recent[-2]:.2f}，{anger:.2f}）")
        elif self._rising(recent):
            first = recent[-c.anger_rising_turns]
            self._raise_in_call(watch, call_id, channel, 2, "anger",
                                f"Caller's anger rising over {c.anger_rising_turns} turns ({first:.2f} -> {anger:.2f})",
                                f"客户情绪持续升高（{first:.2f} → {anger:.2f}）")
        where = threat(str(_get(turn, "text") or ""), self._extra)
        if where:
            words = mask_pii(str(_get(turn, "text") or "")).strip()
            quote = words if len(words) <= 60 else words[:59] + "…"
            en, zh = THREAT_WORDS[where]
            if angry or watch.peak_anger >= c.anger_warning:
                self._raise_in_call(watch, call_id, channel, 4, "threat", f"Angry caller threatens {en}: \"{quote}\"",
                                    f"客户情绪激动并扬言{zh}：“{quote}”")
            else:
                self._raise_in_call(watch, call_id, channel, 3, "threat", f"Caller threatens {en}: \"{quote}\"",
                                    f"客户扬言{zh}：“{quote}”")
        if angry and not watch.counted_angry:
            watch.counted_angry = True
            now = self.now()
            with self._lock:
                self._angry_at.append(now)
                n = self._in_window(self._angry_at, now)
            minutes = round(c.window_s / 60)
            for level, at_least in ((2, c.angry_calls), (3, 2 * c.angry_calls)):
                self._raise_in_window(level, "angry_calls", n >= at_least,
                                      f"{n} angry callers in the last {minutes} min",
                                      f"近{minutes}分钟内{n}通来电客户情绪激动")

    def _rising(self, recent: list[float]) -> bool:
        n = self.config.anger_rising_turns
        if n < 2 or len(recent) < n:
            return False
        last = recent[-n:]
        return all(b > a for a, b in zip(last, last[1:])) and last[-1] - last[0] >= self.config.anger_rise

    def _agent_turn(self, latency_ms: dict) -> None:
        c = self.config
        v2v = latency_ms.get("voice_to_voice")
        if v2v is None:
            return
        with self._lock:
            self._v2v_s.append(float(v2v) / 1000.0)
            if len(self._v2v_s) < self._v2v_s.maxlen:
                return
            ordered = sorted(self._v2v_s)
        p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
        for level, budget in ((1, c.v2v_budget_s), (2, c.v2v_budget_s * c.v2v_warning_factor)):
            self._raise_in_window(level, "latency", p95 > budget,
                                  f"Voice-to-voice p95 {p95:.2f} s over the last {len(ordered)} turns "
                                  f"(budget {budget:.2f} s)",
                                  f"最近{len(ordered)}轮响应时延P95为{p95:.2f}秒，超出{budget:.2f}秒")

    def _asr_failed(self, call_id: str, channel: str) -> None:
        now = self.now()
        with self._lock:
            self._asr_failed_at.append(now)
            n = self._in_window(self._asr_failed_at, now)
        minutes = round(self.config.window_s / 60)
        self._raise_in_window(2, "asr_failures", n >= self.config.asr_failures,
                              f"{n} speech recognition failures in the last {minutes} min",
                              f"近{minutes}分钟内语音识别失败{n}次")

    def _handoff_counted(self, handoff: bool) -> None:
        c = self.config
        with self._lock:
            self._recent_handoffs.append(handoff)
            if len(self._recent_handoffs) < self._recent_handoffs.maxlen:
                return
            n, handed = len(self._recent_handoffs), sum(self._recent_handoffs)
        rate = handed / n
        self._raise_in_window(2, "handoff_rate", rate >= c.handoff_rate,
                              f"{rate:.0%} of the last {n} calls handed to a person ({handed})",
                              f"最近{n}通来电中{rate:.0%}转人工（{handed}通）")

    def _in_window(self, times: deque, now: float) -> int:
        while times and times[0] < now - self.config.window_s:
            times.popleft()
        return len(times)

    def _raise_in_call(self, watch: _CallWatch, call_id: str, channel: str, level: int, kind: str,
                       message: str, message_zh: str) -> None:
        if any(k == kind and at >= level for k, at in watch.raised):  # as high or higher already
            return
        watch.raised.add((kind, level))
        self._raise(level, kind, message, message_zh, call_id, channel)

    def _raise_in_window(self, level: int, kind: str, over: bool, message: str, message_zh: str) -> None:
        """A window's rule: raised when its measure goes over, and armed again once it is back under."""
        with self._lock:
            armed = self._armed.get((kind, level), True)
            self._armed[(kind, level)] = not over
        if over and armed:
            self._raise(level, kind, message, message_zh)

    def _raise(self, level: int, kind: str, message: str, message_zh: str, call_id: str | None = None,
               channel: str | None = None) -> Alert | None:
        key = f"{kind}|{call_id or ''}|{level}"
        with self._lock:
            if key in self._open_keys:
                return None
            alert = Alert(uuid.uuid4().hex[:16], self.now(), level, kind, message, message_zh, call_id, channel, key)
            self._open[alert.id] = alert
            self._open_keys.add(key)
        self._writes.put(("insert", alert))
        self._publish(alert)
        if self._send is not None and level >= self.config.webhook_min_level:
            self._deliver(alert)
        log.info("alert %s level %d %s: %s", alert.id, level, kind, message)
        return alert

    # what the console asks
    def open_alerts(self) -> list[dict]:
        """Open alerts, newest first: the store's, so every worker's (a console may be served by any worker
        of a shared store). Queries the store: call it in a thread from async code. Alerts of this worker's
        that the store says another worker acknowledged (a bus message missed) leave its open list here."""
        self.flush()  # ours raised or acknowledged a moment ago are in the store
        since = self.now() - self.config.open_for_h * 3600
        with self.db.connect() as conn:
            rows = conn.execute("SELECT id, at, level, kind, message, message_zh, call_id, channel, dedupe_key "
                                "FROM alerts WHERE acked_at IS NULL AND at >= ? ORDER BY at DESC, id",
                                (since,)).fetchall()
            with self._lock:
                mine = list(self._open)
            acked = set()
            for start in range(0, len(mine), 500):
                chunk = mine[start:start + 500]
                acked.update(r[0] for r in conn.execute(
                    f"SELECT id FROM alerts WHERE acked_at IS NOT NULL AND id IN ({','.join('?' * len(chunk))})",
                    tuple(chunk)).fetchall())
        for alert_id in acked:
            self.acked_elsewhere(alert_id)
        return [Alert(*row).to_dict() for row in rows]

    def open_counts(self) -> dict[int, int]:
        """Open alerts per level (for the metrics)."""
        counts = {level: 0 for level in LEVELS}
        with self._lock:
            for a in self._unexpired():
                counts[a.level] += 1
        return counts

    def _unexpired(self) -> list[Alert]:
        """The open alerts younger than `open_for_h`; older ones are forgotten here (still open in the store)."""
        since = self.now() - self.config.open_for_h * 3600
        for old in [a for a in self._open.values() if a.at < since]:
            del self._open[old.id]
            self._open_keys.discard(old.dedupe_key)
        return list(self._open.values())

    def get(self, alert_id: str) -> dict | None:
        with self._lock:
            alert = self._open.get(alert_id)
        if alert is not None:
            return alert.to_dict()
        self.flush()
        with self.db.connect() as conn:
            row = conn.execute("SELECT id, at, level, kind, message, message_zh, call_id, channel, dedupe_key, "
                               "acked_by, acked_at FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return Alert(*row).to_dict() if row else None

    def ack(self, alert_id: str, operator: str) -> bool:
        """An operator has seen it: it leaves the open list, on every worker (the acknowledgement is
        published like a raised alert: the server puts it on the bus, and the worker that raised it drops
        it from its open list, `acked_elsewhere`). False: no such open alert. May query the store."""
        with self._lock:
            alert = self._open.pop(alert_id, None)
            if alert is not None:
                self._open_keys.discard(alert.dedupe_key)
                alert.acked_by, alert.acked_at = operator, self.now()
        if alert is None:
            alert = self._ack_stored(alert_id, operator)
            if alert is None:
                return False
        else:
            self._writes.put(("ack", alert))
        self._publish(alert)
        return True

    def _ack_stored(self, alert_id: str, operator: str) -> Alert | None:
        """An alert this worker does not hold open: one another worker raised (the console may be served
        by any worker of a shared store). Flushed first, so that one of ours acked a moment ago is seen
        as acked, not acked twice."""
        self.flush()
        with self.db.connect() as conn:
            row = conn.execute("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_at IS NULL "
                               "RETURNING id, at, level, kind, message, message_zh, call_id, channel, dedupe_key, "
                               "acked_by, acked_at", (operator, self.now(), alert_id)).fetchone()
        return Alert(*row) if row else None

    def acked_elsewhere(self, alert_id: str) -> None:
        """Another worker acknowledged this alert (its message on the bus, or the store says so): if this
        worker raised it, it leaves the open list and the open counts here, and a new breach of the same
        rule may raise it again. Cheap, no I/O: called on the loop."""
        with self._lock:
            alert = self._open.pop(alert_id, None)
            if alert is not None:
                self._open_keys.discard(alert.dedupe_key)

    def subscribe(self) -> asyncio.Queue:
        """A queue of alert dicts as they are raised and acknowledged (acked_by set); call on the loop."""
        q: asyncio.Queue = asyncio.Queue(maxsize=256)
        with self._lock:
            self._subscribers.append((q, asyncio.get_running_loop()))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(s, loop) for s, loop in self._subscribers if s is not q]

    def _publish(self, alert: Alert) -> None:
        item = alert.to_dict()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            subscribers = list(self._subscribers)
        for q, loop in subscribers:
            if loop is running:
                _offer(q, item)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_offer, q, item)

    # off the loop: the store and the webhook
    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            try:
                if item is None:
                    return
                if item[0] == "flush":
                    item[1].set()
                    continue
                alert: Alert = item[1]
                with self.db.connect() as conn:
                    if item[0] == "insert":
                        conn.execute(_UPSERT_ALERT, (alert.id, alert.at, alert.level, alert.kind, alert.call_id,
                                                     alert.channel, alert.message, alert.message_zh,
                                                     alert.dedupe_key, alert.acked_by, alert.acked_at))
                    else:
                        # the first acknowledgement stands (another worker's may have come first)
                        conn.execute("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ? AND acked_at IS NULL",
                                     (alert.acked_by, alert.acked_at, alert.id))
            except Exception:
                log.exception("alerts: storing %s", item[0] if item else item)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until what was raised or acknowledged so far is in the store."""
        done = threading.Event()
        self._writes.put(("flush", done))
        return done.wait(timeout_s)

    def _deliver(self, alert: Alert) -> None:
        with self._lock:
            if self._webhooks_pending >= MAX_PENDING_WEBHOOKS:
                log.warning("alerts: webhook backlog full, alert %s not sent", alert.id)
                self.webhooks_failed += 1
                return
            self._webhooks_pending += 1
        try:
            self._pool.submit(self._deliver_with_retries, alert.webhook_payload())
        except RuntimeError:  # closed
            with self._lock:
                self._webhooks_pending -= 1

    def _deliver_with_retries(self, payload: dict) -> None:
        c = self.config
        ok = False
        try:
            for attempt in range(max(0, c.webhook_retries) + 1):
                if attempt and self._closing.wait(c.webhook_backoff_s * 2 ** (attempt - 1)):
                    break
                try:
                    self._send(payload)
                    ok = True
                    break
                except urllib.error.HTTPError as exc:
                    log.warning("alerts: webhook answered %s for alert %s", exc.code, payload["id"])
                    if 400 <= exc.code < 500 and exc.code != 429:  # it will not take it: no retry
                        break
                except Exception as exc:
                    log.warning("alerts: webhook for alert %s failed: %s", payload["id"], exc)
        finally:
            with self._lock:
                self._webhooks_pending -= 1
                if ok:
                    self.webhooks_delivered += 1
                else:
                    self.webhooks_failed += 1

    def _post(self, payload: dict) -> None:
        request = urllib.request.Request(self.config.webhook_url, method="POST",
                                         data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                         headers={"Content-Type": "application/json; charset=utf-8",
                                                  "User-Agent": "voiceagent-alerts"})
        with urllib.request.urlopen(request, timeout=self.config.webhook_timeout_s) as response:
            response.read()

    @property
    def webhooks_pending(self) -> int:
        return self._webhooks_pending

    def close(self) -> None:
        """Stop the writer (after what is queued) and the webhook retries."""
        self._closing.set()
        self._writes.put(None)
        self._writer.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _offer(q: asyncio.Queue, item: dict) -> None:
    try:
        q.put_nowait(item)
    except asyncio.QueueFull:  # a console not reading: it re-reads the list when it comes back
        pass
