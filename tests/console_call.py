"""A supervisor on a live phone call: the real product (`voiceagent serve` with SIP), a real baresip
phone calling it, and the operator console in a real Chromium whose fake microphone is the
supervisor, all in one private network namespace (loopback only).

    .venv/bin/python -m tests.console_call --out /tmp/cc      # re-runs itself under unshare -n

The phone plays a caller: a question at 1 s, another at ~18 s, and a third during the takeover; the
supervisor's microphone is a 1 kHz tone (nothing else on the call sounds like it). The console:
log in, see the call appear with its transcript, listen in (the page's audio is measured), take
over while the agent is answering, hold the call ~12 s, release. Then the phone hangs up and the
driver collects: the phone's recording of what it heard, the stored record, the call's recording
from the operator API, `/metrics`, the console's state and a screenshot.

With `--takeovers N` (benchmarks/bench_takeover.py) it takes the call over and back N times and
times each: the click to the agent's silence and to the caller first hearing the supervisor.

Writes to --out: result.json, heard.wav (the phone's), recording.wav, console.png, server.log.
Exits 0 when the scenario ran to the end (what it shows is for the caller to judge), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser_call import VOICEAGENT, AgentServer  # noqa: E402
from tests.peers import chromium  # noqa: E402
from tests.peers.baresip import Baresip  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"
PHONE_RATE = 8000
SUPERVISOR_HZ = 1000.0
PASSWORD = "console-test-pass-1"
# the caller's script on the call's timeline (s): what they say and when
FIRST_Q_AT, SECOND_Q_AT = 1.0, 18.0
TAKEOVER_AT = 28.5  # the agent is answering the second question then
DURING_Q_AFTER = 3.5  # the caller speaks this long after the takeover (the agent must not answer)
HOLD_S = 12.0
CALL_S = 62.0

# measures what the console's <audio id="call-audio"> plays: RMS per 50 ms with the wall clock
LEVELS_JS = r"""
() => {
  if (window.__levels) return true;
  const el = document.getElementById("call-audio");
  if (!el || !el.srcObject) return false;
  const L = window.__levels = [];
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(el.srcObject);
  const proc = ctx.createScriptProcessor(2048, 1, 1);
  const mute = ctx.createGain(); mute.gain.value = 0;
  src.connect(proc); proc.connect(mute); mute.connect(ctx.destination);
  proc.onaudioprocess = (ev) => {
    const a = ev.inputBuffer.getChannelData(0);
    let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * a[i];
    L.push([Date.now() / 1000, Math.sqrt(s / a.length)]);
  };
  ctx.resume();
  return true;
}
"""


def _segment(name: str, seconds: float | None = None) -> np.ndarray:
    from voiceagent.audio import load_audio

    audio = load_audio(SAMPLES / name, PHONE_RATE).samples.astype(np.float32)
    return audio[: int(seconds * PHONE_RATE)] if seconds else audio


def caller_wav(path: Path, takeover_at: float, seconds: float = CALL_S) -> dict:
    """The phone's side: questions at fixed times, silence between, `seconds` long in all."""
    import soundfile as sf

    track = np.zeros(int(seconds * PHONE_RATE), np.float32)
    said = {}
    for key, name, at, cut in (("first", "en_size_16k.wav", FIRST_Q_AT, None),
                               ("second", "en_order_status_16k.wav", SECOND_Q_AT, None),
                               ("during", "en_return_8k.wav", takeover_at + DURING_Q_AFTER, 5.6)):
        audio = _segment(name, cut)
        i = int(at * PHONE_RATE)
        track[i:i + len(audio)] = audio[: len(track) - i]
        said[key] = [at, round(at + len(audio) / PHONE_RATE, 2)]
    sf.write(str(path), (np.clip(track, -1, 1) * 32767).astype("<i2"), PHONE_RATE, subtype="PCM_16")
    return said


