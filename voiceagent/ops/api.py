"""The operator surface: `/console`, `/api/ops/...` and `/metrics`. Every route here needs an
operator (a console session or an API token, ops/auth.py); without one it answers 401, and a page
of another site cannot make a logged-in console act (CSRF token on every state change).

Routes and shapes: SPEC.md "Operator side"."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from ..http_bodies import read_capped_body
from ..textnorm import mask_pii
from .live import Busy, NotLive
from .peers import PeerError

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent.parent / "web"
CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
KEEPALIVE_S = 15.0
CONSOLE_FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
# the console runs no inline script and loads nothing from elsewhere: an injected transcript cannot run
CONSOLE_CSP = ("default-src 'self'; media-src 'self' blob:; connect-src 'self'; img-src 'self' data:; "
               "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'")
# set on a supervision request one worker sends on to the worker that holds the call: never sent on again
FORWARDED_BY = "X-Voiceagent-Forwarded-By"
FORWARD_TIMEOUT_S = 30.0  # the owning worker gathers ICE candidates before it answers an offer
SECURITY_HEADERS = {"Content-Security-Policy": CONSOLE_CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


class Offer(BaseModel):
    sdp: str = Field(min_length=10, max_length=65536)
    type: str = Field(pattern="^offer$")


def _detail(status: int, detail: str, **headers) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _mask_live(message: dict) -> dict:
    """Live transcripts masked as the stored records are (phone numbers, addresses...)."""
    if isinstance(message.get("text"), str):
        message = dict(message, text=mask_pii(message["text"]))
    if message.get("type") == "snapshot":
        message = dict(message, events=[_mask_live(e) for e in message.get("events", [])])
    return message


def router(app: FastAPI) -> APIRouter:
    api = APIRouter()
    st = app.state

    async def need(request: Request, role: str = "agent"):
        """The operator behind the request (raises 401/403 as HTTPException). Off the loop when the store
        must be asked: an unknown token or cookie, however many, never stalls the calls' audio."""
        return await st.auth.require_async(request, role)

    def call_id_ok(call_id: str) -> bool:
        return bool(CALL_ID.match(call_id))

    # -- the console page ---------------------------------------------------------------------
    @api.get("/console", include_in_schema=False)
    async def console_page():
        # the page itself holds no data (it asks /api/ops/me and shows its login form on 401)
        return FileResponse(WEB / "console.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @api.get("/console/static/{name}", include_in_schema=False)
    async def console_static(name: str):
        if name not in CONSOLE_FILES:
            return _detail(404, "no such file")
        return FileResponse(WEB / name, media_type=CONSOLE_FILES[name], headers={"Cache-Control": "no-cache",
                                                                              "X-Content-Type-Options": "nosniff"})

    # -- live calls ---------------------------------------------------------------------------
    @api.get("/api/ops/calls")
    async def calls(request: Request, live: int = 0, limit: int = 50, offset: int = 0):
        await need(request)
        if live:
            return st.hub.live_calls()
        q = request.query_params
        try:
            return await asyncio.to_thread(
                st.history.search, from_=q.get("from") or None, to=q.get("to") or None, intent=q.get("intent") or None,
                outcome=q.get("outcome") or None, emotion=q.get("emotion") or None, customer=q.get("customer") or None,
                q=q.get("q") or None, channel=q.get("channel") or None, limit=max(1, min(limit, 200)),
                offset=max(0, offset))
        except ValueError as exc:
            return _detail(422, str(exc))

    @api.get("/api/ops/calls/{call_id}")
    async def call_record(request: Request, call_id: str):
        await need(request)
        if not call_id_ok(call_id):
            return _detail(404, "no such call")
        record = await asyncio.to_thread(st.store.get, call_id)
        if record is None:
            live = st.hub.calls.get(call_id)
            if live is not None:
                return {"call_id": call_id, "live": True, "call": live.summary()}
            remote = st.hub.remote.get(call_id)  # in progress on another worker
            if remote is not None:
                return {"call_id": call_id, "live": True, "call": dict(remote.summary)}
            return _detail(404, f"no call {call_id}")
        record["handoff"] = record.get("handoff") or await asyncio.to_thread(st.store.handoff, call_id)
        record["recording"] = st.recordings is not None and await asyncio.to_thread(st.recordings.exists, call_id)
        record["rating"] = await asyncio.to_thread(st.history.ratings.get, call_id)
        return record

    @api.get("/api/ops/calls/{call_id}/recording")
    async def recording(request: Request, call_id: str):
        await need(request)
        if st.recordings is None or not call_id_ok(call_id):
            return _detail(404, "no recording")
        try:
            chunks = await asyncio.to_thread(st.recordings.wav_chunks, call_id)
            first = await asyncio.to_thread(next, chunks, b"")
        except (FileNotFoundError, ValueError):
            return _detail(404, f"no recording of call {call_id}")

        async def stream():  # decoded 10 s at a time, off the event loop
            yield first
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    return
                yield chunk

        return StreamingResponse(stream(), media_type="audio/wav", headers={
            "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{call_id}.wav"'})

    @api.delete("/api/ops/calls/{call_id}/recording")
    async def delete_recording(request: Request, call_id: str):
        operator = await need(request, "admin")
        if st.recordings is None or not call_id_ok(call_id):
            return _detail(404, "no recording")
        deleted = await asyncio.to_thread(st.recordings.delete, call_id)
        log.info("recording of call %s deleted by %s", call_id, operator.name)
        return {"deleted": bool(deleted)}

    async def sse(request: Request, queue: asyncio.Queue, cleanup) -> StreamingResponse:
        async def stream():
            loop = asyncio.get_running_loop()
            checked = loop.time()
            try:
                yield ": connected\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        message = ""
                    if loop.time() - checked >= KEEPALIVE_S:
                        # a console open for hours, however busy: its session may have expired, been
                        # logged out or revoked meanwhile, and then it hears nothing more
                        checked = loop.time()
                        if await request.is_disconnected() or await st.auth.authenticate_async(request) is None:
                            return
                    if message is None:
                        return
                    yield ": keep-alive\n\n" if message == "" else \
                        f"data: {json.dumps(_mask_live(message), ensure_ascii=False)}\n\n"
            finally:
                cleanup()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @api.get("/api/ops/calls/{call_id}/events")
    async def call_events(request: Request, call_id: str):
        await need(request)
        try:
            queue = st.hub.subscribe(call_id)
        except NotLive:
            return _detail(404, f"call {call_id} is not in progress")
        return await sse(request, queue, lambda: st.hub.unsubscribe(queue, call_id))

    @api.get("/api/ops/events")
    async def events(request: Request):
        await need(request)
        queue = st.hub.subscribe()
        return await sse(request, queue, lambda: st.hub.unsubscribe(queue))

    # -- supervision --------------------------------------------------------------------------
    async def _offer(request: Request) -> Offer | JSONResponse:
        body = await read_capped_body(request, 70_000, "offer")
        if isinstance(body, Response):
            return body
        try:
            return Offer.model_validate_json(body)
        except ValueError:
            return _detail(422, 'expected {"sdp": "...", "type": "offer"}')

    async def forward(request: Request, call_id: str, action: str, body: bytes) -> Response | None:
        """The call lives on another worker (many behind Kamailio): the request goes to that worker, with the
        operator's own credentials (sessions and tokens are rows in the shared store), and its answer comes
        back as it is (the SDP answer: the media then flows between the browser and that worker). None:
        the call is not another worker's (this one answers, 404 if it has no such call)."""
        cluster = getattr(st, "cluster", None)
        owner = st.hub.owner(call_id)
        if (request.headers.get(FORWARDED_BY) or cluster is None or owner is None or owner == st.hub.worker
                or not call_id_ok(call_id)):  # (the id goes into the URL)
            return None
        url = await asyncio.to_thread(cluster.http_url_of, owner)
        if not url:
            return _detail(503, f"call {call_id} is on worker {owner}, which cannot be reached now", **{"Retry-After": "2"})
        headers = {FORWARDED_BY: st.hub.worker}
        for name in ("authorization", "cookie", "x-csrf-token", "content-type"):
            if request.headers.get(name):
                headers[name] = request.headers[name]
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, follow_redirects=False) as client:
                answer = await client.post(f"{url}/api/ops/calls/{call_id}/{action}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("call %s: %s not sent on to worker %s (%s): %s", call_id, action, owner, url,
                        type(exc).__name__)
            return _detail(502, f"worker {owner}, which holds call {call_id}, did not answer")
        log.info("call %s: %s sent on to worker %s: %d", call_id, action, owner, answer.status_code)
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type", "application/json"))

    async def supervise(request: Request, call_id: str, role: str, act, action: str) -> dict | Response:
        """Listen-in or takeover: the operator's offer answered by the hub (`act(sdp, operator)`), or by the
        worker that holds the call."""
        operator = await need(request, role)
        if st.hub.owner(call_id) not in (None, st.hub.worker):
            body = await read_capped_body(request, 70_000, "offer")
            if isinstance(body, Response):
                return body
            forwarded = await forward(request, call_id, action, body)
            if forwarded is not None:
                return forwarded
            return _detail(404, f"call {call_id} is not in progress")
        offer = await _offer(request)
        if isinstance(offer, JSONResponse):
            return offer
        try:
            return await act(offer.sdp, operator.name)
        except NotLive:
            return _detail(404, f"call {call_id} is not in progress")
        except Busy as exc:
            return _detail(409, str(exc))
        except PeerError as exc:
            return _detail(400, str(exc))

    @api.post("/api/ops/calls/{call_id}/listen")
    async def listen(request: Request, call_id: str):
        async def act(sdp: str, operator: str) -> dict:
            listener_id, answer = await st.hub.listen(call_id, sdp, operator)
            return {"sdp": answer, "type": "answer", "listener_id": listener_id}
        return await supervise(request, call_id, "agent", act, "listen")

    @api.post("/api/ops/calls/{call_id}/takeover")
    async def takeover(request: Request, call_id: str):
        async def act(sdp: str, operator: str) -> dict:
            return {"sdp": await st.hub.take_over(call_id, sdp, operator), "type": "answer"}
        return await supervise(request, call_id, "supervisor", act, "takeover")

    @api.post("/api/ops/calls/{call_id}/release")
    async def release(request: Request, call_id: str):
        operator = await need(request, "supervisor")
        if st.hub.owner(call_id) not in (None, st.hub.worker):
            body = await read_capped_body(request, 4096, "body")
            if isinstance(body, Response):
                return body
            forwarded = await forward(request, call_id, "release", body)
            if forwarded is not None:
                return forwarded
        try:
            await st.hub.release(call_id, operator.name)
        except NotLive as exc:
            return _detail(404, str(exc) if "taken over" in str(exc) else f"call {call_id} is not in progress")
        return {"status": "released"}

    @api.get("/api/ops/workers")
    async def workers(request: Request):
        """The workers sharing this store (their heartbeats): up or down, calls in progress, capacity."""
        await need(request)
        cluster = getattr(st, "cluster", None)
        return await asyncio.to_thread(cluster.workers) if cluster is not None else []

    # -- alerts, dashboard, handoffs ----------------------------------------------------------
    @api.get("/api/ops/alerts")
    async def alerts(request: Request):
        await need(request)
        return await asyncio.to_thread(st.alerts.open_alerts) if st.alerts is not None else []

    @api.post("/api/ops/alerts/{alert_id}/ack")
    async def ack(request: Request, alert_id: str):
        operator = await need(request, "supervisor")
        if st.alerts is None or not await asyncio.to_thread(st.alerts.ack, alert_id, operator.name):
            return _detail(404, f"no open alert {alert_id}")
        return {"status": "acknowledged", "by": operator.name}

    @api.get("/api/ops/dashboard")
    async def dashboard(request: Request, hours: int = 24):
        await need(request)
        return await asyncio.to_thread(st.history.dashboard, max(1, min(hours, 24 * 90)))

    @api.get("/api/ops/handoffs")
    async def handoffs(request: Request, limit: int = 20):
        await need(request)
        return await asyncio.to_thread(st.store.recent_handoffs, max(1, min(limit, 200)))

    @api.get("/api/ops/handoffs/{call_id}")
    async def handoff(request: Request, call_id: str):
        await need(request)
        found = await asyncio.to_thread(st.store.handoff, call_id) if call_id_ok(call_id) else None
        if found is None:
            return _detail(404, f"no handoff for call {call_id}")
        return found

    @api.get("/api/ops/status")
    async def status(request: Request):
        """The transports: SIP, Asterisk (AudioSocket, AMI), browser lines."""
        await need(request)
        return {"asterisk": st.pbx.status() if st.pbx is not None else {"enabled": False},
                "webrtc": st.browser.status() if st.browser is not None else {"enabled": False},
                "live_calls": len(st.hub.calls)}

    @api.get("/api/ops/openapi.json", include_in_schema=False)
    async def openapi(request: Request):
        await need(request)
        return app.openapi()

    @api.get("/metrics", include_in_schema=False)
    async def metrics(request: Request):
        await need(request)
        body, content_type = st.metrics.render()
        return Response(body, media_type=content_type)

    # -- the old, open paths: an operator is sent on once; anyone else gets 401 ---------------
    def moved(new_path):
        async def handler(request: Request):
            await need(request)
            path = new_path(request.path_params)
            if request.url.query:
                path += "?" + request.url.query
            return RedirectResponse(path, status_code=307)
        return handler

    for old, new in (("/api/handoffs", lambda p: "/api/ops/handoffs"),
                     ("/api/handoffs/{call_id}", lambda p: f"/api/ops/handoffs/{p['call_id']}"),
                     ("/api/calls/{call_id}", lambda p: f"/api/ops/calls/{p['call_id']}"),
                     ("/api/asterisk", lambda p: "/api/ops/status"),
                     ("/api/webrtc", lambda p: "/api/ops/status")):
        api.add_api_route(old, moved(new), methods=["GET"], include_in_schema=False)
    return api
