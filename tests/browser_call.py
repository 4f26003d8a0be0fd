"""A browser calls the agent: the real product (`voiceagent serve`) and a real Chromium with a fake
microphone, both in one private network namespace (loopback only).

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m tests.browser_call --out /tmp/bc'
    .venv/bin/python -m tests.browser_call --out /tmp/bc     # the same: it re-runs itself under unshare -n

1. voice: the demo page (/?lang=en&open=1), the widget's call button; the fake microphone plays a
   sample caller (with a lead-in for the greeting). The page's audio is tapped (tests/peers/chromium
   TAP_JS): RMS per 10 ms of the microphone and of the agent's stream on one audio clock, and what
   the page heard. Once the agent has answered the caller's last question and is listening again,
   a screenshot, the hang-up, and the stored record of the call from GET /api/ops/calls/{call_id} (with an operator's token).
2. text (unless --no-text): a second Chromium that refuses the microphone; the widget offers the
   text form; a typed question is answered through POST /api/chat.

Writes to --out: result.json, heard.wav and sent.wav (16 kHz: the agent's stream and the microphone
as the page had them), widget.png, text_fallback.png, mic.wav, server.log, console.log. Exits 0 when
both scenarios ran to the end (what they show is for the caller to judge), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers import chromium  # noqa: E402
from tests.peers.operator import create_token, get_json  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"
VOICEAGENT = str(Path(sys.executable).with_name("voiceagent"))
CALL_BUTTON = "#voiceagent-widget .go"  # playwright's CSS goes into the widget's open shadow root
TEXT_FORM = "#voiceagent-widget form.text"
TEXT_INPUT = "#voiceagent-widget input.q"


class AgentServer:
    """`voiceagent serve --http 127.0.0.1:PORT --sip off` in a process of its own, with its own
    var/ (demo shop, call store), ended with SIGTERM (exit status 0 expected)."""

    def __init__(self, work: Path, config_text: str | None = None, port: int | None = None,
                 log_path: Path | None = None):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port("tcp")
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or self.work / "server.log"
        self.var = self.work / "var"
        self.config_path = None
        if config_text:
            self.config_path = self.work / "voiceagent.toml"
            self.config_path.write_text(config_text, encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None
        self.returncode: int | None = None

    def start(self, sip: str = "off") -> "AgentServer":
        argv = [VOICEAGENT, "serve", "--http", f"127.0.0.1:{self.port}", "--sip", sip]
        if self.config_path:
            argv[1:1] = ["--config", str(self.config_path)]
        # stored records are the operators' business: an API token for this server's store
        self.token = create_token(self.var, self.config_path)
        env = dict(os.environ, VOICEAGENT_VAR=str(self.var), PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self._started = time.monotonic()
        return self

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get_json(self, path: str, timeout: float = 5.0) -> tuple[int, dict]:
        return get_json(self.base + path, getattr(self, "token", None), timeout)

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voiceagent serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, doc = self.get_json("/healthz", 2)
            except OSError:
                status, doc = 0, {}  # not listening yet
            if status == 200 and doc.get("status") == "ok":
                self.ready_s = round(time.monotonic() - self._started, 1)
                return
            if doc.get("status") == "error":
                raise RuntimeError(f"models failed to load: {doc.get('error')}\n{self.log_tail()}")
            time.sleep(0.3)
        raise RuntimeError(f"voiceagent serve not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def wait_log(self, needles: tuple[str, ...], timeout: float) -> str | None:
        """Until one of ``needles`` appears in the server's log (e.g. "pre-synthesised": the speech
        prewarm that runs after /healthz is ok has finished). Returns the line, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            for line in text.splitlines():
                if any(n in line for n in needles):
                    return line
            if self.proc is not None and self.proc.poll() is not None:
                return None
            time.sleep(0.5)
        return None

    def wait_call(self, call_id: str, timeout: float = 30.0) -> dict | None:
        """The stored record of a finished call (it is written when the session ends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, doc = self.get_json(f"/api/ops/calls/{call_id}")
            if status == 200:
                return doc
            time.sleep(0.25)
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.returncode = None
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def __enter__(self) -> "AgentServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- in the page ---------------------------------------------------------------------------------
PROGRESS_JS = r"""
() => {
  const W = window.voiceagentWidget;
  if (!W) return null;
  const msgs = W.events.filter((e) => e.type === "message").map((e) => e.detail);
  let lastFinal = -1;
  msgs.forEach((m, i) => { if (m.type === "transcript" && m.role === "caller" && m.final) lastFinal = i; });
  let agentAfter = false, spoke = false, listening = false, partial = false;
  msgs.forEach((m, i) => {
    if (m.type === "transcript" && m.role === "caller" && !m.final && i > lastFinal) partial = true;
    if (lastFinal < 0 || i <= lastFinal) return;
    if (m.type === "transcript" && m.role === "agent") agentAfter = true;
    if (m.type === "state" && m.state === "speaking") { spoke = true; listening = false; }
    if (m.type === "state" && m.state === "listening" && spoke) listening = true;
  });
  return {state: W.state, callId: W.callId, sessionId: W.sessionId, finals: msgs.filter((m) =>
    m.type === "transcript" && m.role === "caller" && m.final).length, agentAfter, spoke, listening,
    partial, messages: msgs.length, fallback: W.events.some((e) => e.type === "text-fallback")};
}
"""

TRANSCRIPT_JS = r"""
() => (window.voiceagentWidget ? window.voiceagentWidget.transcript : []).map((e) => ({
  role: e.role, text: e.text, turn: e.turn === undefined ? null : e.turn, language: e.language || null,
  channel: e.channel || "voice"}))
