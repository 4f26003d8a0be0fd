"""The operator side of a running server, in process with the real models: every operator route
refuses a request without an operator; an angry recorded caller who threatens to go to a lawyer and
the press raises alerts the console reads; /metrics counts that call's turns; the call's history
row, live feed and recording are kept. (Takeover and listen-in with a real phone and browser:
tests/test_console_call.py.)"""

from __future__ import annotations

import asyncio
import copy
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from voiceagent.audio import load_audio
from voiceagent.audio.resample import resample
from voiceagent.engine import Channel, SessionOptions, run_call
from voiceagent.legs import FileLeg
from voiceagent.server import create_app

from .conftest import SAMPLES

THREAT = "I am calling my lawyer, and I will tell the newspapers and the regulator about your shop."


@pytest.fixture()
def app(config, runtime, tmp_path):
    cfg = copy.deepcopy(config)
    cfg.store.db = str(tmp_path / "calls.db")
    cfg.recordings.dir = str(tmp_path / "recordings")
    cfg.call.greeting = False
    app = create_app(cfg, runtime=runtime)
    with TestClient(app) as client:
        app.state.client = client
        yield app


def _routes(routes):
    """Every route, with those of included routers (FastAPI keeps those apart)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


def test_every_operator_route_refuses_without_an_operator(app):
    client = app.state.client
    checked = 0
    for route in _routes(app.routes):
        path = getattr(route, "path", "")
        if not (path.startswith("/api/ops") or path == "/metrics" or path in ("/api/handoffs", "/api/calls/{call_id}")):
            continue
        if path == "/api/ops/login":
            continue
        url = re.sub(r"\{[^}]+\}", "x1", path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method in ("HEAD", "OPTIONS"):
                continue
            r = client.request(method, url, json={} if method != "GET" else None)
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            # a token that was never issued, and a revoked one, are no better
            assert client.request(method, url, headers={"Authorization": "Bearer va_nope"}).status_code == 401
            checked += 1
    assert checked >= 20
    for old in ("/api/handoffs", "/api/handoffs/x1", "/api/calls/x1", "/api/asterisk", "/api/webrtc"):
        assert client.get(old, follow_redirects=False).status_code == 401, old
    token = app.state.auth.create_token("ci", "agent")
    assert client.get("/api/ops/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    app.state.auth.revoke_token("ci")
    assert client.get("/api/ops/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # an agent may watch but not take a call over or acknowledge alerts
    agent = app.state.auth.create_token("watcher", "agent")
    r = client.post("/api/ops/calls/x1/takeover", json={"sdp": "v=0" * 5, "type": "offer"},
                    headers={"Authorization": f"Bearer {agent}"})
    assert r.status_code == 403


def _caller_audio(runtime) -> tuple[np.ndarray, int]:
    """The recorded angry complaint, a pause, then a threat in the same voice family (piper)."""
    rate = 16000
    angry = load_audio(SAMPLES / "en_angry_complaint_8k.wav", rate).samples
    chunks = [c for c in runtime.tts.voice("en").synthesize(THREAT)]
    threat = np.concatenate([resample(c.samples, c.sample_rate, rate) for c in chunks])
    pause = np.zeros(int(7.0 * rate), np.float32)
    return np.concatenate([np.zeros(rate // 2, np.float32), angry, pause, threat, pause]).astype(np.float32), rate


def test_an_angry_caller_who_threatens_raises_alerts_and_the_call_is_counted(app, runtime):
    client = app.state.client
    token = app.state.auth.create_token("ci", "supervisor")
    auth = {"Authorization": f"Bearer {token}"}
    samples, rate = _caller_audio(runtime)
    leg = FileLeg(samples, rate, realtime=False)
    record = asyncio.run(run_call(runtime, leg, SessionOptions(language="en", greeting=False), Channel("file"),
                                  app.state.store))
    callers = [t for t in record.turns if t.role == "caller"]
    assert len(callers) >= 2, [t.text for t in callers]
    assert app.state.alerts.flush(10)
    alerts = client.get("/api/ops/alerts", headers=auth).json()
    mine = [a for a in alerts if a.get("call_id") == record.call_id]
    kinds = {a["kind"]: a["level"] for a in mine}
    assert "threat" in kinds and kinds["threat"] >= 3, (alerts, [t.text for t in callers])
    assert all(1 <= a["level"] <= 4 and a["message"] for a in mine)
    # acknowledged by a supervisor: no longer open
    alert_id = next(a["id"] for a in mine if a["kind"] == "threat")
    assert client.post(f"/api/ops/alerts/{alert_id}/ack", headers=auth).status_code == 200
    assert alert_id not in [a["id"] for a in client.get("/api/ops/alerts", headers=auth).json()]
    # the call in the metrics, the history and the record
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics", headers=auth).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert all(s.labels.get("worker") == app.state.metrics.worker for s in samples)  # many workers, one Prometheus
    samples_by = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker"))): s.value
                  for s in samples}
    answered = [t for t in record.turns if t.role == "agent" and t.latency_ms.get("voice_to_voice") is not None]
    assert samples_by[("voiceagent_turn_latency_seconds_count", (("stage", "voice_to_voice"),))] == len(answered)
    assert record.call_id not in text  # labels are bounded: no call ids
    found = client.get("/api/ops/calls", params={"intent": callers[0].intent}, headers=auth).json()
    assert record.call_id in [c["call_id"] for c in found["calls"]]
    stored = client.get(f"/api/ops/calls/{record.call_id}", headers=auth).json()
    assert stored["call_id"] == record.call_id and stored["turns"]
