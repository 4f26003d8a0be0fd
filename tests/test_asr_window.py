"""ASR on a short window (speech + a little silence) instead of Whisper's padded 30 s, its silence
rule, the long-audio path, and the priority lock that puts final transcripts before partials."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from voiceagent.asr import LONG_AUDIO_S, SILENCE_DBFS, PrioritySlots, _loudest_dbfs, _strip_repeated_tail

from .conftest import SAMPLES

RATE = 16000

# Words each sample turn should come out with (order numbers as digits once digit groups are joined).
# Whisper's exact words on this borderline (synthetic, telephone-band) audio depend on the CPU's
# instruction set: CTranslate2's AVX-512, AVX2, AVX and generic kernels round differently, and
# "快递" comes out as "快避"/"快第" on some, "55120963" as "55-2020-1963" on others. So the tests
# assert a rate over the whole set, never one turn's words. Measured on a Xeon with
# CT2_FORCE_CPU_ISA=GENERIC/AVX/AVX2/AVX512 and the default: 26 to 28 of the 29 words (0.90-0.97).
KEY_WORDS = {
    # the raised-voice calls test emotion; whisper-base mishears the pitch-raised Mandarin turns
    ("en_raised_voice_8k.wav", 0): ["order"],
    ("en_raised_voice_8k.wav", 1): ["monday"],
    ("en_raised_voice_8k.wav", 2): ["tracking", "week"],
    ("en_raised_voice_8k.wav", 3): ["delivered"],
    ("zh_raised_voice_8k.wav", 0): ["订单"],
    ("zh_raised_voice_8k.wav", 1): ["周"],
    ("zh_raised_voice_8k.wav", 2): ["星期"],
    ("zh_raised_voice_8k.wav", 3): ["具体"],
    ("en_order_status_16k.wav", 0): ["38512074", "order"],
    ("en_return_8k.wav", 0): ["return", "dress"],
    ("en_return_8k.wav", 1): ["20241108"],
    ("en_size_16k.wav", 0): ["size", "running shoes"],
    ("en_angry_complaint_8k.wav", 0): ["broken", "three days"],
    ("en_human_16k.wav", 0): ["real person"],
    ("en_multi_turn_8k.wav", 0): ["parcel"],
    ("en_multi_turn_8k.wav", 1): ["55120963"],
    ("zh_order_status_16k.wav", 0): ["发货"],
    ("zh_return_8k.wav", 0): ["退货"],
    ("zh_size_16k.wav", 0): ["什么码"],
    ("zh_angry_8k.wav", 0): ["快递", "投诉"],
    ("zh_human_16k.wav", 0): ["人工客服"],
    ("zh_multi_turn_8k.wav", 0): ["快递"],
    ("zh_multi_turn_8k.wav", 1): ["55120963"],
}


@pytest.fixture(scope="module")
def asr(runtime):
    return runtime.asr


@pytest.fixture(scope="module")
def sample_turns(config, sample_scripts):
    """(file, turn index, language, audio) for every turn of the sample calls, cut by our VAD."""
    from voiceagent.audio import load_audio
    from voiceagent.transcription import speech_segments

    turns = []
    for name, script in sample_scripts.items():
        audio = load_audio(SAMPLES / name, RATE).samples
        cut = speech_segments(audio, config.vad)
        assert len(cut) == len(script["turns"]), name
        turns += [(name, i, script["language"], t.audio) for i, t in enumerate(cut)]
    return turns


def encoded_frames(asr) -> int:
    """Mel frames of the last window the encoder saw (the encoder cache keys on its shape)."""
    return asr._model.encode._last.key[0][-1]  # (this thread's)


def normalised(text: str) -> str:
    from voiceagent.textnorm import join_digit_groups

    return join_digit_groups(text.lower())


# At least this share of the key words over the whole set, and over each language's turns. With 29
# words, 0.8 allows 5 misses where 3 at most were seen on any ISA; a per-language floor of 0.5 catches
# one language collapsing (decoded in the other language, translated, or gibberish) that the
# whole-set rate would average away: Chinese has 12 of the words.
KEY_WORD_RATE = 0.8
KEY_WORD_RATE_PER_LANGUAGE = 0.5


def assert_key_word_rate(heard: dict[tuple[str, int], tuple[str, str]]) -> None:
    """`heard`: (file, turn) -> (language, transcript). Fails with the words missed."""
    found: dict[str, list[bool]] = {}
    missed = []
    for (name, i), (lang, text) in heard.items():
        for word in KEY_WORDS.get((name, i), []):
            hit = word in normalised(text)
            found.setdefault(lang, []).append(hit)
            if not hit:
                missed.append((name, i, word, text))
    every = [hit for hits in found.values() for hit in hits]
    assert len(every) >= 20, "too few key words to judge a rate"
    assert sum(every) / len(every) >= KEY_WORD_RATE, missed
    for lang, hits in found.items():
        assert sum(hits) / len(hits) >= KEY_WORD_RATE_PER_LANGUAGE, (lang, missed)


def assert_in_its_script(text: str, lang: str) -> None:
    """Chinese turns come out as Chinese characters, English ones as Latin words (any ISA)."""
    if lang == "zh":
        assert sum("\u4e00" <= c <= "\u9fff" for c in text) >= 2, text
    else:
        assert len(re.findall(r"[A-Za-z]+", text)) >= 2 and not re.search(r"[\u4e00-\u9fff]", text), text


def test_sample_turns_decode_on_a_short_window_with_their_key_words(asr, sample_turns):
    heard = {}
    for name, i, lang, audio in sample_turns:
        result = asr.transcribe(audio, lang, check_switch=True)
        assert result.language == lang, (name, i, result.language_scores)  # its own language: no switch
        assert encoded_frames(asr) < 3000 and encoded_frames(asr) % 100 == 0  # whole seconds, not 30 s
        assert_in_its_script(result.text, lang)
        heard[(name, i)] = (lang, result.text)
        duration = len(audio) / RATE
        assert result.segments and all(0 <= s.start <= s.end <= duration + 1e-6 for s in result.segments)
        if lang == "zh":
            assert "訂" not in result.text and "貨" not in result.text  # kept Simplified
            assert " " not in result.text
    assert set(heard) == set(KEY_WORDS)
    assert_key_word_rate(heard)


def test_language_is_detected_right_on_every_sample_turn(asr, sample_turns):
    for name, i, lang, audio in sample_turns:
        detected, prob = asr.detect_language(audio)
        assert detected == lang and prob > 0.5, (name, i, detected, prob)
        result = asr.transcribe(audio)  # detection and decode share one encoded window
        assert result.language == lang and result.text, (name, i)


def test_a_turn_plainly_in_another_language_than_the_calls_is_decoded_in_its_own(asr, sample_turns):
    """The call's language is a hint: a caller who switches is heard in the new language."""
    import dataclasses

    long_turns = [t for t in sample_turns if len(t[3]) / RATE >= 1.5]
    assert len(long_turns) >= 10
    heard = {}
    for name, i, lang, audio in long_turns:
        other = "en" if lang == "zh" else "zh"
        result = asr.transcribe(audio, other, check_switch=True)
        assert result.language == lang and result.language_probability >= 0.9, (name, i, result)
        assert_in_its_script(result.text, lang)  # heard in its own language, not translated into the hint's
        heard[(name, i)] = (lang, result.text)
    assert_key_word_rate(heard)
    # a pinned language (no check asked for), or switching off: the call's language always wins
    name, i, lang, audio = long_turns[0]
    other = "en" if lang == "zh" else "zh"
    assert asr.transcribe(audio, other).language == other
    saved, asr.config = asr.config, dataclasses.replace(asr.config, switch_probability=1.0)
    try:
        assert asr.transcribe(audio, other, check_switch=True).language == other
    finally:
        asr.config = saved


