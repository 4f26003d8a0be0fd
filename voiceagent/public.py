"""The public surface of the HTTP server, beside the widget: the text chat over the same dialog
engine as voice, the widget's "call me back" form and its star rating. Anyone on the internet can
reach these, so nothing here tells about another person's call or order:

- a chat's shopper is who the shop's backend signed (`customer_token`, voiceagent/identity.py);
  a bare `customer_id` is deprecated and ignored, and a phone number typed into the chat finds no
  one (an anonymous chat proves an order with its phone's last four digits: dialog/flows/ownership.py);
- bodies are JSON only (a cross-site form cannot post them), at most `[security] max_body_bytes`;
- each client address is rate limited; chat turns that miss the cache run in a small pool of
  low-priority threads with a bounded queue, so a flood of chats cannot slow a live call down;
- handoff ids are random; session ids never leave the operator side."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import Config, SecurityConfig
from .dialog.engine import DialogState
from .http_bodies import read_json_body
from .identity import verify_customer
from .ops.ratelimit import RateLimiter
from .textnorm import mask_pii

log = logging.getLogger(__name__)

MAX_SESSIONS = 10_000
SESSION_IDLE_S = 1800
LOWER_PRIORITY = 10  # nice value added to the chat threads (calls keep the process's own)


class ChatRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=128)
    text: str = Field(max_length=16_384)  # [security] max_chat_chars is checked after (413)
    customer_token: str | None = Field(default=None, max_length=512)  # signed by the shop's backend
    customer_id: str | None = Field(default=None, max_length=64)  # deprecated: ignored, identifies no one
    # "voice": a front end that speaks the replies (short ones, details on request); chat may say more
    channel: Literal["text", "voice"] = "text"


class CallbackRequest(BaseModel):
    """The widget's "call me back" form, when no human could take the call (or the chat)."""

    phone: str = Field(min_length=5, max_length=32, pattern=r"^\+?[0-9][0-9 ()-]{3,30}$")
    session_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=80)
    note: str | None = Field(default=None, max_length=500)
    language: str | None = Field(default=None, max_length=8)


class RatingRequest(BaseModel):
    """The widget's 1-5 stars after a browser call or a chat."""

    session_id: str = Field(min_length=1, max_length=128)
    stars: int = Field(ge=1, le=5)


class _Sessions:
    """Chat dialog states by session and shopper, least recently used evicted, idle ones expired. The
    shopper is part of the key: a session id posted without the identity it began with (or with
    another) is a conversation of its own, so knowing a session id gives no one another's chat."""

    def __init__(self):
        self._items: OrderedDict[tuple[str, str], tuple[float, DialogState, asyncio.Lock]] = OrderedDict()

    def get(self, session_id: str, customer_id: str | None) -> tuple[DialogState, asyncio.Lock]:
        # Called on the event loop only, so no thread lock is needed.
        now = time.monotonic()
        while self._items and (len(self._items) >= MAX_SESSIONS or now - next(iter(self._items.values()))[0] > SESSION_IDLE_S):
            self._items.popitem(last=False)
        key = (session_id, customer_id or "")
        item = self._items.pop(key, None)
        if item is None:
            # typed into a chat, a phone number is no proof of anything
            item = (now, DialogState(customer_id=customer_id, phone_said_identifies=False), asyncio.Lock())
        _, state, lock = item
        self._items[key] = (now, state, lock)
        return state, lock

    def known(self, session_id: str) -> bool:
        return any(sid == session_id for sid, _ in self._items)


class Busy(Exception):
    """The chat pool's queue is full."""


class ChatPool:
    """`workers` threads at a lower OS priority than the process (a live call's audio and models go
    first), with at most `queue` turns waiting; beyond that `submit` raises Busy."""

    def __init__(self, workers: int = 1, queue: int = 8):
        self.limit = max(1, workers) + max(0, queue)
        self._pending = 0
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chat", initializer=_lower_priority)

    async def submit(self, fn, *args):
        if self._pending >= self.limit:  # on the event loop only: no thread lock needed
            raise Busy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    try:  # Linux: a thread's own nice value (other systems: the pool runs at the usual priority)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWER_PRIORITY)
    except (AttributeError, OSError) as e:
        log.info("chat threads keep the normal priority (%s)", e)


def client_address(request: Request, security: SecurityConfig) -> str:
    """The socket's peer; behind the operator's own proxy (trust_forwarded_for) the address that proxy
    saw, the last of X-Forwarded-For (earlier entries are the client's to write)."""
    if security.trust_forwarded_for:
        forwarded = [x.strip() for x in request.headers.get("x-forwarded-for", "").split(",") if x.strip()]
        if forwarded:
            return forwarded[-1]
    return request.client.host if request.client else "-"


def _invalid(e: ValidationError) -> JSONResponse:
    return JSONResponse({"detail": e.errors(include_url=False, include_context=False, include_input=False)},
                        status_code=422)


