"""The HTTP side of `voiceagent serve`: health, the text chat API over the same dialog engine as
voice, and the demo page. Models load in the background; /healthz says "loading" until then."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
import threading
import time
from collections import OrderedDict

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import Config
from .dialog.engine import DialogState

log = logging.getLogger(__name__)

MAX_SESSIONS = 10_000
SESSION_IDLE_S = 1800


class ChatRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=128)
    text: str = Field(max_length=10_000)
    customer_id: str | None = Field(default=None, max_length=64)


PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>voiceagent</title>
<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto}#log p{margin:.3rem 0}</style></head>
<body><h1>voiceagent demo shop</h1><p>Text chat with the agent (the voice widget comes with the WebRTC transport).</p>
<div id="log"></div><form id="f"><input id="t" size="50" placeholder="我的订单什么时候发货？ / Where is my parcel?">
<button>Send</button></form><script>
const sid=Math.random().toString(36).slice(2);const log=document.getElementById('log');
document.getElementById('f').onsubmit=async e=>{e.preventDefault();const t=document.getElementById('t');
const p=document.createElement('p');p.textContent='You: '+t.value;log.append(p);
const r=await fetch('/api/chat',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify({session_id:sid,text:t.value})});
const j=await r.json();const a=document.createElement('p');a.textContent='Agent: '+(j.reply||j.detail);log.append(a);t.value='';};
</script></body></html>"""


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


def create_app(config: Config, runtime=None, sip: tuple[str, int] | None = None) -> FastAPI:
    """`sip`: HOST, PORT to answer phone calls on (SIP over UDP and TCP), in the same process and
    event loop, with the same models."""
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
        try:
            yield
        finally:
            app.state.stopping = True
            if phone is not None:
                await phone.stop()  # calls in progress end with BYE
            if loading_here and app.state.runtime is not None:
                # before the interpreter finalises: see Runtime.stop_prewarm (a SIGTERM mid-prewarm
                # ended in std::terminate, exit -6)
                await asyncio.to_thread(app.state.runtime.stop_prewarm)

    app = FastAPI(title="voiceagent", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.phone = None  # the SIP side, when serving it
    from .store import CallStore

    store = CallStore(config.store.db)
    app.state.store = store
    app.state.load_error = None
    app.state.stopping = False
    sessions = _Sessions()

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

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return PAGE

    return app


def serve(config: Config, host: str = "127.0.0.1", port: int = 8080, sip: tuple[str, int] | None = None) -> None:
    import signal

    import uvicorn

    # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests in flight, then re-raises
    # the signal to the handler that was there before. That handler only notes it, so a requested
    # stop ends with exit status 0 rather than death by signal.
    stop_signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop_signals.append(signum))
    # No per-request access log: at thousands of requests a second it costs more than the answers.
    uvicorn.run(create_app(config, sip=sip), host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=10)
    log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in stop_signals) or "server exited")
