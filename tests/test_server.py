"""`voiceagent serve`: health once models are loaded, the chat API, clean shutdown on SIGTERM."""

import signal
import socket
import subprocess
import time

import httpx
import pytest

from .conftest import VOICEAGENT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen([VOICEAGENT, "serve", "--http", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).json().get("status") == "ok":
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server never became healthy")
    yield base, proc
    if proc.poll() is None:
        proc.kill()


def test_chat_uses_the_dialog_engine_with_session_state(server):
    base, _ = server
    first = httpx.post(base + "/api/chat", json={"session_id": "s1", "text": "where is my parcel?"}, timeout=30).json()
    assert first["intent"] == "logistics.track" and "order number" in first["reply"]
    second = httpx.post(base + "/api/chat", json={"session_id": "s1", "text": "it is 20241108"}, timeout=30).json()
    # an anonymous chat: the order's details only after the account phone's last four digits
    assert second["slots"]["order_id"] == "20241108" and ("last four digits" in second["reply"]
                                                          or "couldn't find" in second["reply"])
    other = httpx.post(base + "/api/chat", json={"session_id": "s2", "text": "转人工"}, timeout=30).json()
    assert other["handoff"] is True and other["emotion"] == "neutral"


def test_bad_requests_get_clear_errors(server):
    base, _ = server
    missing = httpx.post(base + "/api/chat", json={"text": "hi"}, timeout=10)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["session_id"]
    broken = httpx.post(base + "/api/chat", content=b"{not json", timeout=10, headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    too_long = httpx.post(base + "/api/chat", json={"session_id": "s", "text": "啊" * 10_001}, timeout=10)
    assert too_long.status_code == 413  # [security] max_chat_chars
    # the server is still there for the next caller
    assert httpx.post(base + "/api/chat", json={"session_id": "s3", "text": "你好"}, timeout=30).status_code == 200
    assert httpx.get(base + "/", timeout=10).status_code == 200


def test_sigterm_stops_cleanly(server):
    base, proc = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
