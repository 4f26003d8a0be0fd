"""The local LLM backend really generates, and the dialog keeps its words only when they are safe."""

from voiceagent.config import LlmConfig
from voiceagent.dialog.engine import DialogState
from voiceagent.llm import LlamaCppLLM


def test_llama_cpp_streams_tokens():
    llm = LlamaCppLLM(LlmConfig(max_tokens=12))
    pieces = list(llm.stream([{"role": "user", "content": "Say hello."}]))
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
    finally:
        engine.llm = saved
