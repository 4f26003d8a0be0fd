"""The HTTP side of `voiceagent serve`: health, the text chat API over the same dialog engine as
voice, browser calls (WebRTC signalling), the voice widget and the demo shop page. Models load in
the background; /healthz says "loading" until then."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import Config
from .dialog.engine import DialogState
from .textnorm import mask_pii

log = logging.getLogger(__name__)

MAX_SESSIONS = 10_000
SESSION_IDLE_S = 1800


class ChatRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=128)
    text: str = Field(max_length=10_000)
    customer_id: str | None = Field(default=None, max_length=64)
    # "voice": a front end that speaks the replies (short ones, details on request); chat may say more
    channel: Literal["text", "voice"] = "text"


WEB = Path(__file__).parent / "web"  # the widget and the demo shop page


class CallbackRequest(BaseModel):
    """The widget's "call me back" form, when no human could take the call (or the chat)."""

    phone: str = Field(min_length=5, max_length=32, pattern=r"^\+?[0-9][0-9 ()-]{3,30}$")
    session_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=80)
    note: str | None = Field(default=None, max_length=500)
    language: str | None = Field(default=None, max_length=8)


class _Sessions:
    """Chat dialog states by session id, least recently used evicted, idle ones expired."""

    def __init__(self):
        self._items: OrderedDict[str, tuple[float, DialogState, asyncio.Lock]] = OrderedDict()

    def get(self, session_id: str, customer_id: str | None) -> tuple[DialogState, asyncio.Lock]:
        # Called on the event loop only, so no thread lock is needed.
        now = time.monotonic()
        while self._items and (len(self._items) >= MAX_SESSIONS or now - next(iter(self._items.values()))[0] > SESSION_IDLE_S):
            self._items.popitem(last=False)
        item = self._items.pop(session_id, None)
        _, state, lock = item if item is not None else (now, DialogState(customer_id=customer_id), asyncio.Lock())
        self._items[session_id] = (now, state, lock)
        return state, lock


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
            app.state.runtime = runtime
            log.info("models loaded: %s", app.state.runtime.load_times_s)
            app.state.runtime.prewarm_speech()  # hot answers spoken from memory
        except Exception as exc:  # reported by /healthz; the process stays up to say why
            log.exception("model loading failed")
            app.state.load_error = str(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load in the background: the port answers at once and /healthz says "loading" until ready.
        loading_here = app.state.runtime is None
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
        if config.webrtc.enabled:
            from .browser import BrowserService

            app.state.browser = BrowserService(config, lambda: app.state.runtime, store, phone=phone, http_host=http_host)
        try:
            yield
        finally:
            app.state.stopping = True
            resuming.cancel()
            if app.state.campaigns is not None:
                await app.state.campaigns.close()  # no new dials; calls in progress finish
            if app.state.browser is not None:
                await app.state.browser.close()
            if phone is not None:
                await phone.stop()  # calls in progress end with BYE
            if app.state.pbx is not None:
                await app.state.pbx.stop()  # AudioSocket calls end with a hangup message
            if loading_here and app.state.runtime is not None:
                # before the interpreter finalises: see Runtime.stop_prewarm (a SIGTERM mid-prewarm
                # ended in std::terminate, exit -6)
                await asyncio.to_thread(app.state.runtime.stop_prewarm)

    app = FastAPI(title="voiceagent", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.phone = None  # the SIP side, when serving it
    app.state.browser = None  # browser calls (WebRTC), when enabled
    app.state.pbx = None  # Asterisk (AudioSocket + AMI), when serving it
    app.state.campaigns = None  # outbound campaigns (the operator API starts them)
    app.state.config = config
    from .store import CallStore

    store = CallStore(config.store.db)
    app.state.store = store
    app.state.load_error = None
    app.state.stopping = False
    sessions = _Sessions()
    from .campaigns.api import router as campaigns_router

    app.include_router(campaigns_router(app))

    @app.get("/healthz")
    async def healthz():
        if app.state.runtime is not None:
            return {"status": "ok"}
        if app.state.load_error:
            return JSONResponse({"status": "error", "error": app.state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    async def chat(request: Request) -> Response:
        # A plain Starlette route rather than FastAPI's dependency machinery: a cached answer costs
        # microseconds, so the framework's per-request work would be most of the bill. The body is
        # still validated by the pydantic model.
        try:
            req = ChatRequest.model_validate_json(await request.body())
        except ValidationError as e:
            return JSONResponse({"detail": e.errors(include_url=False, include_context=False, include_input=False)}, status_code=422)
        rt = app.state.runtime
        if rt is None:
            return JSONResponse({"detail": "models are still loading"}, status_code=503)
        state, lock = sessions.get(req.session_id, req.customer_id)
        state.channel = req.channel
        async with lock:  # one turn at a time per conversation; other sessions go on
            # A hot question is a dict lookup: answered here on the event loop. Anything else runs the
            # NLU and the tools in a worker thread.
            reply = rt.dialog.respond_cached(req.text, state)
            if reply is None:
                reply = await asyncio.to_thread(rt.dialog.respond, req.text, state, None, True)
        u = reply.understanding
        body = {"reply": reply.text, "intent": reply.intent, "slots": reply.slots, "emotion": u.emotion,
                "anger": u.anger, "handoff": reply.handoff, "handoff_reason": reply.handoff_reason,
                "confidence": u.confidence, "language": state.language, "dialect": state.languages.dialect,
                "escalation": reply.escalation.to_dict()}
        if reply.handoff and reply.handoff_summary:
            # the human who picks the chat up reads this at GET /api/handoffs/{handoff_id}
            summary = dict(reply.handoff_summary, call_id=f"chat-{req.session_id}", channel="chat")
            await asyncio.to_thread(store.save_handoff, summary)
            body["handoff_id"] = summary["call_id"]
        return JSONResponse(body)

    app.router.routes.append(Route("/api/chat", chat, methods=["POST"]))

    @app.get("/api/handoffs")
    async def handoffs(limit: int = 20):
        """The latest handoff summaries, newest first (the human queue's inbox)."""
        return await asyncio.to_thread(store.recent_handoffs, max(1, min(limit, 200)))

    @app.get("/api/handoffs/{call_id}")
    async def handoff(call_id: str):
        """What the human needs before picking up: caller, order, slots, intents, emotion timeline,
        what was tried, why (dialog/handoff.py)."""
        found = await asyncio.to_thread(store.handoff, call_id)
        if found is None:
            return JSONResponse({"detail": f"no handoff for call {call_id}"}, status_code=404)
        return found

    @app.get("/api/calls/{call_id}")
    async def call_record(call_id: str):
        """A finished call's record (masked), as in call.json."""
        found = await asyncio.to_thread(store.get, call_id)
        if found is None:
            return JSONResponse({"detail": f"no call {call_id}"}, status_code=404)
        return found

    @app.get("/api/asterisk")
    async def asterisk_status():
        """The Asterisk side: AudioSocket calls and counters, the AMI link."""
        pbx = app.state.pbx
        return pbx.status() if pbx is not None else {"enabled": False}

    # -- browser calls ------------------------------------------------------------------------
    def _origin_refused(request: Request) -> JSONResponse | None:
        browser = app.state.browser
        origin = request.headers.get("origin")
        if browser is not None and not browser.origin_allowed(origin, request.headers.get("host")):
            log.warning("webrtc: origin %s refused", origin)
            return JSONResponse({"detail": f"origin {origin} may not use this agent ([webrtc] allowed_origins)"},
                                status_code=403)
        return None

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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:  # refused before reading it
            return JSONResponse({"detail": f"offer too large: {declared} bytes (at most {limit})"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return JSONResponse({"detail": f"offer too large (at most {limit} bytes)"}, status_code=413)
        try:
            offer = parse_offer(bytes(body), limit)
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

    @app.get("/api/webrtc")
    async def webrtc_status():
        """Browser lines in use and what happened to offers so far."""
        browser = app.state.browser
        return browser.status() if browser is not None else {"enabled": False}

    async def callback_request(request: Request) -> Response:
        """The widget's "call me back": a callback ticket for the human team, with the browser call it
        follows (the phone number is stored for the team; logs see it masked)."""
        refused = _origin_refused(request)
        if refused is not None:
            return refused
        try:
            req = CallbackRequest.model_validate_json(await request.body())
        except ValidationError as e:
            return JSONResponse({"detail": e.errors(include_url=False, include_context=False, include_input=False)},
                                status_code=422)
        rt = app.state.runtime
        if rt is None or rt.shop is None:
            return JSONResponse({"detail": "the shop is not loaded yet"}, status_code=503)
        browser = app.state.browser
        call = browser.calls.get(req.session_id) if browser is not None and req.session_id else None
        call_id = (call.call_id if call else None) or next(
            (r.call_id for r in (browser.records if browser else []) if r.channel.get("session_id") == req.session_id), None)
        phone = re.sub(r"[^0-9+]", "", req.phone)
        detail = "; ".join(x for x in (f"phone {phone}", req.name and f"name {req.name}",
                                       call_id and f"call {call_id}", req.language and f"language {req.language}",
                                       req.note and f"note {req.note}") if x)
        ticket = await asyncio.to_thread(rt.shop.create_ticket, "callback", None, "web callback request", detail)
        log.info("callback %s requested for %s (call %s)", ticket.ticket_id, mask_pii(phone), call_id or "-")
        return JSONResponse({"ticket_id": ticket.ticket_id, "call_id": call_id}, status_code=201)

    app.router.routes.append(Route("/api/callbacks", callback_request, methods=["POST"]))

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
    uvicorn.run(create_app(config, sip=sip, http_host=host, audiosocket=audiosocket), host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=10)
    log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in stop_signals) or "server exited")
