"""A real browser for tests: Debian's Chromium, driven by Python playwright, with a fake microphone.

    from tests.peers import chromium

    if chromium.available():
        wav = chromium.fake_mic_wav(SAMPLES / "en_order_status_16k.wav", tmp / "mic.wav", lead_s=6)
        with sync_playwright() as p:
            browser = chromium.launch(p, mic_wav=wav)
            page = browser.new_page()
            page.add_init_script(chromium.TAP_JS)        # levels of both streams, the heard audio
            ...

Everything runs in a network namespace of its own (``unshare -n``, loopback only): nothing leaves
the machine, and aiortc's ICE has only 127.0.0.1 to offer, which is what a loopback server offers.
``in_netns(argv)`` wraps a command so; the server and the browser must be in the same namespace, so
one process (tests/browser_call.py, benchmarks/bench_webrtc.py) starts both.

What was found by experiment (chromium 1xx from Debian bookworm, playwright 1.65):

* ``--use-file-for-fake-audio-capture=X.wav`` plays the file into every getUserMedia capture, from
  its start when the capture opens (each call, each page); ``X.wav%noloop`` plays it once, then
  silence. The file is converted to the capture's format: 16-bit PCM mono 48 kHz avoids a resampler.
* Without ``--use-fake-ui-for-media-stream`` and with ``--deny-permission-prompts`` getUserMedia
  fails at once with NotAllowedError: a caller who refuses the microphone.
* Remote WebRTC audio only flows into Web Audio (createMediaStreamSource) while the stream is also
  attached to a playing media element (the widget plays it in an Audio element).
* Never ``playwright install``: the browser is the Debian package, given by ``executable_path``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
MIC_RATE = 48000

# what every launch gets (docs/ARCHITECTURE "Real peers for tests")
BASE_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def executable() -> str | None:
    """The Chromium binary: $VOICEAGENT_CHROMIUM, or Debian's."""
    override = os.environ.get("VOICEAGENT_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    return next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)


def has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def netns_available() -> bool:
    """Whether this process may make a network namespace of its own (root, or user namespaces)."""
    if not shutil.which("unshare") or not _ip():
        return False
    try:
        done = subprocess.run(in_netns(["true"]), capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def available() -> bool:
    """Chromium, playwright and a private network namespace: all a browser test needs."""
    return executable() is not None and has_playwright() and netns_available()


def missing() -> str:
    """What is missing, for a skip reason."""
    parts = []
    if executable() is None:
        parts.append("chromium (apt-get install chromium)")
    if not has_playwright():
        parts.append("playwright (pip install playwright)")
    if not netns_available():
        parts.append("unshare -n (a network namespace: root or user namespaces)")
    return ", ".join(parts) or "nothing"


def launch_args(mic_wav: str | Path | None = None, *, grant_mic: bool = True, loop: bool = False,
                extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Chromium's command-line switches. ``grant_mic``: the permission prompt is accepted (fake UI);
    False: it is refused (``--deny-permission-prompts``), as by a caller who says no."""
    args = list(BASE_ARGS)
    args.append("--use-fake-ui-for-media-stream" if grant_mic else "--deny-permission-prompts")
    if mic_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic_wav}{'' if loop else '%noloop'}")
    args.extend(extra)
    return args


def launch(playwright, mic_wav: str | Path | None = None, *, grant_mic: bool = True, extra=(), **kwargs):
    """A headless Chromium (playwright Browser). The caller closes it."""
    exe = executable()
    if exe is None:
        raise RuntimeError(f"chromium not found ({', '.join(CANDIDATES)}; or set VOICEAGENT_CHROMIUM)")
    return playwright.chromium.launch(executable_path=exe, headless=True,
                                      args=launch_args(mic_wav, grant_mic=grant_mic, extra=extra), **kwargs)


def fake_mic_wav(sample: str | Path, out: str | Path, *, lead_s: float = 1.5, tail_s: float = 8.0,
                 gain: float = 1.0) -> Path:
    """A caller's recording as the fake microphone plays it: 16-bit PCM mono at 48 kHz, ``lead_s``
    of silence before (the call connects, the agent greets) and ``tail_s`` after (time to answer)."""
    import soundfile as sf

    from voiceagent.audio import load_audio

    audio = load_audio(sample, MIC_RATE).samples * gain
    padded = np.concatenate([np.zeros(int(lead_s * MIC_RATE), np.float32), audio.astype(np.float32),
                             np.zeros(int(tail_s * MIC_RATE), np.float32)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), (np.clip(padded, -1, 1) * 32767).astype("<i2"), MIC_RATE, subtype="PCM_16")
    return out


# -- the network namespace -------------------------------------------------------------------------
NETNS_MARK = "VOICEAGENT_IN_NETNS"


def _ip() -> str | None:
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None)


def in_netns(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace with only loopback up."""
    return ["unshare", "-n", "sh", "-c", f'{_ip() or "ip"} link set lo up && exec "$@"', "sh", *argv]


def run_in_netns(argv: list[str], *, timeout: float, env: dict | None = None, cwd: str | Path | None = None,
                 log: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` in a private network namespace; its output goes to ``log`` (or is captured)."""
    env = dict(os.environ if env is None else env, **{NETNS_MARK: "1"})
    if log is None:
        return subprocess.run(in_netns(argv), env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True)
    with open(log, "wb") as out:
        return subprocess.run(in_netns(argv), env=env, cwd=cwd, timeout=timeout, stdout=out, stderr=subprocess.STDOUT)


def reexec_in_netns() -> None:
    """Called first by a script that needs the namespace: re-runs this very command inside one
    (once; the mark in the environment tells). Returns only when already inside."""
    if os.environ.get(NETNS_MARK) == "1":
        return
    if not netns_available():
        raise SystemExit("cannot make a network namespace (unshare -n): run as root, or with user namespaces")
    os.environ[NETNS_MARK] = "1"
    argv = in_netns([sys.executable, *sys.orig_argv[1:]])  # orig_argv keeps `-m module`
    os.execvp(argv[0], argv)


# -- in the page -----------------------------------------------------------------------------------
# An init script for pages with the widget. When the call's remote audio arrives it taps the local
# microphone stream and the remote (agent) stream into ONE ScriptProcessor through a channel merger:
# both are sampled on the same AudioContext clock, sample-aligned, so "agent's first sound after
# the caller's last" needs no clock matching. Per 10 ms it keeps the RMS of each; with recording on,
# both streams at 16 kHz (int16) for heard.wav / sent.wav. It also notes every widget event with the
# page clock (performance.now) and the audio clock.
TAP_JS = r"""
(() => {
  if (window.__rec) return;
  const RECORD_AUDIO = __RECORD_AUDIO__;
  const REC = window.__rec = {events: [], started: false, error: null, rate: 0, hop: 0, t0: null,
                              local: [], remote: [], blocks: 0, heard: [], sent: [], record: RECORD_AUDIO};
  const now = () => ({t: performance.now(), ctx: REC.ctx ? REC.ctx.currentTime : null});
  document.addEventListener("voiceagent:event", (e) => {
    const d = e.detail || {};
    REC.events.push(Object.assign({type: d.type, data: d.data}, now()));
    if (d.type === "remote-audio") { try { startTap(); } catch (err) { REC.error = String(err); } }
  });
  function startTap() {
    if (REC.started) return;
    const W = window.voiceagentWidget;
    if (!W || !W.localStream || !W.remoteStream) { REC.error = "no streams to tap"; return; }
    REC.started = true;
    const ctx = REC.ctx = new AudioContext({sampleRate: 48000});
    const merger = ctx.createChannelMerger(2);
    ctx.createMediaStreamSource(W.localStream).connect(merger, 0, 0);
    ctx.createMediaStreamSource(W.remoteStream).connect(merger, 0, 1);
    const proc = ctx.createScriptProcessor(2048, 2, 1);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    merger.connect(proc);
    proc.connect(mute);
    mute.connect(ctx.destination);  // a ScriptProcessor only runs while connected onwards
    REC.proc = proc;
    const rate = REC.rate = ctx.sampleRate, hop = REC.hop = Math.round(ctx.sampleRate / 100);
    const down = Math.max(1, Math.round(rate / 16000));
    let n = 0, sumL = 0, sumR = 0;
    proc.onaudioprocess = (ev) => {
      const a = ev.inputBuffer.getChannelData(0), b = ev.inputBuffer.getChannelData(1);
      if (REC.t0 === null) {
        // the block's first sample, on the audio clock (the output block plays at playbackTime)
        REC.t0 = ev.playbackTime - a.length / rate;
        REC.t0_perf = performance.now();
        REC.t0_ctx = ctx.currentTime;
      }
      REC.blocks++;
      for (let i = 0; i < a.length; i++) {
        sumL += a[i] * a[i];
        sumR += b[i] * b[i];
        if (++n === hop) {
          REC.local.push(Math.round(Math.sqrt(sumL / hop) * 1e5) / 1e5);
          REC.remote.push(Math.round(Math.sqrt(sumR / hop) * 1e5) / 1e5);
          n = 0; sumL = 0; sumR = 0;
        }
      }
      if (RECORD_AUDIO) {
        const m = Math.floor(a.length / down), h = new Int16Array(m), s = new Int16Array(m);
        for (let j = 0; j < m; j++) {
          let x = 0, y = 0;
          for (let k = 0; k < down; k++) { x += b[j * down + k]; y += a[j * down + k]; }
          h[j] = Math.max(-32768, Math.min(32767, Math.round(x / down * 32767)));
          s[j] = Math.max(-32768, Math.min(32767, Math.round(y / down * 32767)));
        }
        REC.heard.push(h);
        REC.sent.push(s);
      }
    };
    ctx.resume();
  }
  function b64(chunks) {
    let total = 0;
    chunks.forEach((c) => { total += c.length; });
    const all = new Int16Array(total);
    let off = 0;
    chunks.forEach((c) => { all.set(c, off); off += c.length; });
    const bytes = new Uint8Array(all.buffer);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }
  // everything recorded, as JSON-friendly values; audio as base64 int16 at 16 kHz
  window.__recDump = (withAudio) => ({
    started: REC.started, error: REC.error, rate: REC.rate, hop: REC.hop, t0: REC.t0, t0_perf: REC.t0_perf,
    t0_ctx: REC.t0_ctx, blocks: REC.blocks, frame_s: 0.01, local: REC.local, remote: REC.remote, events: REC.events,
    audio_rate: Math.round(REC.rate / Math.max(1, Math.round(REC.rate / 16000))),
    heard: withAudio && REC.record ? b64(REC.heard) : null, sent: withAudio && REC.record ? b64(REC.sent) : null,
  });
  window.__recStop = () => { if (REC.proc) REC.proc.onaudioprocess = null; if (REC.ctx) REC.ctx.close(); };
})();
"""


def tap_js(record_audio: bool = True) -> str:
    return TAP_JS.replace("__RECORD_AUDIO__", "true" if record_audio else "false")


def decode_pcm(b64: str | None) -> np.ndarray:
    """A base64 int16 dump from the page as float32."""
    import base64

    if not b64:
        return np.zeros(0, np.float32)
    return np.frombuffer(base64.b64decode(b64), dtype="<i2").astype(np.float32) / 32768.0


# -- timings from the page's level timelines --------------------------------------------------------
def voiced_runs(levels: list[float] | np.ndarray, threshold: float, min_gap_frames: int) -> list[tuple[int, int]]:
    """Runs of voiced 10 ms frames as (first, last) frame indices, merging gaps shorter than
    ``min_gap_frames`` (pauses inside one utterance)."""
    voiced = np.flatnonzero(np.asarray(levels) > threshold)
    runs: list[tuple[int, int]] = []
    for i in voiced:
        if runs and i - runs[-1][1] <= min_gap_frames:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    return runs


def voice_to_voice(local: list[float], remote: list[float], *, frame_s: float = 0.01, caller_rms: float = 0.01,
                   agent_rms: float = 0.01, gap_s: float = 0.8, max_wait_s: float = 6.0,
                   min_turn_s: float = 0.3) -> list[dict]:
    """Per caller utterance in the page's own microphone stream: the end of its speech (the last
    frame above ``caller_rms`` before ``gap_s`` of quiet) and the agent's first frame above
    ``agent_rms`` after it, both on the page's audio clock. A turn counts when the agent was quiet
    when the caller stopped (else the caller spoke over it) and answered within ``max_wait_s``."""
    local, remote = np.asarray(local, np.float32), np.asarray(remote, np.float32)
    gap = int(round(gap_s / frame_s))
    out = []
    agent_voiced = remote > agent_rms
    for first, last in voiced_runs(local, caller_rms, gap):
        if (last - first + 1) * frame_s < min_turn_s:
            continue  # a click, not a turn
        turn = {"caller_start_s": round(first * frame_s, 3), "caller_end_s": round((last + 1) * frame_s, 3),
                "v2v_ms": None, "clean": True}
        if agent_voiced[max(0, last - 10): last + 1].any():
            turn["clean"] = False  # the agent was talking as the caller stopped
        later = np.flatnonzero(agent_voiced[last + 1: last + 1 + int(max_wait_s / frame_s)])
        if later.size:
            turn["v2v_ms"] = round(float(later[0]) * frame_s * 1000.0, 1)
        out.append(turn)
    return out
