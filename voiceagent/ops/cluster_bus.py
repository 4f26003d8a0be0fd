"""One console over every worker. Many `voiceagent serve` workers share one Postgres store; each keeps its own
calls (their audio, their peers) and tells the others what its consoles see, over Postgres LISTEN/NOTIFY:

    worker A: hub ─► ClusterBus.publish ─► NOTIFY voiceagent_console ─► worker B: ClusterBus ─► hub.on_remote
                                                                         ─► B's consoles (live list, call feed)

Each worker also beats every BEAT_S in the `workers` table (calls in progress, capacity, the HTTP URL the
others reach it on): GET /api/ops/workers lists them, up or down, and a listen-in or takeover asked of a
worker that does not hold the call is sent on to the one that does (ops/api.py).

With a SQLite store (one process) or `[cluster] share_events = false` there is no bus; the heartbeat still
writes this worker's row, so the list shows it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from ..cluster import worker_name

log = logging.getLogger(__name__)

CHANNEL = "voiceagent_console"
# Postgres refuses a NOTIFY payload of 8000 bytes or more; a message is shrunk (texts cut) to fit under this
MAX_PAYLOAD = 7800
BEAT_S = 2.0
DOWN_AFTER_BEATS = 3  # a worker not seen for this many beats is down
SEND_QUEUE = 2000  # messages waiting for the sender; beyond (Postgres unreachable for long), the newest are dropped
RECONNECT_S = (0.2, 5.0)  # first and longest wait before connecting again


def fit_payload(message: dict, limit: int = MAX_PAYLOAD) -> str | None:
    """The message as JSON under `limit` bytes: long strings cut shorter and shorter until it fits; None
    when even that does not (it is then not sent)."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) < limit:
        return text
    for cap in (1000, 300, 80):
        text = json.dumps(_cut_strings(message, cap), ensure_ascii=False, separators=(",", ":"))
        if len(text.encode("utf-8")) < limit:
            return text
    return None