def supervisor_wav(path: Path) -> Path:
    import soundfile as sf

    rate = chromium.MIC_RATE
    t = np.arange(int(60 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * SUPERVISOR_HZ * t)
    sf.write(str(path), (tone * 32767).astype("<i2"), rate, subtype="PCM_16")
    return path


def _cli(server: AgentServer, *args: str, stdin: str | None = None) -> str:
    import os

    argv = [VOICEAGENT, *args]
    if server.config_path:
        argv[1:1] = ["--config", str(server.config_path)]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, VOICEAGENT_VAR=str(server.var)))
    if done.returncode != 0:
        raise RuntimeError(f"voiceagent {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _get(server: AgentServer, path: str) -> bytes:
    req = urllib.request.Request(server.base + path, headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.read()


def run(args, out: Path, result: dict, server: AgentServer, console: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    takeovers = max(1, args.takeovers)
    said = result["caller"] = caller_wav(out / "caller.wav", TAKEOVER_AT, CALL_S + 6.5 * (takeovers - 1))
    mic = supervisor_wav(out / "supervisor.wav")
    _cli(server, "users", "add", "sup", "--role", "supervisor", stdin=PASSWORD + "\n")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium.executable(), headless=True,
                                    args=chromium.launch_args(mic, loop=True))
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
        page.on("dialog", lambda d: d.accept())
        page.goto(server.base + "/console?lang=en")
        page.fill("#login-name", "sup")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_function("() => window.consoleState && window.consoleState.operator", timeout=15000)
        result["operator"] = page.evaluate("() => window.consoleState.operator")

        with Baresip("caller", audio_source=out / "caller.wav") as phone:
            phone.dial(f"sip:agent@127.0.0.1:{server.sip_port}")
            phone.wait_for("CALL_ESTABLISHED", 15)
            t0 = time.time()  # the call's timeline starts about here
            result["t0"] = t0
            page.wait_for_function("() => window.consoleState.calls.length > 0", timeout=15000)
            call_id = page.evaluate("() => window.consoleState.calls[0].call_id")
            result["call_id"] = call_id
            result["seen_after_s"] = round(time.time() - t0, 2)
            page.click(f'#live-calls-body tr[data-call-id="{call_id}"]')
            page.wait_for_function(
                "() => window.consoleState.transcript.some((e) => e.role === 'caller' || e.type === 'caller')",
                timeout=40000)
            result["transcript_after_s"] = round(time.time() - t0, 2)
            page.click("#listen-btn")
            page.wait_for_function("() => window.consoleState.listening", timeout=15000)
            result["listen_at_s"] = round(time.time() - t0, 2)
            page.wait_for_function(LEVELS_JS, timeout=10000)
            _sleep_until(t0 + TAKEOVER_AT - 1.5)
            result["listen_levels"] = [[round(t - t0, 2), round(v, 5)] for t, v in page.evaluate("() => window.__levels")]
            page.click("#stop-listen-btn")
            result["takeovers"] = []
            for n in range(takeovers):
                # later ones: 2 s after the release, while the agent says it is back
                at = TAKEOVER_AT if n == 0 else time.time() - t0 + 2.0
                _sleep_until(t0 + at)
                clicked = time.time()
                page.click("#takeover-btn")
                page.wait_for_function("() => window.consoleState.takenOver", timeout=15000)
                held = {"clicked_s": round(clicked - t0, 3), "connected_s": round(time.time() - t0, 3)}
                _sleep_until(clicked + (HOLD_S if n == 0 else 3.0))
                held["release_clicked_s"] = round(time.time() - t0, 3)
                page.click("#release-btn")
                page.wait_for_function("() => !window.consoleState.takenOver", timeout=15000)
                result["takeovers"].append(held)
            result["console_state"] = page.evaluate(
                "() => ({transcript: window.consoleState.transcript.slice(-40), calls: window.consoleState.calls})")
            page.screenshot(path=str(out / "console.png"))
            time.sleep(6.0)  # the agent speaks again
            result["console_cost"] = page.evaluate(
                "() => ({dom_nodes: document.getElementsByTagName('*').length, "
                "heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null})")
            phone.hangup()
            phone.wait_for("CALL_CLOSED", 15)
            heard = phone.heard_audio()
            import soundfile as sf

            sf.write(str(out / "heard.wav"), heard, PHONE_RATE, subtype="PCM_16")
        record = server.wait_call(call_id, 30)
        result["record"] = record
        for _ in range(60):  # encoded after the call, on a low-priority thread
            try:
                (out / "recording.wav").write_bytes(_get(server, f"/api/ops/calls/{call_id}/recording"))
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                time.sleep(0.5)
        result["metrics"] = _get(server, "/metrics").decode()
        # the rest of the console, after the call: its history with the recording, the dashboard
        page.goto(server.base + "/console?lang=en")
        page.wait_for_function("() => window.consoleState && window.consoleState.operator", timeout=15000)
        try:
            page.click('#tabs button[data-tab="history"]')
            page.wait_for_selector(f'#history-body tr[data-call-id="{call_id}"]', timeout=15000)
            page.click(f'#history-body tr[data-call-id="{call_id}"]')
            page.wait_for_selector("#record-panel:not([hidden])", timeout=15000)
            page.screenshot(path=str(out / "console_history.png"))
            page.click('#tabs button[data-tab="dashboard"]')
            page.wait_for_function("() => window.consoleState.dashboard", timeout=15000)
            page.screenshot(path=str(out / "console_dashboard.png"))
        except Exception:
            result["errors_screens"] = traceback.format_exc()[-2000:]
        browser.close()
    result["ok"] = True


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--takeovers", type=int, default=1)
    args = ap.parse_args(argv)
    chromium.reexec_in_netns()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"errors": []}
    console: list[str] = []
    started = time.monotonic()
    sip_port = free_port("sip")
    config = (f"[call]\ngreeting = true\n[sip]\nrtp_port_min = 34000\nrtp_port_max = 34999\n"
              f"[recordings]\ndir = \"{out / 'recordings'}\"\n")
    server = AgentServer(out / "server", config_text=config, log_path=out / "server.log")
    server.sip_port = sip_port
    try:
        server.start(sip=f"127.0.0.1:{sip_port}")
        server.wait_ready()
        server.wait_log(("pre-synthesised",), 60)
        run(args, out, result, server, console)
    except Exception:
        result["errors"].append(traceback.format_exc())
    finally:
        result["server_exit"] = server.stop()
        result["console"] = console[-200:]
        result["seconds"] = round(time.monotonic() - started, 1)
        (out / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ok = not result["errors"] and result.get("ok")
    print(f"console_call: {'ok' if ok else 'FAILED'} in {result['seconds']} s; {out / 'result.json'}")
    for err in result["errors"]:
        print(err, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
