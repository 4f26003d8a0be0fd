"""Test doubles for the call engine (fake VAD, ASR, TTS, LLM and dialog): importable by tests,
benchmarks and evals. The product never imports this package."""

from .fakes import (AsrCall, CallerScript, FakeASR, FakeDialog, FakeLLM, FakeRuntime, FakeTTS, FakeVAD, FakeVoice,
                    fake_runtime, reply)

__all__ = ["AsrCall", "CallerScript", "FakeASR", "FakeDialog", "FakeLLM", "FakeRuntime", "FakeTTS", "FakeVAD",
           "FakeVoice", "fake_runtime", "reply"]
