"""The local LLM backend really generates, and the dialog keeps its words only when they are safe."""

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from voiceagent.config import LlmConfig
from voiceagent.dialog.engine import DialogState
from voiceagent.errors import LlmUnavailable, VoiceAgentError
from voiceagent.llm import LlamaCppLLM, LocalLlamaServer, OpenAICompatibleLLM, create_llm
from voiceagent.provision import resolve


def test_llama_cpp_streams_tokens():
    llm = LlamaCppLLM(LlmConfig(max_tokens=12, n_threads=1))  # one thread: steady on a shared 2-core machine
    try:
        pieces = list(llm.stream([{"role": "user", "content": "Say hello."}]))
    finally:
        llm.close()
    assert len(pieces) >= 2 and "".join(pieces).strip()


class ScriptedLLM:
    name = "scripted"

    def __init__(self, text):
        self.text = text

    def stream(self, messages, max_tokens=None):
        for word in self.text.split(" "):  # token-like pieces, leading spaces and all
            yield " " + word


def test_llm_small_talk_is_checked_before_use(dialog_runtime):
    engine = dialog_runtime.dialog
    saved = engine.llm
    try:
        engine.llm = ScriptedLLM("The weather today is sunny and 25 degrees.")
        reply = engine.respond("what's the weather like?", DialogState(), "en")
        assert reply.source == "template" and "sunny" not in reply.text  # a fact nobody gave: dropped
        assert reply.llm_first_token_ms is not None
        engine.llm = ScriptedLLM("Hello! I'm happy to help with your order or a return.")
        reply = engine.respond("hello there", DialogState(), "en")
        assert reply.source == "llm" and reply.text.startswith("Hello!")
        reply = engine.respond("你好", DialogState(), "zh")  # the embedded LLM speaks no Chinese
        assert reply.source == "template"
        # words the keyword screen lets through, but the grounding checker does not: a product and a
        # policy window nobody cited
        engine.llm = ScriptedLLM("Hi! Our cashmere sweater can be returned within thirty days, happy to help.")
        reply = engine.respond("hi, how are you doing", DialogState(), "en")
        assert reply.source == "template" and "cashmere" not in reply.text.lower()
    finally:
        engine.llm = saved