"""

STATS_JS = r"""
async () => {
  // the browser's side of the media: Chrome's jitter buffer on the agent's audio, what it sent
  const pc = window.voiceagentWidget && window.voiceagentWidget.pc;
  if (!pc) return null;
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.inbound = {packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, jitter_ms: s.jitter * 1000,
        jitterBufferDelay_ms: s.jitterBufferEmittedCount ? s.jitterBufferDelay / s.jitterBufferEmittedCount * 1000 : null,
        jitterBufferTargetDelay_ms: s.jitterBufferEmittedCount && s.jitterBufferTargetDelay !== undefined
          ? s.jitterBufferTargetDelay / s.jitterBufferEmittedCount * 1000 : null,
        concealedSamples: s.concealedSamples, totalSamplesReceived: s.totalSamplesReceived};
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.outbound = {packetsSent: s.packetsSent, bytesSent: s.bytesSent};
    } else if (s.type === "candidate-pair" && s.nominated) {
      out.rtt_ms = s.currentRoundTripTime !== undefined ? s.currentRoundTripTime * 1000 : null;
    } else if (s.type === "codec" && s.mimeType && s.mimeType.indexOf("audio/") === 0) {
      (out.codecs = out.codecs || []).push(s.mimeType + "/" + s.clockRate);
    }
  });
  return out;
}
"""

EVENTS_JS = r"""
() => (window.voiceagentWidget ? window.voiceagentWidget.events : []).map((e) => ({type: e.type, t: e.t,
  detail: (e.detail && typeof e.detail === "object") ? JSON.parse(JSON.stringify(e.detail)) : e.detail}))
