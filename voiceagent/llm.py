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
from .errors import ModelMissing
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
                                                  n_threads=config.n_threads, verbose=False)
                self.name = f"llama-cpp:{config.model}"
                self._lock = threading.Lock()
                return
            raise ModelMissing(f"LLM {config.model!r} not found (a manifest id or a path to a .gguf file)")
        gguf = next(iter(sorted(path.glob("*.gguf"))), None) if path.is_dir() else path
        if gguf is None:
            raise ModelMissing(f"LLM {config.model!r}: no .gguf file in {path}")
        self._llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=config.n_threads, verbose=False)
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


class OpenAICompatibleLLM:
    def __init__(self, config: LlmConfig):
        import httpx

        self.config = config
        self.name = f"openai:{config.model}@{config.base_url}"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.Client(base_url=config.base_url.rstrip("/"), headers=headers, timeout=config.timeout_s)

    def stream(self, messages: list[Message], max_tokens: int | None = None) -> Iterator[str]:
        body = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens or self.config.max_tokens,
            "temperature": self.config.temperature,
            "stream": True,
        }
        with self._client.stream("POST", "/chat/completions", json=body) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                delta = json.loads(payload)["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta


def create_llm(config: LlmConfig) -> LanguageModel | None:
    if config.backend == "none":
        return None
    if config.backend == "openai":
        return OpenAICompatibleLLM(config)
    if config.backend == "llama-cpp":
        return LlamaCppLLM(config)
    raise ModelMissing(f"unknown LLM backend {config.backend!r} (use llama-cpp, openai or none)")
