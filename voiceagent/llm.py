"""Language model backends: a local GGUF through llama-cpp-python (default), or any
OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted Qwen...), by configuration.

Both stream tokens, so the reply can be cut into clauses and spoken while the rest is generated.
The LLM phrases and chats; facts come from the shop's tools (see dialog/engine.py).
"""

from __future__ import annotations

import json
import threading
from typing import Iterator, Protocol

from .config import LlmConfig
from .errors import LlmUnavailable, ModelMissing
from .provision import resolve

Message = dict[str, str]


class LanguageModel(Protocol):
    name: str

    def stream(self, messages: list[Message], max_tokens: int | None = None) -> Iterator[str]: ...


class LlamaCppLLM:
    def __init__(self, config: LlmConfig):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelMissing("llama-cpp-python is not installed; run: make setup (or pip install llama-cpp-python)") from None
        self.config = config
        path = resolve(config.model, "llm")
        if path is None:
            if "/" in config.model and not config.model.endswith(".gguf"):
                # "owner/repo" on a model hub (operators with network access)
                self._llm = Llama.from_pretrained(config.model, filename="*.gguf", n_ctx=2048,
                                                  n_threads=config.n_threads, n_threads_batch=config.n_threads,
                                                  verbose=False)
                self.name = f"llama-cpp:{config.model}"
                self._lock = threading.Lock()
                return
            raise ModelMissing(f"LLM {config.model!r} not found (a manifest id or a path to a .gguf file)")
        gguf = next(iter(sorted(path.glob("*.gguf"))), None) if path.is_dir() else path
        if gguf is None:
            raise ModelMissing(f"LLM {config.model!r}: no .gguf file in {path}")
        # n_threads_batch too (llama-cpp-python's default is every core): the prompt is evaluated in a
        # batch, and llama.cpp's spinning threads crawl (seconds, not milliseconds) on a busy machine.
        self._llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=config.n_threads,
                          n_threads_batch=config.n_threads, verbose=False)
        self.name = f"llama-cpp:{gguf.name}"
        self._lock = threading.Lock()  # one llama context: one generation at a time

    def stream(self, messages: list[Message], max_tokens: int | None = None) -> Iterator[str]:
        with self._lock:
            for chunk in self._llm.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens or self.config.max_tokens,
                temperature=self.config.temperature,
                stream=True,
            ):
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta

    def close(self) -> None:
        with self._lock:
            close = getattr(self._llm, "close", None)
            if close is not None:
                close()


