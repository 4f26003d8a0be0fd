"""The operator console page (voiceagent/web/console.*) in headless Chromium, against a fake of the
operator API (a small Starlette app in this file: login with a session cookie and a csrf token, the
live-call list, the two event streams, alerts, history, dashboard, campaigns).

What is asserted is what an operator sees and what the page sends: the login and the csrf header on
every POST, a call announced on the event stream appearing in the list, a transcript carrying
markup shown as text with nothing run, alerts by level and their acknowledgement, the zh/en switch,
the WebRTC offers of listen-in (receive only) and takeover (both ways; 409 said in words) and, with
an aiortc peer answering, both legs connecting and being let go, a 401 sending the page back to the
login form, a dropped event stream coming back, the transcript capped. The end-to-end test with real
calls is tests/console_call.py.

No network namespace is needed (HTTP on 127.0.0.1 only): Chromium and playwright are.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.peers import chromium, need
from tests.peers.ports import free_port

WEB = Path(__file__).resolve().parent.parent / "voiceagent" / "web"
CSP = ("default-src 'self'; media-src 'self' blob:; connect-src 'self'; img-src 'self' data:; "
       "style-src 'self'")
XSS_SCRIPT = "<script>window.pwned=1</script>"
XSS_IMG = "<img src=x onerror=\"window.pwned=2\">"

pytestmark = need(chromium.executable() is not None and chromium.has_playwright(),
                  "chromium and playwright")


# ---- the fake operator API ---------------------------------------------------------------------
@dataclass
class Fake:
    """What the fake server answers, and what it was sent. The test thread appends to the feeds;
    the streams pick new items up within ~50 ms."""
    csp: bool = True
    session: str | None = None
    csrf: str = "csrf-7f3a9c"
    role: str = "supervisor"
    live: list = field(default_factory=list)
    alerts: list = field(default_factory=list)
    ops_feed: list = field(default_factory=list)
    call_feeds: dict = field(default_factory=lambda: defaultdict(list))
    posts: list = field(default_factory=list)     # (path, csrf header, json body)
    gets: list = field(default_factory=list)      # path?query
    stop: threading.Event = field(default_factory=threading.Event)
    media: bool = False            # listen / takeover answered by a real (aiortc) peer; else refused
    peers: list = field(default_factory=list)
    drop_ops: threading.Event = field(default_factory=threading.Event)  # set: the ops stream ends once

    def posted(self, path: str) -> list:
        return [p for p in self.posts if p[0] == path]


HISTORY = [{"call_id": f"h{i}", "started_at": "2025-01-02T10:00:00Z", "channel": "sip", "language": "zh",
            "customer_id": "C1001", "duration_s": 75.0, "intent": "order.status",
            "outcome": "handoff" if i == 0 else "resolved", "emotion": "angry" if i == 0 else "neutral",
            "peak_anger": 0.8, "handoff_reason": "angry" if i == 0 else None, "rating": 4, "recording": True}
           for i in range(50)]
RECORD = {"call_id": "h0", "language": "zh", "recording": True, "rating": 2,
          "turns": [{"role": "caller", "text": "我的订单怎么还没到 " + XSS_IMG, "intent": "order.status", "emotion": "angry"},
                    {"role": "agent", "text": "您的订单已发货。"}],
          "handoff": {"reason": "angry", "detail": "caller angry twice", "target": "queue",
                      "caller": {"name": "张<b>三</b>", "customer_id": "C1001"}, "intents": ["order.status"],
                      "emotion": {"now": "angry", "peak_anger": 0.8}}}
DASHBOARD = {"calls": 42, "resolved_rate": 0.7, "handoff_rate": 0.2, "handoff_reasons": {"angry": 5, "caller_request": 3},
             "aht_s": 95.0, "anger_rate": 0.1, "satisfaction": {"avg": 4.2, "n": 12}, "campaign_conversion": 0.15,
             "series": [{"t": f"2025-01-02T{h:02d}:00:00Z", "calls": h % 5, "handoffs": h % 2, "angry": h % 3 == 0}
                        for h in range(24)]}
CAMPAIGNS = [{"name": "winter<b>sale&amp;", "state": "running", "created_at": 1.0, "updated_at": 2.0, "contacts": 10,
              "attempts": 6, "outcomes": {"pending": 4, "converted": 2, "declined": 4}}]
CAMPAIGN_REPORT = {"name": "winter<b>sale&amp;", "state": "running", "contacts": 10, "attempts": 6,
                   "outcomes": {"pending": 4, "converted": 2, "declined": 4},
                   "scripts": {"A": {"contacts": 5, "answered": 4, "converted": 2, "conversion_rate": 0.5, "ci95": [0.15, 0.85]},
                               "B": {"contacts": 5, "answered": 2, "converted": 0, "conversion_rate": 0.0, "ci95": [0.0, 0.5]}},
                   "experiment": {"best": "A", "comparison": [{"verdict": "A better than B? not yet sure"}]},
                   "contacts_detail": []}


def make_app(fake: Fake):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def authed(request: Request) -> bool:
        return fake.session is not None and request.cookies.get("va_session") == fake.session

    def refuse(request: Request) -> Response | None:
        if not authed(request):
            return JSONResponse({"detail": "operator login required"}, status_code=401)
        if request.method == "POST" and request.headers.get("x-csrf-token") != fake.csrf:
            return JSONResponse({"detail": "csrf token missing or wrong"}, status_code=403)
        return None

    async def note_post(request: Request) -> None:
        try:
            body = await request.json()
        except ValueError:
            body = None
        fake.posts.append((request.url.path, request.headers.get("x-csrf-token"), body))

    async def page(request: Request):
        headers = {"Content-Security-Policy": CSP} if fake.csp else {}
        return FileResponse(WEB / "console.html", media_type="text/html", headers=headers)

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in ("console.js", "console.css"):
            return Response(status_code=404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(WEB / name, media_type=kind)

    async def login(request: Request):
        await note_post(request)
        body = fake.posts[-1][2] or {}
        if body.get("name") != "sup" or body.get("password") != "pw":
            return JSONResponse({"detail": "wrong name or password"}, status_code=401)
        fake.session = "s-" + str(time.monotonic_ns())
        out = JSONResponse({"name": "sup", "role": fake.role, "csrf": fake.csrf})
        out.set_cookie("va_session", fake.session, httponly=True, samesite="strict", path="/")
        return out

    async def logout(request: Request):
        await note_post(request)
        if (refused := refuse(request)) is not None:
            return refused
        fake.session = None
        return JSONResponse({"status": "logged out"})

    async def me(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse({"name": "sup", "role": fake.role, "csrf": fake.csrf})

    async def calls(request: Request):
        fake.gets.append(str(request.url.path) + "?" + request.url.query)
        if (refused := refuse(request)) is not None:
            return refused
        if request.query_params.get("live") == "1":
            return JSONResponse(fake.live)
        offset = int(request.query_params.get("offset", 0))
        return JSONResponse({"total": 120, "calls": HISTORY if offset == 0 else HISTORY[:20]})

    async def call(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse(RECORD)

    def sse(request: Request, feed: list, drop: threading.Event | None = None) -> StreamingResponse:
        async def stream():
            yield "retry: 300\n\n"  # reconnect soon after a drop (the browser's default is ~3 s)
            sent = 0
            while not fake.stop.is_set():
                if drop is not None and drop.is_set():
                    drop.clear()
                    return
                while sent < len(feed):
                    yield "data: " + json.dumps(feed[sent], ensure_ascii=False) + "\n\n"
                    sent += 1
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def ops_events(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return sse(request, fake.ops_feed, fake.drop_ops)

    async def call_events(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return sse(request, fake.call_feeds[request.path_params["call_id"]])

    async def alerts(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse(fake.alerts)

    async def ack(request: Request):
        await note_post(request)
        if (refused := refuse(request)) is not None:
            return refused
        fake.alerts = [a for a in fake.alerts if str(a["id"]) != request.path_params["alert_id"]]
        return JSONResponse({"status": "acked"})

    async def answer(offer: dict) -> dict:
        """An aiortc peer sends a (silent) audio track back, as the real mixer would."""
        from aiortc import RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import AudioStreamTrack

        pc = RTCPeerConnection()
        fake.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def listen(request: Request):
        await note_post(request)
        if (refused := refuse(request)) is not None:
            return refused
        if not fake.media:
            return JSONResponse({"detail": "no media in this fake"}, status_code=503)
        return JSONResponse({**await answer(fake.posts[-1][2]), "listener_id": "l1"})

    async def takeover(request: Request):
        await note_post(request)
        if (refused := refuse(request)) is not None:
            return refused
        if not fake.media:
            return JSONResponse({"detail": "held by another supervisor"}, status_code=409)
        return JSONResponse(await answer(fake.posts[-1][2]))

    async def release(request: Request):
        await note_post(request)
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse({"status": "released"})

    async def dashboard(request: Request):
        fake.gets.append(str(request.url.path) + "?" + request.url.query)
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse(DASHBOARD)

    async def campaigns(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse(CAMPAIGNS)

    async def campaign(request: Request):
        if (refused := refuse(request)) is not None:
            return refused
        return JSONResponse(CAMPAIGN_REPORT)

    return Starlette(routes=[
        Route("/console", page),
        Route("/console/static/{name}", static),
        Route("/api/ops/login", login, methods=["POST"]),
        Route("/api/ops/logout", logout, methods=["POST"]),
        Route("/api/ops/me", me),
        Route("/api/ops/calls", calls),
        Route("/api/ops/events", ops_events),
        Route("/api/ops/alerts", alerts),
        Route("/api/ops/alerts/{alert_id}/ack", ack, methods=["POST"]),
        Route("/api/ops/dashboard", dashboard),
        Route("/api/ops/campaigns", campaigns),
        Route("/api/ops/campaigns/{name}", campaign),
        Route("/api/ops/calls/{call_id}", call),
        Route("/api/ops/calls/{call_id}/events", call_events),
        Route("/api/ops/calls/{call_id}/listen", listen, methods=["POST"]),
        Route("/api/ops/calls/{call_id}/takeover", takeover, methods=["POST"]),
        Route("/api/ops/calls/{call_id}/release", release, methods=["POST"]),
    ])


@pytest.fixture(scope="module")
def server():
    """The fake API on a free port, in a thread; yields (base url, holder) where holder["fake"] is
    replaced by each test."""
    import uvicorn

    holder = {"fake": Fake()}

    class Switch:  # every request goes to the current test's app
        async def __call__(self, scope, receive, send):
            holder["loop"] = asyncio.get_running_loop()
            await holder["app"](scope, receive, send)

    holder["app"] = make_app(holder["fake"])
    port = free_port("tcp")
    srv = uvicorn.Server(uvicorn.Config(Switch(), host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the fake API did not start"
    yield f"http://127.0.0.1:{port}", holder
    holder["fake"].stop.set()
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = chromium.launch(p)  # fake media devices, the permission prompt accepted
        yield b
        b.close()


@pytest.fixture
def console(server, browser):
    """A fresh fake and a fresh browser context. Returns open_page(locale="en-US", csp=True, role=...)
    -> (page, fake)."""
    base, holder = server
    contexts = []

    def open_page(locale: str = "en-US", csp: bool = True, role: str = "supervisor"):
        holder["fake"].stop.set()  # the previous page's streams end
        fake = Fake(csp=csp, role=role)
        holder["fake"], holder["app"] = fake, make_app(fake)
        ctx = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
        contexts.append(ctx)
        ctx.add_init_script("""
          window.__csp = [];
          document.addEventListener("securitypolicyviolation",
            (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
        """)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        page.goto(base + "/console")
        return page, fake

    yield open_page
    for ctx in contexts:
        ctx.close()
    close_peers(holder)


def close_peers(holder) -> None:
    """The aiortc peers live on the server's loop: closed there."""
    peers, loop = holder["fake"].peers, holder.get("loop")
    if peers and loop is not None:
        for pc in peers:
            asyncio.run_coroutine_threadsafe(pc.close(), loop).result(timeout=10)
        peers.clear()


def wait_until(page, expression: str, timeout_s: float = 15.0) -> None:
    """Poll a JS expression from here: playwright's wait_for_function eval()s an expression string
    in the page, which the console's CSP (no 'unsafe-eval') forbids (a "() => ..." string works)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        time.sleep(0.05)


def log_in(page, name: str = "sup", password: str = "pw") -> None:
    page.wait_for_selector("#login-form", state="visible")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")


def live_call(call_id: str = "c1", **extra) -> dict:
    call = {"call_id": call_id, "channel": "sip", "started_at": time.time() - 42, "language": "zh",
            "state": "listening", "emotion": "neutral", "intent": None, "customer_id": "C1001", "supervisor": None}
    call.update(extra)
    return call


# ---- the page itself -----------------------------------------------------------------------------
class _Inline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {k.lower(): v for k, v in attrs}
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for k in names:
            if k.startswith("on") or k == "style":
                self.problems.append(f"{tag} {k}=")
        for k in ("src", "href"):
            if names.get(k) and re.match(r"(https?:)?//", names[k]):
                self.problems.append(f"external {k}: {names[k]}")  # no CDN


def test_page_works_under_a_strict_csp_and_writes_no_markup():
    """No inline script, handler or style in the HTML (the CSP would block them), nothing fetched
    from elsewhere, and the script never turns strings into markup."""
    parser = _Inline()
    parser.feed((WEB / "console.html").read_text(encoding="utf-8"))
    assert parser.problems == []
    js = (WEB / "console.js").read_text(encoding="utf-8")
    for pattern in (r"\.innerHTML\s*=", r"\.outerHTML\s*=", r"insertAdjacentHTML\s*\(", r"document\.write",
                    r"\beval\s*\(", r"new Function\s*\(", r"https?://(?!www\.w3\.org/2000/svg)"):
        assert not re.search(pattern, js), pattern
    css = (WEB / "console.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css  # no webfonts, nothing fetched


# ---- in the browser ------------------------------------------------------------------------------
def test_login_sends_csrf_on_every_post_and_logout_returns_to_the_form(console):
    page, fake = console(locale="en-US")
    fake.alerts = [{"id": "a1", "level": 2, "kind": "anger_rising", "call_id": "c9", "message": "caller getting angry",
                    "at": "2025-01-02T10:00:00Z"}]
    page.wait_for_selector("#login-view", state="visible")
    assert page.is_hidden("#app")

    log_in(page, password="wrong")
    wait_until(page, "document.getElementById('login-error').textContent.length > 0")
    assert page.text_content("#login-error") == "Wrong name or password"
    assert page.is_hidden("#app")

    log_in(page)
    page.wait_for_selector("#app", state="visible")
    assert page.text_content("#operator-name") == "sup"
    assert page.text_content("#operator-role") == "supervisor"
    assert page.evaluate("window.consoleState.operator") == {"name": "sup", "role": "supervisor"}
    # the session cookie is HttpOnly: the page never sees it; the csrf token is not in the cookie jar either
    assert "va_session" not in page.evaluate("document.cookie")

    page.click("#alerts-list li[data-alert-id='a1'] button.ack")
    wait_until(page, "window.consoleState.alerts.length === 0")
    acks = fake.posted("/api/ops/alerts/a1/ack")
    assert len(acks) == 1 and acks[0][1] == fake.csrf

    page.click("#logout")
    page.wait_for_selector("#login-view", state="visible")
    assert page.is_hidden("#app")
    logouts = fake.posted("/api/ops/logout")
    assert len(logouts) == 1 and logouts[0][1] == fake.csrf
    assert page.evaluate("window.consoleState.operator") is None
    assert page.evaluate("window.__csp") == [] and page.errors == []


def test_a_live_call_appears_and_its_transcript_is_shown_as_text(console):
    """Served WITHOUT the CSP, so markup written as HTML would run: the page itself must keep it text."""
    page, fake = console(locale="en-US", csp=False)
    log_in(page)
    page.wait_for_selector("#app", state="visible")
    wait_until(page, "window.consoleState.sse === 'up'")
    assert page.evaluate("window.consoleState.calls") == []

    fake.ops_feed.append({"type": "call_started", "call": live_call("c1", emotion="angry", intent="order.status")})
    row = page.wait_for_selector("#live-calls-body tr[data-call-id='c1']")
    cells = [c.text_content() for c in row.query_selector_all("td")]
    assert cells[0] == "sip" and cells[2] == "zh" and cells[3] == "listening" and cells[5] == "order.status"
    assert re.fullmatch(r"\d+s|\d+m( \d+s)?", cells[1]) and cells[1] != "0s", cells  # time since the start
    assert "emo-angry" in row.query_selector_all("td")[4].get_attribute("class")
    assert [c["call_id"] for c in page.evaluate("window.consoleState.calls")] == ["c1"]

    feed = fake.call_feeds["c1"]
    # the shape ops/live.py sends: the call and its latest events
    feed.append({"type": "snapshot", "call": live_call("c1"),
                 "events": [{"type": "caller", "text": XSS_SCRIPT, "intent": "other", "emotion": "neutral",
                             "anger": 0.1, "at": time.time()},
                            {"type": "alert", "alert": {"id": 99, "level": 1, "kind": "old", "message": "acked long ago",
                                                        "at": "2025-01-02T10:00:00Z"}}]})
    row.click()
    page.wait_for_selector("#call-panel", state="visible")
    assert page.evaluate("window.consoleState.openCallId") == "c1"
    feed.append({"type": "caller", "text": "where is it " + XSS_IMG, "intent": "order.status", "emotion": "angry",
                 "anger": 0.82, "at_s": 3.1})
    feed.append({"type": "agent", "text": "<b>bold</b> & " + XSS_IMG, "at_s": 4.0, "interrupted": False})
    feed.append({"type": "partial", "text": "and <i>also</i>"})
    feed.append({"type": "state", "state": "speaking"})
    wait_until(page, "document.querySelectorAll('#transcript .bubble.partial').length === 1")

    texts = page.eval_on_selector_all("#transcript .bubble:not(.partial) .text", "ns => ns.map(n => n.textContent)")
    assert texts == [XSS_SCRIPT, "where is it " + XSS_IMG, "<b>bold</b> & " + XSS_IMG]
    assert page.text_content("#transcript .bubble.partial") == "and <i>also</i>"
    page.wait_for_timeout(300)  # an <img onerror> would have fired by now
    assert page.evaluate("window.pwned") is None
    assert page.eval_on_selector_all("#transcript img, #transcript script, #transcript b, #transcript i",
                                     "ns => ns.length") == 0
    chips = page.eval_on_selector_all("#transcript .bubble.caller:not(.partial)",
                                      "bs => bs.map(b => [...b.querySelectorAll('.chip')].map(c => c.className + ':' + c.textContent))")
    assert chips[1] == ["chip intent:order.status", "chip emo-angry:angry 0.82"]
    assert page.text_content("#call-state") == "speaking"
    assert page.evaluate("window.consoleState.alerts.length") == 0  # the snapshot replays no alert
    assert page.evaluate("window.consoleState.lastEvent.type") == "state"

    # a supervisor elsewhere takes it; then it ends: the list drops it, the panel says so
    fake.ops_feed.append({"type": "call_updated", "call": {"call_id": "c1", "state": "supervised", "supervisor": "boss"}})
    wait_until(page, "document.querySelector(\"#live-calls-body tr[data-call-id='c1'] td:last-child\").textContent === 'boss'")
    feed.append({"type": "ended", "outcome": "handoff"})
    wait_until(page, "window.consoleState.openCall && window.consoleState.openCall.ended === true")
    assert page.is_hidden("#listen-btn") and page.is_hidden("#takeover-btn")
    fake.ops_feed.append({"type": "call_ended", "call_id": "c1"})
    wait_until(page, "window.consoleState.calls.length === 0")
    assert page.is_visible("#live-empty")
    assert page.errors == []


def test_the_event_stream_reconnects_and_the_transcript_stays_bounded(console):
    """A console left open for hours: a dropped stream comes back and the list is fetched again
    (calls that started meanwhile appear); a long call keeps at most 500 bubbles."""
    page, fake = console(locale="en-US")
    log_in(page)
    wait_until(page, "window.consoleState.sse === 'up'")
    fake.live = [live_call("c5")]  # started while the stream was down: never announced on it
    fake.drop_ops.set()
    page.wait_for_selector("#live-calls-body tr[data-call-id='c5']")
    assert sum(g.endswith("live=1") for g in fake.gets) == 2

    feed = fake.call_feeds["c5"]
    feed.append({"type": "snapshot", "call": live_call("c5"), "events": []})
    page.click("#live-calls-body tr[data-call-id='c5']")
    for i in range(650):
        feed.append({"type": "caller" if i % 2 else "agent", "text": f"turn {i}", "intent": "other",
                     "emotion": "neutral", "anger": 0.0, "at_s": i})
    wait_until(page, "window.consoleState.lastEvent && window.consoleState.lastEvent.text === 'turn 649'")
    assert page.eval_on_selector("#transcript", "t => t.childElementCount") == 500
    assert page.text_content("#transcript .bubble:last-child .text") == "turn 649"
    assert len(page.evaluate("window.consoleState.transcript")) == 500
    assert page.errors == []


def test_alerts_are_shown_by_level_and_acknowledged(console):
    page, fake = console(locale="zh-CN")
    fake.alerts = [{"id": 1, "level": 1, "kind": "handoff_rate", "message": "转人工率 30%", "at": "2025-01-02T10:00:00Z"},
                   {"id": 2, "level": 4, "kind": "threat", "call_id": "c7", "message": "客户说要找媒体曝光",
                    "at": "2025-01-02T10:01:00Z"}]
    log_in(page)
    page.wait_for_selector("#alerts-list li[data-alert-id='2']")
    wait_until(page, "window.consoleState.sse === 'up'")
    fake.ops_feed.append({"type": "alert", "alert": {"id": 3, "level": 3, "kind": "anger_rising", "call_id": "c8",
                                                     "message": "<img src=x onerror=\"window.pwned=3\">",
                                                     "at": "2025-01-02T10:02:00Z"}})
    page.wait_for_selector("#alerts-list li[data-alert-id='3']")
    levels = page.eval_on_selector_all(
        "#alerts-list li", "ls => ls.map(l => [l.dataset.alertId, l.className, l.querySelector('.lvl').textContent])")
    assert levels == [["2", "alert level-4", "重大危机"], ["3", "alert level-3", "危机"], ["1", "alert level-1", "关注"]]
    assert page.text_content("#alerts-list li[data-alert-id='3'] .msg") == "<img src=x onerror=\"window.pwned=3\">"
    flashing = page.eval_on_selector("#alerts-list li[data-alert-id='2']", "l => getComputedStyle(l).animationName")
    assert flashing == "flash"
    colours = page.eval_on_selector_all("#alerts-list li", "ls => ls.map(l => getComputedStyle(l).backgroundColor)")
    assert len(set(colours)) == 3

    page.click("#alerts-list li[data-alert-id='3'] button.ack")
    wait_until(page, "window.consoleState.alerts.length === 2")
    acks = fake.posted("/api/ops/alerts/3/ack")
    assert len(acks) == 1 and acks[0][1] == fake.csrf
    # acknowledged by someone else: the stream says so and it goes
    fake.ops_feed.append({"type": "alert", "alert": {"id": 1, "level": 1, "kind": "handoff_rate", "message": "x",
                                                     "at": "2025-01-02T10:00:00Z", "acked_by": "boss"}})
    wait_until(page, "window.consoleState.alerts.length === 1")
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("window.__csp") == [] and page.errors == []


def test_an_agent_sees_no_takeover_or_ack(console):
    page, fake = console(locale="en-US", role="agent")
    fake.live = [live_call("c2")]
    fake.alerts = [{"id": 5, "level": 2, "kind": "asr_failures", "message": "ASR failing", "at": "2025-01-02T10:00:00Z"}]
    log_in(page)
    page.click("#live-calls-body tr[data-call-id='c2']")
    page.wait_for_selector("#listen-btn", state="visible")
    assert page.is_hidden("#takeover-btn")
    assert page.query_selector("#alerts-list li[data-alert-id='5'] button") is None


def test_language_switch_changes_every_label(console):
    page, fake = console(locale="zh-CN")
    page.wait_for_selector("#login-view", state="visible")
    assert page.text_content("#login-submit") == "登录"
    log_in(page)
    fake.live = []
    page.wait_for_selector("#app", state="visible")
    assert page.text_content("#listen-btn") == "监听"
    assert page.text_content("#takeover-btn") == "接管"
    assert page.text_content("#release-btn") == "交还"
    assert page.text_content("#tabs button[data-tab='live']") == "实时通话"
    assert page.evaluate("document.documentElement.lang") == "zh"

    page.click("#lang-toggle")
    assert page.text_content("#listen-btn") == "Listen"
    assert page.text_content("#takeover-btn") == "Take over"
    assert page.text_content("#release-btn") == "Release"
    assert page.text_content("#tabs button[data-tab='live']") == "Live calls"
    assert page.text_content("#logout") == "Log out"
    assert page.evaluate("window.consoleState.lang") == "en"
    # the choice is remembered on this browser
    page.reload()
    page.wait_for_selector("#app", state="visible")
    assert page.text_content("#listen-btn") == "Listen"

    page2, _ = console(locale="en-US")
    page2.wait_for_selector("#login-view", state="visible")
    assert page2.text_content("#login-submit") == "Log in"


def test_listen_sends_a_receive_only_offer_and_takeover_says_who_holds_the_call(console):
    page, fake = console(locale="en-US")
    fake.live = [live_call("c3")]
    log_in(page)
    page.click("#live-calls-body tr[data-call-id='c3']")
    page.wait_for_selector("#listen-btn", state="visible")

    page.click("#listen-btn")
    wait_until(page, "document.getElementById('call-error').textContent.length > 0")
    (path, token, body), = fake.posted("/api/ops/calls/c3/listen")
    assert token == fake.csrf and body["type"] == "offer"
    audio = body["sdp"].split("m=audio", 1)[1]
    assert "a=recvonly" in audio and "m=video" not in body["sdp"]
    assert "a=candidate" in body["sdp"]  # gathered before sending: no trickle
    assert page.evaluate("window.consoleState.listening") is False
    assert "no media in this fake" in page.text_content("#call-error")

    page.click("#takeover-btn")
    wait_until(page, "document.getElementById('call-error').textContent === 'Another supervisor holds this call'")
    (path, token, body), = fake.posted("/api/ops/calls/c3/takeover")
    assert token == fake.csrf and body["type"] == "offer"
    assert "a=sendrecv" in body["sdp"].split("m=audio", 1)[1]
    assert page.evaluate("window.consoleState.takenOver") is False
    assert page.is_hidden("#takeover-banner") and page.is_hidden("#release-btn")
    assert page.is_visible("#takeover-btn")

    # with a peer that answers: the page connects, plays what it hears, and lets go
    fake.media = True
    page.click("#listen-btn")
    wait_until(page, "window.consoleState.listenConnection === 'connected'")
    assert page.evaluate("window.consoleState.listenerId") == "l1"
    wait_until(page, "!!document.getElementById('call-audio').srcObject")
    assert page.is_visible("#stop-listen-btn") and page.is_hidden("#listen-btn")
    page.click("#stop-listen-btn")
    state = page.evaluate("window.consoleState")  # the whole state serialises
    assert state["listening"] is False and state["listenConnection"] is None

    page.click("#takeover-btn")
    wait_until(page, "window.consoleState.takenOver === true")
    assert page.text_content("#takeover-banner").startswith("You are speaking with the caller")
    assert page.is_visible("#release-btn") and page.is_hidden("#takeover-btn") and page.is_hidden("#listen-btn")
    wait_until(page, "window.consoleState.takeoverConnection === 'connected'")
    page.click("#release-btn")
    wait_until(page, "window.consoleState.takenOver === false")
    releases = fake.posted("/api/ops/calls/c3/release")
    assert len(releases) == 1 and releases[0][1] == fake.csrf
    assert page.is_hidden("#takeover-banner") and page.evaluate("window.consoleState.takeoverConnection") is None
    assert page.errors == []


def test_a_401_anywhere_returns_to_the_login_form(console):
    page, fake = console(locale="en-US")
    log_in(page)
    page.wait_for_selector("#app", state="visible")
    fake.session = None  # the session expired on the server
    # A background poll may meet the 401 first and hide the tabs; either way the
    # console must go back to the login form, so the click does not wait for them.
    page.evaluate("document.querySelector(\"#tabs button[data-tab='dashboard']\").click()")
    page.wait_for_selector("#login-view", state="visible")
    assert page.is_hidden("#app")
    assert page.evaluate("window.consoleState.operator") is None


def test_history_dashboard_and_campaigns(console):
    page, fake = console(locale="en-US")
    log_in(page)
    page.wait_for_selector("#app", state="visible")

    page.click("#tabs button[data-tab='history']")
    page.wait_for_selector("#history-body tr[data-call-id='h49']")
    assert page.text_content("#history-page") == "1–50 of 120"
    page.fill("#f-intent", "order.status")
    page.select_option("#f-emotion", "angry")
    page.fill("#f-q", "快递")
    page.click("#history-search")
    deadline = time.monotonic() + 10
    while not any("intent=order.status" in g for g in fake.gets) and time.monotonic() < deadline:
        time.sleep(0.05)
    query = next(g for g in fake.gets if "intent=order.status" in g)
    assert "emotion=angry" in query and "limit=50" in query and "offset=0" in query and "q=%E5%BF%AB" in query

    page.click("#history-body tr[data-call-id='h0']")
    page.wait_for_selector("#record-panel", state="visible")
    assert page.get_attribute("#record-audio", "src").endswith("/api/ops/calls/h0/recording")
    texts = page.eval_on_selector_all("#record-transcript .text", "ns => ns.map(n => n.textContent)")
    assert texts == ["我的订单怎么还没到 " + XSS_IMG, "您的订单已发货。"]
    assert page.eval_on_selector_all("#record-panel img, #record-panel b", "ns => ns.length") == 0
    handoff = page.text_content("#record-handoff")
    assert "angry" in handoff and "张<b>三</b>" in handoff
    assert page.text_content("#record-rating").startswith("★★")

    page.click("#tabs button[data-tab='dashboard']")
    page.wait_for_selector("#dash-cards .figure[data-figure='campaign_conversion']")
    assert page.eval_on_selector_all("#dash-cards .figure", "fs => fs.length") == 7
    assert page.text_content("#dash-cards .figure[data-figure='resolved_rate'] .v") == "70.0%"
    series = page.eval_on_selector_all(
        "#dash-chart svg polyline", "ps => ps.map(p => [p.dataset.series, p.getAttribute('points').split(' ').length])")
    assert series == [["calls", 24], ["handoffs", 24], ["angry", 24]]
    page.click("button.period[data-hours='168']")
    deadline = time.monotonic() + 10
    while not any("hours=168" in g for g in fake.gets) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("hours=168" in g for g in fake.gets)

    page.click("#tabs button[data-tab='campaigns']")
    page.click("#campaigns-body tr[data-campaign='winter<b>sale&amp;']")
    page.wait_for_selector("#campaign-report", state="visible")
    assert page.text_content("#campaign-name") == "winter<b>sale&amp;"
    rows = page.eval_on_selector_all(
        "#campaign-scripts tbody tr", "rs => rs.map(r => r.children[0].textContent + ' ' + r.children[4].textContent)")
    assert rows == ["A 50.0%", "B 0.0%"]
    assert page.is_visible(".campaign-action[data-action='pause']")

    # logged out: nothing the last operator opened stays in the page
    page.click("#logout")
    page.wait_for_selector("#login-view", state="visible")
    assert page.eval_on_selector_all("#history-body tr, #record-transcript *, #dash-cards *, #campaigns-body tr",
                                     "ns => ns.length") == 0
    assert page.evaluate("window.consoleState.calls.length + window.consoleState.alerts.length") == 0
    assert page.evaluate("window.__csp") == [] and page.errors == []
