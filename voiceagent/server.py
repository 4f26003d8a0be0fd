"""The HTTP side of `voiceagent serve`: health, the text chat API over the same dialog engine as
voice, browser calls (WebRTC signalling), the voice widget and the demo shop page. Models load in
the background; /healthz says "warming" until a call would be answered at full speed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import Config

log = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"  # the widget and the demo shop page


def create_app(config: Config, runtime=None, sip: tuple[str, int] | None = None, http_host: str = "127.0.0.1",
               audiosocket: tuple[str, int] | None = None) -> FastAPI:
    """`sip`: HOST, PORT to answer phone calls on (SIP over UDP and TCP), in the same process and
    event loop, with the same models. `audiosocket`: HOST, PORT for Asterisk's AudioSocket() (with
    AMI control as configured in [asterisk]). `http_host`: where the HTTP side listens (a loopback server
    offers 127.0.0.1 as its WebRTC address)."""
    def load() -> None:
        from .runtime import Runtime

        try:
            runtime = Runtime.load(config)
            if app.state.stopping:  # shut down while loading: start no more native work
                return
            log.info("models loaded: %s", runtime.load_times_s)
            app.state.warming, app.state.warming_runtime = "speech", runtime
            # the speech kept on disk, and the greeting and fixed replies, before the first call; the
            # knowledge base's answers go on in the background at low priority, yielding to calls
            runtime.prewarm_speech()
            if app.state.stopping:
                return
            app.state.runtime = runtime  # ready: /healthz says ok, the listeners take calls
        except Exception as exc:  # reported by /healthz; the process stays up to say why
            log.exception("model loading failed")
            app.state.load_error = str(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load in the background: the port answers at once and /healthz says "warming" until ready.
        loading_here = app.state.runtime is None
        from .ops import live

        live.install(app.state.hub)  # this server's calls are watched from now on (engine/run.py)
        if loading_here:
            threading.Thread(target=load, name="model-loader", daemon=True).start()
        phone = None
        if sip is not None:
            from .phone import PhoneService

            phone = PhoneService(config, lambda: app.state.runtime, store, host=sip[0], port=sip[1])
            await phone.start()  # answers 503 until the models are loaded
            app.state.phone = phone
        if audiosocket is not None:
            from .pbx import AsteriskService

            app.state.pbx = AsteriskService(config, lambda: app.state.runtime, store, host=audiosocket[0],
                                            port=audiosocket[1])
            await app.state.pbx.start()  # refuses calls until the models are loaded
        from .campaigns.api import resume_running

        resuming = asyncio.create_task(resume_running(app))  # campaigns a restart interrupted go on
        upkeep = asyncio.create_task(_operator_upkeep(app))  # alerts to the consoles, recordings past retention
        # -- cluster (ops/cluster_bus.py): this worker's heartbeat; its consoles' events shared with the others
        from .ops.cluster_bus import start_cluster

        app.state.cluster = await start_cluster(app, sip)
        if config.webrtc.enabled:
            from .browser import BrowserService

            app.state.browser = BrowserService(config, lambda: app.state.runtime, store, phone=phone, http_host=http_host)
        try:
            yield
        finally:
            app.state.stopping = True
            resuming.cancel()
            upkeep.cancel()
            app.state.chat_pool.shutdown()
            if app.state.campaigns is not None:
                await app.state.campaigns.close()  # no new dials; calls in progress finish
            if config.cluster.drain_s > 0:
                await _drain(app, phone, config.cluster.drain_s)
            if app.state.browser is not None:
                await app.state.browser.close()
            if phone is not None:
                await phone.stop()  # calls in progress end with BYE
            if app.state.pbx is not None:
                await app.state.pbx.stop()  # AudioSocket calls end with a hangup message
            await app.state.cluster.stop()  # cluster: after the last call's end was shared
            if loading_here and app.state.warming_runtime is not None:
                # before the interpreter finalises: see Runtime.stop_prewarm (a SIGTERM mid-prewarm
                # ended in std::terminate, exit -6)
                await asyncio.to_thread(app.state.warming_runtime.stop_prewarm)
            await app.state.hub.drain()  # the last calls' recordings encoded
            await asyncio.to_thread(app.state.alerts.close)  # after the last call: its alerts are written
            if live.current() is app.state.hub:
                live.install(None)

    # no open /docs or /openapi.json: the schema is for operators (/api/ops/openapi.json)
    app = FastAPI(title="voiceagent", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.runtime = runtime
    app.state.phone = None  # the SIP side, when serving it
    app.state.browser = None  # browser calls (WebRTC), when enabled
    app.state.pbx = None  # Asterisk (AudioSocket + AMI), when serving it
    app.state.campaigns = None  # outbound campaigns (the operator API starts them)
    app.state.cluster = None  # cluster: heartbeat and console bus (ops/cluster_bus.py), while serving
    app.state.http_url = ""  # cluster: where the other workers reach this one's HTTP side (serve sets it)
    app.state.config = config
    from .cluster import worker_name
    from .db import open_database
    from .store import CallStore

    # One pool per worker, shared by every store below ([store] db: SQLite file or Postgres URL); a URL
    # the store cannot open stops the start here with its reason.
    app.state.database = open_database(config.store.db, config.store.pool_size)
    app.state.worker = worker_name(config.cluster.worker)
    store = CallStore(app.state.database, worker=app.state.worker)
    store.replay_spooled()  # records a previous run could not store (the store was unreachable then)
    app.state.store = store
    app.state.load_error = None
    app.state.warming = "models"  # then "speech"; /healthz says ok once calls are answered at full speed
    app.state.warming_runtime = runtime  # loaded, the speech being made ready
    app.state.stopping = False
    from .campaigns.api import router as campaigns_router

    app.include_router(campaigns_router(app))
    _operator_side(app, config, store)

    @app.get("/healthz")
    async def healthz():
        """ok (200) once a call is answered as fast as any later one: the models loaded and warmed, the
        greeting and fixed replies ready to play; `speech_cache` counts the pre-synthesised sentences
        (the knowledge base's answers may still be synthesising). Until then 503, "warming" (a load
        balancer sends no calls), or "error" when loading failed."""
        runtime = app.state.runtime
        if runtime is not None and _listeners_accepting(app):
            speech = runtime.speech_status() if hasattr(runtime, "speech_status") else {"ready": 0, "missing": 0}
            return {"status": "ok", "speech_cache": speech}
        if app.state.load_error:
            return JSONResponse({"status": "error", "error": app.state.load_error}, status_code=503)
        return JSONResponse({"status": "warming", "stage": "listeners" if runtime is not None else app.state.warming},
                            status_code=503)

    # -- browser calls ------------------------------------------------------------------------
    def _origin_refused(request: Request) -> JSONResponse | None:
        browser = app.state.browser
        origin = request.headers.get("origin")
        if browser is not None and not browser.origin_allowed(origin, request.headers.get("host")):
            log.warning("webrtc: origin %s refused", origin)
            return JSONResponse({"detail": f"origin {origin} may not use this agent ([webrtc] allowed_origins)"},
                                status_code=403)
        return None

    from .http_bodies import read_capped_body
    from .public import add_public_routes

    add_public_routes(app, config, store, _origin_refused)

    async def webrtc_offer(request: Request) -> Response:
        """`{"sdp", "type": "offer", "language"?}` → `{"sdp", "type": "answer", "session_id"}`: a
        voice call with the agent. The offer carries its gathered ICE candidates (no trickle)."""
        from telephony.webrtc.offer import OfferError, parse_offer

        from .browser import ServiceUnavailable

        browser = app.state.browser
        if browser is None:
            return JSONResponse({"detail": "browser calls are off ([webrtc] enabled = false)"}, status_code=404)
        refused = _origin_refused(request)
        if refused is not None:
            return refused
        limit = config.webrtc.max_offer_bytes
        body = await read_capped_body(request, limit, "offer")
        if isinstance(body, Response):
            return body
        try:
            offer = parse_offer(body, limit)
            session_id, answer = await browser.open(offer, origin=request.headers.get("origin", ""),
                                                    remote=request.client.host if request.client else "")
        except OfferError as exc:
            return JSONResponse({"detail": exc.reason}, status_code=exc.status)
        except ServiceUnavailable as exc:
            return JSONResponse({"detail": exc.reason}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})
        return JSONResponse({"sdp": answer, "type": "answer", "session_id": session_id})

    app.router.routes.append(Route("/api/webrtc/offer", webrtc_offer, methods=["POST"]))

    @app.delete("/api/webrtc/{session_id}")
    async def webrtc_hangup(session_id: str):
        """The page hangs up (also possible over its data channel)."""
        browser = app.state.browser
        if browser is None or not await browser.hangup(session_id):
            return JSONResponse({"detail": f"no browser call {session_id}"}, status_code=404)
        return {"status": "ending"}


    @app.get("/widget.js")
    async def widget():
        return FileResponse(WEB / "widget.js", media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8")

    if config.webrtc.allowed_origins:  # other sites embed the widget: let their pages call the API
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.webrtc.allowed_origins,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Content-Type"])
    return app


def _operator_side(app: FastAPI, config: Config, store) -> None:
    """Who may see what (ops/auth.py), the live calls (ops/live.py), and what is kept of them."""
    from .ops import live
    from .ops.alerts import Alerts
    from .ops.api import router as ops_router
    from .ops.auth import AuthPolicy, OperatorAuth, login_routes
    from .ops.history import CallHistory
    from .ops.metrics import Metrics
    from .ops.recordings import RecordingStore

    ops = config.ops
    app.state.auth = OperatorAuth(app.state.database, AuthPolicy(
        max_failures=ops.max_failed_logins, lockout_s=ops.lockout_min * 60, session_idle_s=ops.session_idle_h * 3600,
        session_max_s=ops.session_max_h * 3600))
    app.state.metrics = Metrics(worker=config.cluster.worker)  # every series labelled with the worker
    app.state.alerts = Alerts(app.state.database, config.alerts)
    app.state.metrics.watch_alerts(app.state.alerts.open_counts)
    app.state.recordings = (RecordingStore.from_config(config.recordings, app.state.database, app.state.worker)
                            if config.recordings.enabled else None)
    app.state.history = CallHistory(app.state.database, has_recording=app.state.recordings.exists
                                    if app.state.recordings is not None else None)
    app.state.ratings = app.state.history.ratings  # the widget's stars and the phone's "press 1 to 5"
    app.state.hub = live.OperatorHub(config, lambda: app.state.runtime, metrics=app.state.metrics,
                                     alerts=app.state.alerts, recordings=app.state.recordings,
                                     history=app.state.history)
    from .public import client_address

    app.include_router(login_routes(app.state.auth,
                                    client_key=lambda request: client_address(request, config.security)))
    app.include_router(ops_router(app))


async def _drain(app: FastAPI, phone, drain_s: float) -> None:
    """A worker told to stop (a rolling restart, a scale-down) takes no new call and lets the calls in
    progress finish, up to `drain_s`, before the rest are hung up: SIP INVITEs and OPTIONS get 503 (the
    dispatcher sends calls to the other workers), AudioSocket connections are refused; HTTP has already
    stopped taking requests (uvicorn)."""
    if phone is not None:
        phone.ua.accepting = False
    if app.state.pbx is not None:
        app.state.pbx.server.accepting = False
    hub = app.state.hub
    deadline = time.monotonic() + drain_s
    if hub.calls:
        log.info("draining: %d call(s) in progress, waiting up to %.0f s for them to end", len(hub.calls), drain_s)
    while hub.calls and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    if hub.calls:
        log.warning("draining: %d call(s) still in progress after %.0f s: hung up", len(hub.calls), drain_s)


def _listeners_accepting(app: FastAPI) -> bool:
    """The call listeners served here take calls (they open a moment after the models are ready:
    accept_when_loaded)."""
    phone, pbx = app.state.phone, app.state.pbx
    listeners = (getattr(phone, "ua", None), getattr(pbx, "server", None))
    return all(getattr(listener, "accepting", True) for listener in listeners if listener is not None)


async def _operator_upkeep(app: FastAPI) -> None:
    """Alerts to every console as they are raised; recordings past their retention deleted hourly."""
    alerts = app.state.alerts.subscribe()
    recordings = app.state.recordings
    if recordings is not None:
        await asyncio.to_thread(recordings.recover)  # what a killed process had spilled becomes a recording
    next_purge = 0.0
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                alert = await asyncio.wait_for(alerts.get(), 60)
                app.state.hub.alert_raised(alert)
            except asyncio.TimeoutError:
                pass
            if recordings is not None and loop.time() >= next_purge:
                next_purge = loop.time() + 3600
                removed = await asyncio.to_thread(recordings.purge_expired)
                if removed:
                    log.info("%d recordings past their retention deleted", removed)
    except asyncio.CancelledError:
        app.state.alerts.unsubscribe(alerts)
        raise
    except Exception:
        log.exception("operator upkeep stopped")


def serve(config: Config, host: str = "127.0.0.1", port: int = 8080, sip: tuple[str, int] | None = None,
          audiosocket: tuple[str, int] | None = None) -> None:
    import signal

    import uvicorn

    # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests in flight, then re-raises
    # the signal to the handler that was there before. That handler only notes it, so a requested
    # stop ends with exit status 0 rather than death by signal.
    stop_signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop_signals.append(signum))
    # No per-request access log: at thousands of requests a second it costs more than the answers.
    from .ops.cluster_bus import advertised_http_url

    app = create_app(config, sip=sip, http_host=host, audiosocket=audiosocket)
    app.state.http_url = advertised_http_url(config, host, port)  # cluster: the other workers send requests here
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=10)
    log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in stop_signals) or "server exited")