class OpenAICompatibleLLM:
    """Streams /chat/completions (server-sent events) from any OpenAI-compatible endpoint.

    Failures reach the caller as one clear `LlmUnavailable` (endpoint down, too slow, an HTTP error
    with its status, a stream cut short), never as a raw httpx traceback. `timeout_s` bounds the
    connection and each wait for the next piece, not the whole reply. Lines that are not valid
    events (comments, keep-alives, malformed JSON) are skipped.
    """

    def __init__(self, config: LlmConfig):
        import httpx

        self.config = config
        self._base_url = config.base_url.rstrip("/")
        self.name = f"openai:{config.model}@{self._base_url}"
        headers = {"Accept": "text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        timeout = httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 5.0))
        self._client = httpx.Client(base_url=self._base_url, headers=headers, timeout=timeout)

    def stream(self, messages: list[Message], max_tokens: int | None = None) -> Iterator[str]:
        import httpx

        body = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens or self.config.max_tokens,
            "temperature": self.config.temperature,
            "stream": True,
        }
        where = f"LLM endpoint {self._base_url}"
        for attempt in (1, 2):
            pieces = 0
            try:
                with self._client.stream("POST", "/chat/completions", json=body) as resp:
                    for piece in self._read(resp, where):
                        pieces += 1
                        yield piece
                return
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
                # A kept-alive connection that the server had dropped (it restarted, or aborted the
                # previous reply): nothing reached the caller yet, so one more try on a fresh connection
                # is invisible and safe (generating has no side effects).
                if pieces == 0 and attempt == 1:
                    continue
                raise LlmUnavailable(f"{where} failed: {_reason(e)}") from None
            except httpx.ConnectError as e:
                raise LlmUnavailable(f"{where} is unreachable ({_reason(e)})") from None
            except httpx.ConnectTimeout:
                raise LlmUnavailable(f"{where} is unreachable (no connection within "
                                     f"{min(self.config.timeout_s, 5.0):g} s)") from None
            except httpx.TimeoutException:
                raise LlmUnavailable(f"{where} did not answer within {self.config.timeout_s:g} s") from None
            except httpx.HTTPError as e:
                raise LlmUnavailable(f"{where} failed: {_reason(e)}") from None

    @staticmethod
    def _read(resp, where: str) -> Iterator[str]:
        if resp.status_code >= 400:
            resp.read()
            raise LlmUnavailable(f"{where} answered HTTP {resp.status_code}: {_error_text(resp)}",
                                 status=resp.status_code)
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            resp.read()  # a server that ignored stream=true: one JSON answer
            text = _message_text(resp)
            if text is None:
                raise LlmUnavailable(f"{where} answered neither events nor a chat completion: "
                                     f"{resp.text[:200]!r}", status=resp.status_code)
            if text:
                yield text
            return
        finished = done = False
        for line in resp.iter_lines():  # read to the end even after [DONE]: the connection is then reused
            if done or not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, event:/id: fields
            payload = line[5:].strip()
            if payload == "[DONE]":
                finished = done = True
                continue
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue  # a malformed event: skip it, keep the reply
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                err = chunk["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                raise LlmUnavailable(f"{where} failed mid-reply: {str(msg)[:200]}")
            choices = chunk.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue  # e.g. a usage-only chunk
            choice = choices[0]
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                yield content
            if choice.get("finish_reason"):
                finished = True
        if not finished:
            raise LlmUnavailable(f"{where} ended the reply stream early (no finish_reason nor [DONE]; "
                                 "a prompt longer than its context window does this)")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAICompatibleLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text[:200]


def _error_text(resp) -> str:
    """The server's own error message, from OpenAI's {"error": {"message": ...}} or FastAPI's {"detail": ...}."""
    try:
        data = resp.json()
    except ValueError:
        return " ".join(resp.text.split())[:200] or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err:
            return str(err)[:200]
    return str(data)[:200]


def _message_text(resp) -> str | None:
    try:
        content = resp.json()["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else ("" if content is None else None)


def create_llm(config: LlmConfig) -> LanguageModel | None:
    if config.backend == "none":
        return None
    if config.backend == "openai":
        return OpenAICompatibleLLM(config)
    if config.backend == "llama-cpp":
        return LlamaCppLLM(config)
    raise ModelMissing(f"unknown LLM backend {config.backend!r} (use llama-cpp, openai or none)")


class LocalLlamaServer:
    """`python -m llama_cpp.server` serving a GGUF as a child process on a free loopback port: a real
    OpenAI-compatible endpoint to drive OpenAICompatibleLLM against (tests, benchmarks/bench_llm.py).

        with LocalLlamaServer(gguf, log=fh) as base_url: ...   # "http://127.0.0.1:PORT/v1"
    """

    def __init__(self, gguf, threads: int = 1, n_ctx: int = 2048, log=None, start_timeout_s: float = 120.0):
        self.gguf, self.threads, self.n_ctx, self.log, self.start_timeout_s = gguf, threads, n_ctx, log, start_timeout_s
        self.proc = None
        self.base_url = ""

    def __enter__(self) -> str:
        import socket
        import subprocess
        import sys
        import time

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # n_threads_batch too: llama.cpp's spinning threads crawl when the cores are shared
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
             "--n_threads_batch", str(self.threads)],
            stdout=self.log if self.log is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise LlmUnavailable(f"llama_cpp.server exited with {self.proc.returncode} "
                                     "(is llama_cpp_python[server] installed?)")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return self.base_url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LlmUnavailable(f"llama_cpp.server did not answer /v1/models in {self.start_timeout_s:g} s")
            time.sleep(0.2)

    def stop(self) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