@pytest.mark.parametrize("language", ["en", "zh", None])
def test_silence_and_low_noise_give_no_words(asr, language):
    rng = np.random.default_rng(7)
    quiet = [np.zeros(RATE, np.float32), np.zeros(3 * RATE, np.float32),
             rng.normal(0, 0.001, 2 * RATE).astype(np.float32), rng.normal(0, 0.002, 5 * RATE).astype(np.float32)]
    for audio in quiet:
        result = asr.transcribe(audio, language)
        assert result.text == "" and result.segments == []
        if language is None:
            assert result.language_probability == 0.0  # nothing heard, no language to pin
    # Line noise above the level gate: the decoder's no-speech probability must reject it.
    for seconds in (1, 3, 8):
        noise = rng.normal(0, 0.01, seconds * RATE).astype(np.float32)
        assert _loudest_dbfs(noise) > SILENCE_DBFS
        result = asr.transcribe(noise, language)
        assert result.text == "" and result.language == (language or ""), (seconds, language)


def test_29_seconds_take_the_30_s_window_path(asr, sample_turns):
    audio = next(a for name, i, _, a in sample_turns if (name, i) == ("en_return_8k.wav", 0))
    long = np.concatenate([audio, np.zeros(int(29 * RATE) - len(audio), np.float32)])
    assert len(long) / RATE >= LONG_AUDIO_S
    result = asr.transcribe(long)
    assert encoded_frames(asr) == 3000
    assert result.language == "en" and "return" in result.text.lower() and "dress" in result.text.lower()
    assert result.duration_s == 29.0 and all(s.end <= 29.0 for s in result.segments)