def _cut_strings(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= cap else value[:cap] + "…"
    if isinstance(value, dict):
        return {k: _cut_strings(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, cap) for v in value[:50]]
    return value


class ClusterBus:
    """The console's messages between workers: `publish(dict)` from this worker (any thread, never blocks);
    `on_message(dict)` on the loop for every other worker's. Each message carries `worker` (its origin); a
    worker's own come back from Postgres and are dropped. Both connections reconnect on their own;
    `on_connected()` runs on each (re)connection of the listener (messages sent meanwhile were missed)."""

    def __init__(self, url: str, worker: str, on_message: Callable[[dict], None],
                 on_connected: Callable[[], None] | None = None, channel: str = CHANNEL):
        self.url, self.worker, self.channel = url, worker, channel
        self.on_message, self.on_connected = on_message, on_connected
        self.connected = asyncio.Event()  # the listener is listening
        self.sent = self.received = self.dropped = 0
        self._seq = itertools.count(1)  # Postgres folds identical payloads in one transaction: each differs
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(SEND_QUEUE)
        self._tasks = [asyncio.create_task(self._listen(), name="cluster-bus-listen"),
                       asyncio.create_task(self._send(), name="cluster-bus-send")]

    async def stop(self, flush_s: float = 2.0) -> None:
        """What is queued is sent (for up to `flush_s`), then both connections close."""
        if self._queue is not None and self._tasks:
            deadline = time.monotonic() + flush_s
            while not self._queue.empty() and time.monotonic() < deadline and not self._tasks[1].done():
                await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.connected.clear()

    # -- out ------------------------------------------------------------------------------------
    def publish(self, message: dict) -> None:
        if self._queue is None or self._loop is None or self._loop.is_closed():
            return
        message = dict(message, worker=self.worker, seq=next(self._seq))
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._enqueue(message)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, message)

    def _enqueue(self, message: dict) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("cluster bus: Postgres is not keeping up; %d console messages dropped", self.dropped)

    async def _send(self) -> None:
        import psycopg

        delay = RECONNECT_S[0]
        batch: list[str] = []
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=10,
                        application_name=f"voiceagent-bus-send-{self.worker}"[:63]) as conn:
                    delay = RECONNECT_S[0]
                    while True:
                        if not batch:
                            batch = self._payloads([await self._queue.get()])
                            extra = []
                            while not self._queue.empty() and len(extra) < 100:
                                extra.append(self._queue.get_nowait())
                            batch += self._payloads(extra)
                        if batch:
                            async with conn.transaction():  # one commit for the batch, delivered in order
                                for payload in batch:
                                    await conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                            self.sent += len(batch)
                        batch = []
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the batch is tried once more on the next connection
                log.warning("cluster bus: sending: %s; again in %.1f s", _why(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    def _payloads(self, messages: list[dict]) -> list[str]:
        out = []
        for message in messages:
            payload = fit_payload(message)
            if payload is None:
                self.dropped += 1
                log.warning("cluster bus: a %s message too large to share, dropped", message.get("type"))
            else:
                out.append(payload)
        return out

    # -- in -------------------------------------------------------------------------------------
    async def _listen(self) -> None:
        import psycopg

        delay = RECONNECT_S[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=10,
                        application_name=f"voiceagent-bus-listen-{self.worker}"[:63]) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    delay = RECONNECT_S[0]
                    self.connected.set()
                    if self.on_connected is not None:
                        _safe(self.on_connected)
                    while True:
                        async for notify in conn.notifies(timeout=10.0):
                            self._receive(notify.payload)
                        # quiet for a while: a connection dropped without a word shows itself here
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("cluster bus: listening: %s; again in %.1f s", _why(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    def _receive(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("cluster bus: a message that is not JSON, ignored")
            return
        if not isinstance(message, dict) or message.get("worker") == self.worker or not message.get("worker"):
            return
        self.received += 1
        _safe(self.on_message, message)


def _safe(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # one bad message never stops the bus
        log.exception("cluster bus: %s failed", getattr(fn, "__qualname__", fn))


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- heartbeat ----------------------------------------------------------------------------------
class Heartbeat:
    """This worker's row in `workers`, written every `beat_s`: what the others and the console know of it."""

    def __init__(self, database, worker: str, http_url: Callable[[], str], stats: Callable[[], dict],
                 sip: str = "", beat_s: float = BEAT_S, on_down: Callable[[set[str]], None] | None = None):
        self.database, self.worker, self.http_url, self.stats, self.sip = database, worker, http_url, stats, sip
        self.beat_s = beat_s
        self.down_after_s = beat_s * DOWN_AFTER_BEATS
        self.on_down = on_down
        # Every time here is the database's clock (Database.now): workers on machines whose clocks differ
        # by seconds must neither mark a healthy worker down nor keep a dead one up.
        self.started_at: float | None = None  # on the first beat (reading the db's clock may query it)
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # one beat at a time (the loop's, and a last one at stop)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="worker-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.beat)
                if self.on_down is not None:
                    down = {w["name"] for w in await asyncio.to_thread(self.workers) if not w["up"]}
                    self.on_down(down)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away for a moment: the next beat tries again
                log.warning("heartbeat: %s", _why(exc))
            await asyncio.sleep(self.beat_s)

    def beat(self) -> None:
        stats = self.stats()
        now = self.database.now()  # before the transaction: it may draw a pool connection of its own
        if self.started_at is None:
            self.started_at = now
        with self._lock, self.database.connect() as conn:
            conn.execute(
                "INSERT INTO workers (name, started_at, seen_at, http_url, sip, calls, max_calls, campaign_calls) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, "
                "seen_at = excluded.seen_at, http_url = excluded.http_url, sip = excluded.sip, calls = excluded.calls, "
                "max_calls = excluded.max_calls, campaign_calls = excluded.campaign_calls",
                (self.worker, self.started_at, now, self.http_url() or "", self.sip,
                 int(stats.get("calls", 0)), int(stats.get("max_calls", 0)), int(stats.get("campaign_calls", 0))))

    def workers(self) -> list[dict]:
        """Every worker the store has seen, this one first, with `up` (seen within DOWN_AFTER_BEATS beats,
        by the database's clock, as seen_at was written)."""
        now = self.database.now()
        with self.database.connect() as conn:
            rows = conn.execute("SELECT name, started_at, seen_at, http_url, sip, calls, max_calls, campaign_calls "
                                "FROM workers ORDER BY name").fetchall()
        out = [{"name": r[0], "started_at": r[1], "seen_at": r[2], "seen_s_ago": round(max(0.0, now - r[2]), 1),
                "up": now - r[2] <= self.down_after_s, "http_url": r[3], "sip": r[4], "calls": r[5],
                "max_calls": r[6], "campaign_calls": r[7], "self": r[0] == self.worker} for r in rows]
        return sorted(out, key=lambda w: not w["self"])

    def http_url_of(self, worker: str) -> str | None:
        """Where another worker takes HTTP requests, if it is up."""
        for w in self.workers():
            if w["name"] == worker:
                return (w["http_url"] or None) if w["up"] else None
        return None


def advertised_http_url(config, host: str, port: int) -> str:
    """The URL the other workers reach this one's HTTP side on: [cluster] http_url, else
    $VOICEAGENT_HTTP_URL, else --http (a wildcard address replaced by this host's name)."""
    configured = getattr(getattr(config, "cluster", None), "http_url", "") or os.environ.get("VOICEAGENT_HTTP_URL", "")
    if configured:
        return configured.rstrip("/")
    if _is_loopback(host) and _shared_store(config):
        # the other workers (other machines, other containers) would send listen-ins to themselves
        log.warning("cluster: --http %s is a loopback address and neither [cluster] http_url nor "
                    "VOICEAGENT_HTTP_URL is set: the other workers sharing the Postgres store cannot reach "
                    "this one at http://%s:%d (listen-in and takeover of its calls fail there); set http_url",
                    host, host, port)
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _shared_store(config) -> bool:
    """Whether [store] db is Postgres (other workers, elsewhere, may share it)."""
    from ..db import resolve

    try:
        return resolve(getattr(getattr(config, "store", None), "db", "") or "")[0] == "postgresql"
    except Exception:  # a bad [store] db is refused, clearly, where the store is opened
        return False


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ClusterSide:
    """What a server runs for the cluster: the heartbeat, and the bus when events are shared."""

    def __init__(self, heartbeat: Heartbeat | None, bus: ClusterBus | None):
        self.heartbeat, self.bus = heartbeat, bus

    def workers(self) -> list[dict]:
        return self.heartbeat.workers() if self.heartbeat is not None else []

    def http_url_of(self, worker: str) -> str | None:
        return self.heartbeat.http_url_of(worker) if self.heartbeat is not None else None

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.publish({"type": "worker_stopped"})
            await self.bus.stop()
        if self.heartbeat is not None:
            await self.heartbeat.stop()


async def start_cluster(app, sip: tuple[str, int] | None = None, beat_s: float | None = None) -> ClusterSide:
    """The heartbeat (always) and the bus (a Postgres store and [cluster] share_events) of a server."""
    from .. import db

    config, hub = app.state.config, app.state.hub
    worker = hub.worker
    heartbeat = bus = None
    try:
        database = getattr(app.state, "database", None) or await asyncio.to_thread(
            db.open_database, config.store.db, config.store.pool_size)
    except Exception as exc:
        log.warning("cluster: no heartbeat, the store cannot be opened: %s", _why(exc))
        return ClusterSide(None, None)

    def stats() -> dict:
        calls = list(hub.calls.values())
        return {"calls": len(calls), "campaign_calls": sum(1 for c in calls if c.channel == "campaign"),
                "max_calls": getattr(config.sip, "max_calls", 0)}

    heartbeat = Heartbeat(database, worker, lambda: getattr(app.state, "http_url", "") or "", stats,
                          sip=f"{sip[0]}:{sip[1]}" if sip else "", beat_s=beat_s or BEAT_S, on_down=hub.forget_workers)
    if database.dialect == "postgresql" and config.cluster.share_events:
        bus = ClusterBus(database.target, worker, hub.on_remote, on_connected=hub.bus_connected)
        await bus.start()
        hub.attach_bus(bus)
    heartbeat.start()
    log.info("cluster: worker %s%s", worker, ", console events shared over Postgres" if bus else "")
    return ClusterSide(heartbeat, bus)
