"""A supervisor on a live phone call, end to end: a real baresip phone calls `voiceagent serve`
over SIP; the operator console in a real headless Chromium logs in, sees the call and its
transcript, listens in, takes the call over (its fake microphone is the supervisor: a 1 kHz tone,
which nothing else on the call sounds like), and gives it back. tests/console_call.py drives it in
a private network namespace; this file checks what the phone heard, what was stored, what the
recording and /metrics say. The same behaviours on fakes, in milliseconds: tests/test_supervision.py."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.peers import baresip, chromium, need

ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR_HZ = 1000.0
WINDOW_S = 0.1

pytestmark = [need(chromium.available(), f"a browser: {chromium.missing()}"),
              need(baresip.available(), "baresip")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("console_call")
    done = chromium.run_in_netns([sys.executable, "-m", "tests.console_call", "--out", str(out)], timeout=420,
                                 cwd=ROOT, log=out / "run.log")
    result_path = out / "result.json"
    assert result_path.exists(), (out / "run.log").read_text(errors="replace")[-4000:]
    result = json.loads(result_path.read_text())
    assert done.returncode == 0 and result.get("ok"), json.dumps(
        {k: result.get(k) for k in ("errors", "console", "takeovers")}, indent=1)[-6000:] + \
        (out / "server.log").read_text(errors="replace")[-3000:]
    return out, result


def windows(audio: np.ndarray, rate: int) -> list[tuple[float, float, float]]:
    """(start_s, rms, share of the energy at the supervisor's tone) per 100 ms."""
    n = int(WINDOW_S * rate)
    out = []
    for i in range(len(audio) // n):
        part = audio[i * n:(i + 1) * n].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(part)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / rate)
        share = spectrum[(freqs > SUPERVISOR_HZ - 50) & (freqs < SUPERVISOR_HZ + 50)].sum() / max(spectrum.sum(), 1e-12)
        out.append((i * WINDOW_S, float(np.sqrt(np.mean(part ** 2))), float(share)))
    return out


def between(rows, start_s: float, end_s: float):
    return [r for r in rows if start_s <= r[0] and r[0] + WINDOW_S <= end_s]


def test_the_console_shows_the_live_call_and_its_transcript(run):
    _, result = run
    assert result["operator"]["name"] == "sup" and result["operator"]["role"] == "supervisor"
    assert result["seen_after_s"] < 10  # the call appeared in the list as it started
    transcript = result["console_state"]["transcript"]
    callers = [e for e in transcript if e.get("role") == "caller"]
    assert callers and any(len(e.get("text") or "") > 10 for e in callers), transcript
    assert any(e.get("role") == "agent" for e in transcript)


def test_listening_in_the_page_hears_the_call(run):
    _, result = run
    start, end = result["caller"]["second"]  # the caller's second question, said while the page listened
    levels = [v for t, v in result["listen_levels"] if start + 0.5 <= t <= end - 0.5]
    assert len(levels) > 20, result["listen_levels"][:10]
    assert float(np.median(levels)) > 0.005, levels  # the caller's words reached the supervisor's page
    before = [v for t, v in result["listen_levels"] if result["listen_at_s"] + 0.5 <= t <= start - 0.3]
    assert before and min(before) < float(np.median(levels))


def test_a_takeover_silences_the_agent_and_puts_the_supervisor_on_the_phone_then_release_gives_the_call_back(run):
    out, result = run
    record = result["record"]
    (held,) = record["supervision"]
    assert held["operator"] == "sup"
    taken, released = held["from_s"], held["to_s"]
    assert taken == pytest.approx(result["takeovers"][0]["clicked_s"], abs=1.5)
    heard, rate = sf.read(str(out / "heard.wav"), dtype="float32")
    rows = windows(heard, rate)
    # while the supervisor held the call the phone heard the supervisor, and nothing of the agent
    during = [r for r in between(rows, taken + 0.5, released - 0.5) if r[1] > 0.003]
    assert len(during) >= 0.8 * (released - taken - 1.0) / WINDOW_S, "the supervisor's voice did not reach the phone"
    agent_like = [r for r in during if r[2] < 0.5]
    assert len(agent_like) <= 2, agent_like
    turns = record["turns"]
    agent_said = [t for t in turns if t["role"] == "agent" and t["kind"] != "supervisor"
                  and taken + 0.05 < t["start_s"] < released]
    assert agent_said == [], agent_said
    cut = [t for t in turns if t["role"] == "agent" and t["start_s"] < taken <= t["end_s"] + 0.3]
    assert all(t["interrupted"] and t["end_s"] <= taken + 0.2 for t in cut), cut
    # the caller spoke meanwhile: kept in the record, not answered
    start, end = result["caller"]["during"]
    (during_turn,) = [t for t in turns if t["role"] == "caller" and start - 1 <= t["start_s"] <= end]
    assert during_turn["intent"] == "supervised" and during_turn["text"]
    # released: the agent speaks again at once
    back = [t for t in turns if t["role"] == "agent" and t["start_s"] >= released - 0.05]
    assert back and back[0]["kind"] == "notice" and back[0]["start_s"] - released < 2.0, back
    after = [r for r in between(rows, released + 0.3, released + 4.0) if r[1] > 0.01 and r[2] < 0.5]
    assert len(after) >= 5, "the phone did not hear the agent after the release"


def test_the_recording_has_the_caller_left_and_the_agent_and_supervisor_right(run):
    out, result = run
    audio, rate = sf.read(io.BytesIO((out / "recording.wav").read_bytes()), dtype="float32", always_2d=True)
    assert audio.shape[1] == 2
    left, right = audio[:, 0], audio[:, 1]
    start, end = result["caller"]["first"]
    assert np.sqrt(np.mean(left[int((start + 0.5) * rate):int((end - 0.5) * rate)] ** 2)) > 0.01
    (held,) = result["record"]["supervision"]
    rows = windows(right, rate)
    tone = [r for r in between(rows, held["from_s"] + 0.5, held["to_s"] - 0.5) if r[1] > 0.003 and r[2] > 0.5]
    assert len(tone) >= 0.8 * (held["to_s"] - held["from_s"] - 1.0) / WINDOW_S


def test_metrics_count_the_calls_turns(run):
    from prometheus_client.parser import text_string_to_metric_families

    _, result = run
    families = {f.name: f for f in text_string_to_metric_families(result["metrics"])}
    # every series carries the worker that serves it (many workers, one Prometheus): present, then set aside
    assert all(s.labels.get("worker") for f in families.values() for s in f.samples)
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker"))): s.value
               for f in families.values() for s in f.samples}
    answered = [t for t in result["record"]["turns"]
                if t["role"] == "agent" and (t.get("latency_ms") or {}).get("voice_to_voice") is not None]
    v2v = samples[("voiceagent_turn_latency_seconds_count", (("stage", "voice_to_voice"),))]
    assert v2v == len(answered) and v2v >= 2
    sip_calls = [v for (name, labels), v in samples.items()
                 if name == "voiceagent_calls_total" and ("channel", "sip") in labels]
    assert sum(sip_calls) == 1
    assert samples[("voiceagent_calls_active", (("channel", "sip"),))] == 0


def test_the_server_stopped_cleanly(run):
    _, result = run
    assert result["server_exit"] == 0