def test_repeated_tail_is_collapsed():
    assert _strip_repeated_tail([9, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]) == [9, 1, 2, 3, 4]
    assert _strip_repeated_tail([1, 2, 1, 2, 1, 2]) == [1, 2, 1, 2, 1, 2]  # too short a unit to judge
    assert _strip_repeated_tail([5, 6, 7, 8, 9]) == [5, 6, 7, 8, 9]


def test_a_sentence_decoded_twice_comes_out_once(asr):
    model = asr._model
    tok = asr._setup(model, "en").tokenizer
    ts = tok.timestamp_begin
    tokens = ([ts] + tok.encode(" Hello, where is my parcel?") + [ts + 100, ts + 100]
              + tok.encode(" Hello, where is my parcel?") + [ts + 200])
    segs = asr._segments(tokens, tok, 4.5)
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 2.0, "Hello, where is my parcel?")]


def test_english_only_model_decodes_english_turns(config, sample_turns):
    from dataclasses import replace

    from voiceagent.asr import WhisperASR
    from voiceagent.provision import resolve

    if resolve("whisper-tiny-en", "asr") is None:
        pytest.skip("whisper-tiny-en is not installed (optional model)")
    asr = WhisperASR(replace(config.asr, english_model="whisper-tiny-en"))
    assert not asr._english.model.is_multilingual
    for name, i, lang, audio in sample_turns:
        if (name, i) not in {("en_return_8k.wav", 1), ("en_human_16k.wav", 0), ("zh_return_8k.wav", 0)}:
            continue
        result = asr.transcribe(audio)  # detected on the multilingual model, English decoded by tiny.en
        assert result.language == lang
        for word in KEY_WORDS[(name, i)]:
            assert word in normalised(result.text), (name, result.text)
    assert asr.transcribe(np.zeros(RATE, np.float32), "en").text == ""


# -- priority slots (no models) -------------------------------------------------------------------

def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_urgent_waiter_goes_before_earlier_non_urgent_ones():
    lock = PrioritySlots()
    order: list[str] = []

    def worker(name: str, urgent: bool) -> None:
        with lock.hold(urgent):
            order.append(name)

    lock.acquire()  # a decode in progress
    threads = []
    for name, urgent in [("partial-1", False), ("partial-2", False), ("final-1", True), ("partial-3", False),
                         ("final-2", True)]:
        t = threading.Thread(target=worker, args=(name, urgent))
        t.start()
        threads.append(t)
        _wait_until(lambda n=len(threads): lock.waiting == n)  # queued in this order
    lock.release()
    for t in threads:
        t.join(5)
    assert order == ["final-1", "final-2", "partial-1", "partial-2", "partial-3"]
    assert lock.waiting == 0


def test_priority_slots_are_free_when_uncontended_and_refuse_a_stray_release():
    lock = PrioritySlots()
    with lock.hold(urgent=False):
        pass
    with lock.hold():
        pass
    with pytest.raises(RuntimeError):
        lock.release()


def test_two_slots_run_two_decodes_at_once_and_queue_the_third_by_priority():
    slots = PrioritySlots(2)
    slots.acquire()
    slots.acquire(urgent=False)  # two decodes in progress, neither waiting
    assert slots.waiting == 0
    order: list[str] = []

    def worker(name: str, urgent: bool) -> None:
        with slots.hold(urgent):
            order.append(name)

    threads = []
    for name, urgent in [("partial", False), ("final", True)]:
        t = threading.Thread(target=worker, args=(name, urgent))
        t.start()
        threads.append(t)
        _wait_until(lambda n=len(threads): slots.waiting == n)
    slots.release()  # one slot frees: the final goes first
    _wait_until(lambda: order == ["final"] or len(order) > 1)
    assert order[0] == "final"
    slots.release()
    for t in threads:
        t.join(5)
    assert order == ["final", "partial"] and slots.waiting == 0
    with pytest.raises(RuntimeError):
        slots.release()
    with pytest.raises(ValueError):
        PrioritySlots(0)


def test_an_echo_of_the_initial_prompt_is_not_taken_for_the_caller():
    from voiceagent.asr import _echoes_prompt
    from voiceagent.config import AsrConfig

    prompt = AsrConfig().zh_initial_prompt
    # what whisper-base wrote for a short "嗯" and "好的" spoken by the espeak voice
    assert _echoes_prompt("语：订单号、发货、退款、尺码、", prompt)
    assert _echoes_prompt("号、投。", prompt)
    # a caller saying one of the prompt's words, or more than them, is heard
    assert not _echoes_prompt("退货。", prompt)
    assert not _echoes_prompt("我要退货、退款", prompt)
    assert not _echoes_prompt("订单号是38512074", prompt)
    assert not _echoes_prompt("订单号、发货", "")