def add_public_routes(app: FastAPI, config: Config, store, origin_refused: Callable[[Request], Response | None]) -> None:
    security = config.security
    sessions = _Sessions()
    pool = ChatPool(security.chat_workers, security.chat_queue)
    app.state.chat_pool = pool  # the server's shutdown may call pool.shutdown()
    chat_limit = RateLimiter(security.chat_rate_per_s, security.chat_burst)
    callback_limit = RateLimiter(security.callback_rate_per_s, security.callback_burst)
    rated: OrderedDict[str, None] = OrderedDict()  # sessions rated already (once each)

    def too_fast(limiter: RateLimiter, request: Request) -> Response | None:
        key = client_address(request, security)
        if limiter.allow(key):
            return None
        metrics = getattr(app.state, "metrics", None)
        if metrics is not None:
            metrics.rate_limited(request.url.path)  # the route's own path: a bounded label
        return JSONResponse({"detail": "too many requests"}, status_code=429,
                            headers={"Retry-After": str(limiter.retry_after_s(key))})

    async def chat(request: Request) -> Response:
        # A plain Starlette route rather than FastAPI's dependency machinery: a cached answer costs
        # microseconds, so the framework's per-request work would be most of the bill. The body is
        # still validated by the pydantic model.
        req = await checked_body(request, chat_limit, ChatRequest, page_only=False)
        if isinstance(req, Response):
            return req
        if len(req.text) > security.max_chat_chars:
            return JSONResponse({"detail": f"message too long (at most {security.max_chat_chars} characters)"},
                                status_code=413)
        rt = app.state.runtime
        if rt is None:
            return JSONResponse({"detail": "models are still loading"}, status_code=503)
        customer_id = verify_customer(req.customer_token, security.identity_secret) if req.customer_token else None
        state, lock = sessions.get(req.session_id, customer_id)
        state.channel = req.channel
        async with lock:  # one turn at a time per conversation; other sessions go on
            # A hot question is a dict lookup: answered here on the event loop. Anything else runs the
            # NLU and the tools in the chat pool, below the calls.
            reply = rt.dialog.respond_cached(req.text, state)
            if reply is None:
                try:
                    reply = await app.state.chat_pool.submit(rt.dialog.respond, req.text, state, None, True)
                except Busy:
                    return JSONResponse({"detail": "busy, try again shortly"}, status_code=503,
                                        headers={"Retry-After": "2"})
        u = reply.understanding
        if getattr(app.state, "metrics", None) is not None:
            app.state.metrics.chat_turn(u.emotion)
        out = {"reply": reply.text, "intent": reply.intent, "slots": reply.slots, "emotion": u.emotion,
               "anger": u.anger, "handoff": reply.handoff, "handoff_reason": reply.handoff_reason,
               "confidence": u.confidence, "language": state.language, "dialect": state.languages.dialect,
               "escalation": reply.escalation.to_dict()}
        if reply.handoff and reply.handoff_summary:
            # a random id: the session id stays with the summary, on the operator side
            handoff_id = f"chat-{secrets.token_urlsafe(12)}"
            summary = dict(reply.handoff_summary, call_id=handoff_id, channel="chat", session_id=req.session_id)
            await asyncio.to_thread(store.save_handoff, summary)
            out["handoff_id"] = handoff_id
        return JSONResponse(out)

    app.router.routes.append(Route("/api/chat", chat, methods=["POST"]))

    def browser_call_id(session_id: str | None) -> str | None:
        browser = app.state.browser
        if browser is None or not session_id:
            return None
        call = browser.calls.get(session_id)
        return (call.call_id if call else None) or next(
            (r.call_id for r in browser.records if r.channel.get("session_id") == session_id), None)

    async def checked_body(request: Request, limiter: RateLimiter, model, page_only: bool = True):
        """A public request's body: from an allowed page (`page_only`: the widget's forms), not too
        fast, JSON, small, valid; else the answer to give."""
        refused = (page_only and origin_refused(request)) or too_fast(limiter, request)
        if refused is not None:
            return refused
        body = await read_json_body(request, security.max_body_bytes)
        if isinstance(body, Response):
            return body
        try:
            return model.model_validate_json(body)
        except ValidationError as e:
            return _invalid(e)

    async def callback_request(request: Request) -> Response:
        """The widget's "call me back": a callback ticket for the human team, with the browser call it
        follows (the phone number is stored for the team; logs see it masked)."""
        req = await checked_body(request, callback_limit, CallbackRequest)
        if isinstance(req, Response):
            return req
        rt = app.state.runtime
        if rt is None or rt.shop is None:
            return JSONResponse({"detail": "the shop is not loaded yet"}, status_code=503)
        call_id = browser_call_id(req.session_id)
        phone = re.sub(r"[^0-9+]", "", req.phone)
        detail = "; ".join(x for x in (f"phone {phone}", req.name and f"name {req.name}",
                                       call_id and f"call {call_id}", req.language and f"language {req.language}",
                                       req.note and f"note {req.note}") if x)
        ticket = await asyncio.to_thread(rt.shop.create_ticket, "callback", None, "web callback request", detail)
        log.info("callback %s requested for %s (call %s)", ticket.ticket_id, mask_pii(phone), call_id or "-")
        return JSONResponse({"ticket_id": ticket.ticket_id, "call_id": call_id}, status_code=201)

    app.router.routes.append(Route("/api/callbacks", callback_request, methods=["POST"]))

    async def rating(request: Request) -> Response:
        """`{"session_id", "stars"}` after a browser call (its call is rated) or a chat: once each."""
        req = await checked_body(request, chat_limit, RatingRequest)
        if isinstance(req, Response):
            return req
        call_id = browser_call_id(req.session_id)
        rated_id, channel = (call_id, "webrtc") if call_id else (req.session_id, "chat")
        if call_id is None and not sessions.known(req.session_id):
            return JSONResponse({"detail": "no call or chat to rate"}, status_code=404)
        if rated_id in rated:
            return JSONResponse({"detail": "rated already"}, status_code=409)
        ratings = getattr(app.state, "ratings", None)
        if ratings is not None:
            await asyncio.to_thread(ratings.add, rated_id, req.stars, channel)
        rated[rated_id] = None
        while len(rated) > MAX_SESSIONS:
            rated.popitem(last=False)
        return JSONResponse({"status": "thanks"}, status_code=201)

    app.router.routes.append(Route("/api/ratings", rating, methods=["POST"]))