"""


async def open_widget(page, base: str, lang: str = "en") -> None:
    await page.goto(f"{base}/?lang={lang}&open=1", wait_until="load")
    await page.wait_for_function("() => window.voiceagentWidget && document.getElementById('voiceagent-widget')",
                                 timeout=15000)
    await page.locator(CALL_BUTTON).wait_for(state="visible", timeout=15000)


async def voice_call(page, base: str, *, lang: str = "en", timeout_s: float = 60.0, min_s: float = 0.0,
                     settle_s: float = 1.5, with_audio: bool = True, on_answer=None) -> dict:
    """One call from the page (playwright async API): open the demo page, click the call button,
    wait until the agent has answered the caller's last final turn and has been listening for
    ``settle_s`` (and at least ``min_s`` after the click: a recording with several turns), then hang
    up. ``await on_answer(page)`` runs before the hang-up (a screenshot). Returns what the page saw;
    ``ok`` is False with ``error`` when the answer did not come."""
    await open_widget(page, base, lang)
    clicked = time.monotonic()
    await page.locator(CALL_BUTTON).click()
    out: dict = {"ok": False}
    progress = None
    deadline = clicked + timeout_s
    stable_since = None
    while time.monotonic() < deadline:
        progress = await page.evaluate(PROGRESS_JS)
        if progress and progress["fallback"]:
            out["error"] = "the widget fell back to text"
            break
        if progress and progress["state"] in ("ended", "idle") and progress["callId"]:
            out["error"] = f"the call ended early (state {progress['state']})"
            break
        done = (time.monotonic() - clicked >= min_s and bool(progress) and progress["agentAfter"]
                and progress["listening"] and not progress["partial"])
        if done:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= settle_s:
                out["ok"] = True
                break
        else:
            stable_since = None
        await asyncio.sleep(0.25)
    else:
        out["error"] = f"timed out after {timeout_s:.0f} s waiting for the answer"
    out["progress"] = progress
    out["call_s"] = round(time.monotonic() - clicked, 2)
    if on_answer is not None:
        try:
            await on_answer(page)
        except Exception as exc:  # a screenshot that failed is no reason to lose the call
            out.setdefault("notes", []).append(f"on_answer: {exc!r}")
    out["transcript"] = await page.evaluate(TRANSCRIPT_JS)
    out["call_id"] = await page.evaluate("() => window.voiceagentWidget.callId")
    out["session_id"] = await page.evaluate("() => window.voiceagentWidget.sessionId")
    out["webrtc_stats"] = await page.evaluate(STATS_JS)
    await page.evaluate("() => window.voiceagentWidget.hangup()")
    await asyncio.sleep(0.5)
    out["events"] = await page.evaluate(EVENTS_JS)
    out["states"] = [e["detail"] for e in out["events"] if e["type"] == "state"]
    out["connection"] = [e["detail"] for e in out["events"] if e["type"] == "connection"]
    out["levels"] = await page.evaluate("(a) => window.__recDump ? window.__recDump(a) : null", with_audio)
    await page.evaluate("() => window.__recStop && window.__recStop()")
    return out


def levels_summary(levels: dict | None) -> dict:
    if not levels or not levels.get("local"):
        return {"frames": 0}
    import numpy as np

    local, remote = np.asarray(levels["local"]), np.asarray(levels["remote"])
    return {"frames": int(len(local)), "seconds": round(len(local) * 0.01, 2),
            "local_max": round(float(local.max()), 4), "remote_max": round(float(remote.max()), 4),
            "local_voiced_s": round(float((local > 0.01).sum()) * 0.01, 2),
            "remote_voiced_s": round(float((remote > 0.01).sum()) * 0.01, 2)}


async def text_fallback(page, base: str, question: str, *, lang: str = "en", timeout_s: float = 30.0) -> dict:
    """The microphone is refused: the widget offers the text form; a typed question is answered."""
    out: dict = {"ok": False, "question": question}
    await open_widget(page, base, lang)
    await page.locator(CALL_BUTTON).click()
    try:
        await page.wait_for_function(
            "() => window.voiceagentWidget.events.some((e) => e.type === 'text-fallback')", timeout=15000)
    except Exception as exc:
        out["error"] = f"no text fallback: {exc}"
        out["progress"] = await page.evaluate(PROGRESS_JS)
        return out
    out["fallback_reason"] = await page.evaluate(
        "() => window.voiceagentWidget.events.find((e) => e.type === 'text-fallback').detail")
    out["form_visible"] = await page.locator(TEXT_FORM).is_visible()
    out["state"] = await page.evaluate("() => window.voiceagentWidget.state")
    await page.locator(TEXT_INPUT).fill(question)
    await page.locator(TEXT_INPUT).press("Enter")
    try:
        await page.wait_for_function("() => window.voiceagentWidget.transcript.some((e) => e.role === 'agent' "
                                     "&& e.channel === 'chat')", timeout=timeout_s * 1000)
        out["ok"] = True
    except Exception as exc:
        out["error"] = f"no chat reply: {exc}"
    out["transcript"] = await page.evaluate(TRANSCRIPT_JS)
    out["panel_text"] = await page.locator("#voiceagent-widget .log").inner_text()
    return out


def write_audio(levels: dict | None, out_dir: Path) -> dict:
    from voiceagent.audio import write_wav

    files = {}
    if not levels:
        return files
    rate = int(levels.get("audio_rate") or 16000)
    for key in ("heard", "sent"):
        samples = chromium.decode_pcm(levels.get(key))
        if len(samples):
            write_wav(out_dir / f"{key}.wav", samples, rate)
            files[key] = str(out_dir / f"{key}.wav")
        levels[key] = None  # not into result.json
    return files


async def _browse(args, server: AgentServer, mic: Path, out_dir: Path, result: dict, console: list[str]) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await chromium.launch(p, mic_wav=mic)
        result["browser_version"] = browser.version
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 760})
            await context.add_init_script(chromium.tap_js(record_audio=True))
            page = await context.new_page()
            page.on("console", lambda m: console.append(f"[voice {m.type}] {m.text}"))
            page.on("pageerror", lambda e: console.append(f"[voice pageerror] {e}"))

            async def shot(pg) -> None:
                await pg.screenshot(path=str(out_dir / "widget.png"))

            call = await voice_call(page, server.base, lang=args.lang, timeout_s=args.timeout, on_answer=shot)
            call["files"] = write_audio(call["levels"], out_dir)
            call["levels_summary"] = levels_summary(call["levels"])
            if call["levels"] and call["levels"].get("local"):
                call["v2v"] = chromium.voice_to_voice(call["levels"]["local"], call["levels"]["remote"], max_wait_s=15)
            call["screenshot"] = str(out_dir / "widget.png") if (out_dir / "widget.png").exists() else None
            call["record"] = (await asyncio.to_thread(server.wait_call, call["call_id"])) if call.get("call_id") else None
            result["call"] = call
            await context.close()
        finally:
            await browser.close()
        if args.no_text:
            return
        browser = await chromium.launch(p, mic_wav=mic, grant_mic=False)
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 760}, permissions=[])
            page = await context.new_page()
            page.on("console", lambda m: console.append(f"[text {m.type}] {m.text}"))
            page.on("pageerror", lambda e: console.append(f"[text pageerror] {e}"))
            text = await text_fallback(page, server.base, args.text, lang=args.lang)
            await page.screenshot(path=str(out_dir / "text_fallback.png"))
            text["screenshot"] = str(out_dir / "text_fallback.png")
            result["text"] = text
            await context.close()
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for result.json, heard.wav, widget.png ...")
    ap.add_argument("--wav", default=str(SAMPLES / "en_order_status_16k.wav"), help="the caller's recording")
    ap.add_argument("--lang", default="en", help="the demo page's language (?lang=)")
    ap.add_argument("--lead", type=float, default=8.5,
                    help="silence before the caller speaks (s): the call connects and the agent greets "
                         "(the greeting, in the page's language, lasts ~4-7 s)")
    ap.add_argument("--tail", type=float, default=20.0, help="silence after the recording (s)")
    ap.add_argument("--timeout", type=float, default=75.0, help="longest wait for the answer (s)")
    ap.add_argument("--text", default="Where is my order 3851-2074?", help="the question typed when the mic is refused")
    ap.add_argument("--no-text", action="store_true", help="skip the microphone-refused scenario")
    ap.add_argument("--config", help="a TOML file for the server (default: the product's defaults)")
    args = ap.parse_args(argv)

    chromium.reexec_in_netns()
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"errors": [], "wav": args.wav, "lang": args.lang, "lead_s": args.lead}
    console: list[str] = []
    started = time.monotonic()
    config_text = Path(args.config).read_text(encoding="utf-8") if args.config else None
    server = AgentServer(out_dir / "server", config_text=config_text, log_path=out_dir / "server.log")
    try:
        mic = chromium.fake_mic_wav(args.wav, out_dir / "mic.wav", lead_s=args.lead, tail_s=args.tail)
        server.start()
        server.wait_ready()
        result["server"] = {"port": server.port, "ready_s": server.ready_s}
        asyncio.run(_browse(args, server, mic, out_dir, result, console))
    except Exception:
        result["errors"].append(traceback.format_exc())
    finally:
        result["server_exit"] = server.stop()
        result["webrtc_log"] = [line for line in server.log_tail(400).splitlines() if "webrtc" in line.lower()][-40:]
        result["console"] = console[-200:]
        result["seconds"] = round(time.monotonic() - started, 1)
        (out_dir / "console.log").write_text("\n".join(console) + "\n", encoding="utf-8")
        (out_dir / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ok = not result["errors"] and result.get("call", {}).get("ok") and (args.no_text or result.get("text", {}).get("ok"))
    print(f"browser_call: {'ok' if ok else 'FAILED'} in {result['seconds']} s; {out_dir / 'result.json'}")
    for err in result["errors"]:
        print(err, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