# -- the OpenAI-compatible backend against a REAL llama_cpp.server ----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gguf() -> Path:
    path = resolve("smollm2-135m", "llm")
    return next(iter(sorted(path.glob("*.gguf")))) if path.is_dir() else path


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` serving the offline SmolLM2 GGUF on a free loopback port (one thread:
    llama.cpp's spinning threads crawl when the 2 cores are shared with other work)."""
    try:
        import llama_cpp.server.app  # noqa: F401  (the [server] extra: fastapi, sse-starlette, ...)
    except ImportError as e:
        pytest.skip(f"llama_cpp.server cannot be imported ({e}); install llama_cpp_python[server]")
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as log:
        try:
            with LocalLlamaServer(_gguf(), threads=1, n_ctx=1024, log=log, start_timeout_s=60) as base:
                yield base
        except LlmUnavailable as e:  # it did not start: say why, with its own words
            pytest.fail(f"{e}:\n{log_path.read_text()[-2000:]}")


@pytest.fixture
def remote(llama_server):
    llm = create_llm(LlmConfig(backend="openai", base_url=llama_server, model="smollm2-135m", temperature=0.0,
                               max_tokens=24, timeout_s=30))
    yield llm
    llm.close()


def test_openai_backend_streams_from_llama_cpp_server(remote):
    assert isinstance(remote, OpenAICompatibleLLM) and remote.name.startswith("openai:smollm2-135m@")
    pieces = list(remote.stream([{"role": "user", "content": "Say hello to a customer."}], max_tokens=16))
    assert len(pieces) >= 3 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()


def test_openai_backend_respects_max_tokens(remote, tokenizer):
    messages = [{"role": "user", "content": "Count from one to fifty in words, separated by commas."}]
    short = list(remote.stream(messages, max_tokens=4))
    longer = list(remote.stream(messages, max_tokens=20))
    assert 1 <= len(short) <= 4  # one piece per token at most
    assert len(short) < len(longer) <= 20
    # roughly: the model's own tokenizer counts no more tokens than were asked for (+1 for a merge)
    assert len(tokenizer.tokenize("".join(longer).encode(), add_bos=False)) <= 21


def test_openai_backend_takes_a_conversation(remote):
    conversation = [{"role": "system", "content": "You are a polite shop assistant. Answer in one sentence."},
                    {"role": "user", "content": "Hello, can you help me with my order?"}]
    pieces = list(remote.stream(conversation, max_tokens=24))
    assert len(pieces) >= 3 and "".join(pieces).strip()


def test_openai_backend_matches_local_backend_greedy(remote):
    """Same GGUF, same chat template, greedy decoding: the two backends say the same thing."""
    messages = [{"role": "user", "content": "Say hello."}]
    local = LlamaCppLLM(LlmConfig(temperature=0.0, max_tokens=8, n_threads=1))
    try:
        assert "".join(remote.stream(messages, max_tokens=8)) == "".join(local.stream(messages))
    finally:
        local.close()


def test_llama_cpp_server_errors_are_clear(llama_server):
    # base_url without /v1: the real server answers 404 for /chat/completions
    with create_llm(LlmConfig(backend="openai", base_url=llama_server[:-3], timeout_s=10)) as llm:
        with pytest.raises(LlmUnavailable, match="HTTP 404") as err:
            list(llm.stream([{"role": "user", "content": "hi"}], max_tokens=4))
        assert err.value.status == 404
    # a prompt beyond the server's 1024-token context: the server answers 200, then ends the stream
    # empty or resets the connection; either way one clear error
    with create_llm(LlmConfig(backend="openai", base_url=llama_server, timeout_s=30)) as llm:
        with pytest.raises(LlmUnavailable, match="ended the reply stream early|failed: .*reset"):
            list(llm.stream([{"role": "user", "content": "word " * 1500}], max_tokens=4))
        # and the endpoint still works afterwards
        assert list(llm.stream([{"role": "user", "content": "Hi"}], max_tokens=4))


@pytest.fixture(scope="module")
def tokenizer():
    from llama_cpp import Llama

    vocab = Llama(model_path=str(_gguf()), vocab_only=True, verbose=False)
    yield vocab
    vocab.close()


# -- failure behaviour, against tiny local stubs (the success path above uses the real server) ------

class _Stub:
    """A one-route HTTP server on loopback: answers POST with a canned status, headers and body."""

    def __init__(self, status=200, body=b"", content_type="text/event-stream", delay_s=0.0):
        stub = self
        self.requests: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                stub.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(self.rfile.read(length) or b"null")})
                time.sleep(delay_s)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _sse(*events: str) -> bytes:
    return "".join(f"{e}\n\n" for e in events).encode()


def _delta(text: str, finish=None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def _openai(url: str, **kw) -> OpenAICompatibleLLM:
    return create_llm(LlmConfig(backend="openai", base_url=url, **kw))


def test_endpoint_down_raises_llm_unavailable():
    port = _free_port()  # nothing listens there now
    with _openai(f"http://127.0.0.1:{port}/v1", timeout_s=2) as llm:
        t0 = time.monotonic()
        down = rf"127\.0\.0\.1:{port}/v1 is unreachable \(connection refused\)"
        with pytest.raises(LlmUnavailable, match=down) as err:
            list(llm.stream([{"role": "user", "content": "hi"}]))
        assert time.monotonic() - t0 < 2 and err.value.status is None
        assert err.value.__cause__ is None and err.value.__suppress_context__  # no httpx traceback chained
        assert isinstance(err.value, VoiceAgentError)


@pytest.mark.parametrize("status, body, text", [
    (401, b'{"error": {"message": "Invalid API key", "type": "invalid_request_error"}}', "Invalid API key"),
    (503, b"upstream overloaded", "upstream overloaded"),
    (500, b'{"detail": "Internal error"}', "Internal error"),
])
def test_http_error_raises_llm_unavailable_with_status(status, body, text):
    with _Stub(status, body, content_type="application/json") as stub, _openai(stub.url) as llm:
        with pytest.raises(LlmUnavailable, match=f"HTTP {status}: {text}") as err:
            list(llm.stream([{"role": "user", "content": "hi"}]))
        assert err.value.status == status


def test_slow_endpoint_times_out_clearly():
    with _Stub(200, _sse(_delta("late"), "data: [DONE]"), delay_s=1.5) as stub, _openai(stub.url, timeout_s=0.3) as llm:
        t0 = time.monotonic()
        with pytest.raises(LlmUnavailable, match=r"did not answer within 0\.3 s"):
            list(llm.stream([{"role": "user", "content": "hi"}]))
        assert time.monotonic() - t0 < 1.4


def test_malformed_events_are_skipped_and_api_key_is_sent():
    body = _sse(": keep-alive comment", _delta("Hello"), "data: {not json", "event: ping", "data: [1, 2]",
                'data: {"choices": []}', 'data: {"choices": [{"delta": {}}]}', "data:" + json.dumps(
                    {"choices": [{"delta": {"content": " there"}}]}), _delta("!", finish="stop"), "data: [DONE]")
    with _Stub(200, body) as stub, _openai(stub.url, api_key="sk-test-123", model="qwen", max_tokens=7) as llm:
        assert list(llm.stream([{"role": "user", "content": "hi"}])) == ["Hello", " there", "!"]
    [req] = stub.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    assert req["body"]["model"] == "qwen" and req["body"]["stream"] is True and req["body"]["max_tokens"] == 7


def test_no_api_key_sends_no_authorization_header():
    with _Stub(200, _sse(_delta("ok", finish="stop"))) as stub, _openai(stub.url) as llm:
        assert list(llm.stream([{"role": "user", "content": "hi"}])) == ["ok"]  # finish_reason without [DONE]: fine
    assert "Authorization" not in stub.requests[0]["headers"]


def test_error_event_and_truncated_stream_raise():
    error = 'data: {"error": {"message": "model overloaded"}}'
    with _Stub(200, _sse(_delta("Hel"), error)) as stub, _openai(stub.url) as llm:
        with pytest.raises(LlmUnavailable, match="failed mid-reply: model overloaded"):
            list(llm.stream([{"role": "user", "content": "hi"}]))
    with _Stub(200, _sse(_delta("Hel"))) as stub, _openai(stub.url) as llm:  # closed before finish/[DONE]
        with pytest.raises(LlmUnavailable, match="ended the reply stream early"):
            list(llm.stream([{"role": "user", "content": "hi"}]))


def test_non_streaming_answer_is_accepted():
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}}]}).encode()
    with _Stub(200, body, content_type="application/json") as stub, _openai(stub.url) as llm:
        assert list(llm.stream([{"role": "user", "content": "hi"}])) == ["Hi there."]


def test_dialog_falls_back_to_template_when_endpoint_is_down(dialog_runtime):
    engine = dialog_runtime.dialog
    saved = engine.llm
    try:
        engine.llm = _openai(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=1)
        reply = engine.respond("hello there", DialogState(), "en")
        assert reply.source == "template" and reply.text
    finally:
        engine.llm.close()
        engine.llm = saved
