"""Answering-machine detection: the sans-IO core on synthetic audio with given speech probabilities,
the drivers with fake VAD/ASR, and a few real answers through Silero and Whisper."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from voiceagent.campaigns.amd import (
    AmdConfig,
    AnsweringMachineDetector,
    detect,
    is_greeting_only,
    machine_phrase,
    wait_for_greeting_end,
)

RATE = 16000
CHUNK = 512  # Silero's chunk


def noise(seconds: float, level: float = 0.05, seed: int = 0) -> np.ndarray:
    """Stands in for speech: broadband, never a pure tone."""
    return np.random.default_rng(seed).normal(0, level, int(seconds * RATE)).astype(np.float32)


def sine(freq: float, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return noise(seconds, 0.0005, seed=1)


def feed(detector: AnsweringMachineDetector, audio: np.ndarray, prob: float):
    """Feeds VAD-sized chunks all with one speech probability; the first decision, or None."""
    for i in range(0, len(audio) - CHUNK + 1, CHUNK):
        decision = detector.feed(audio[i : i + CHUNK], prob)
        if decision is not None:
            return decision
    return None


def test_short_greeting_then_silence_is_a_person_quickly():
    d = AnsweringMachineDetector()
    assert feed(d, quiet(0.5), 0.0) is None
    assert feed(d, noise(0.5), 0.95) is None  # "喂？"
    decision = feed(d, quiet(3.0), 0.02)
    assert decision is not None and decision.verdict == "human" and decision.reason == "short_greeting"
    assert decision.at_s <= 0.5 + 0.5 + d.config.human_silence_s + 0.1


def test_continuous_speech_is_a_machine():
    d = AnsweringMachineDetector()
    feed(d, quiet(0.4), 0.0)
    decision = feed(d, noise(6.0), 0.9)
    assert decision is not None and decision.verdict == "machine" and decision.reason == "long_greeting"
    assert decision.at_s <= 0.4 + d.config.machine_min_speech_s + 0.1


def test_greeting_words_give_more_time_before_long_greeting():
    d = AnsweringMachineDetector()
    feed(d, quiet(0.3), 0.0)
    assert feed(d, noise(1.3), 0.9) is None
    assert d.words_request() is not None
    assert d.words("喂，你好，哪位啊？", "zh") is None
    decision = feed(d, noise(6.0, seed=2), 0.9)
    assert decision.reason == "long_greeting"
    assert decision.at_s >= 0.3 + d.config.machine_min_speech_s + d.config.greeting_extra_s - 0.1


@pytest.mark.parametrize("freq", [1000.0, 450.0, 1400.0])
def test_a_beep_is_a_machine(freq):
    d = AnsweringMachineDetector()
    feed(d, quiet(0.6), 0.0)
    decision = feed(d, sine(freq, 0.4), 0.3)
    assert decision is not None and decision.verdict == "machine" and decision.reason == "beep"
    assert decision.at_s <= 0.6 + 0.25


def test_speech_like_sound_and_short_blips_are_no_beep():
    d = AnsweringMachineDetector()
    assert feed(d, noise(0.5), 0.9) is None
    # a 60 ms tone is too short for a beep; a tone outside 400-2000 Hz is no beep
    assert feed(d, np.concatenate([sine(1000, 0.06), noise(0.2, seed=3), sine(200, 0.5), noise(0.2, seed=4)]), 0.9) is None


@pytest.mark.parametrize("text,reason", [
    ("您拨打的电话已关机", "announcement_words"),
    ("您播打的电话以关机。", "announcement_words"),  # as Whisper mishears it
    ("您拨打的电话暂时无法接通，请稍后再拨", "announcement_words"),
    ("您拨打的号码是空号", "announcement_words"),
    ("The number you have dialed is not in service.", "announcement_words"),
    ("We're sorry, your call cannot be completed as dialed", "announcement_words"),
    ("请在提示音后留言", "voicemail_words"),
    ("Hi, you've reached Anna, leave a message after the beep", "voicemail_words"),
    ("Please leave a message after the tone", "voicemail_words"),
    ("This is John's voicemail", "voicemail_words"),
])
def test_machine_words_are_a_machine(text, reason):
    d = AnsweringMachineDetector()
    feed(d, quiet(0.3), 0.0)
    feed(d, noise(1.3), 0.9)
    assert d.wants_words
    decision = d.words(text, None)
    assert decision is not None and decision.verdict == "machine" and decision.reason == reason
    assert decision.transcript == text


@pytest.mark.parametrize("text", ["喂？", "喂，你好。", "你好，哪位？", "喂，哪位啊？", "谁啊？", "Hello?", "Hi, who is this?",
                                  "Yes?", "Hello, who's calling?", "Yeah, hello."])
def test_greetings_are_never_machine_words(text):
    assert machine_phrase(text) is None
    assert is_greeting_only(text)
    d = AnsweringMachineDetector()
    feed(d, quiet(0.3), 0.0)
    feed(d, noise(1.0), 0.9)
    assert feed(d, quiet(0.3), 0.0) is None
    assert d.words_request() is not None  # a second of speech is transcribed before a person is called
    d.words(text, None)
    decision = feed(d, quiet(2.0), 0.0)
    assert decision.verdict == "human"


def test_a_person_decision_waits_for_pending_words_but_not_forever():
    d = AnsweringMachineDetector()
    feed(d, quiet(0.3), 0.0)
    feed(d, noise(1.0), 0.9)
    feed(d, quiet(0.3), 0.0)
    assert d.words_request() is not None
    assert feed(d, quiet(0.6), 0.0) is None  # past human_silence_s, but the words may say machine
    decision = feed(d, quiet(3.0), 0.0)  # the transcript never came
    assert decision.verdict == "human"


def test_words_request_gives_the_speech_so_far_once():
    c = AmdConfig()
    d = AnsweringMachineDetector(c)
    feed(d, quiet(1.0), 0.0)
    feed(d, noise(1.0), 0.9)
    assert not d.wants_words  # under words_after_speech_s
    feed(d, noise(0.4, seed=5), 0.9)
    assert d.wants_words
    audio = d.words_request()
    assert audio is not None and abs(len(audio) / RATE - (d.speech_s + c.words_lead_s)) < 0.1
    assert not d.wants_words and d.words_request() is None  # one request at a time
    d.words("嗯", "zh")
    feed(d, noise(1.1, seed=6), 0.9)
    assert d.wants_words  # another second of speech: look again


@pytest.mark.parametrize("verdict", ["human", "machine"])
def test_silence_throughout_gives_the_configured_verdict(verdict):
    c = AmdConfig(silence_verdict=verdict)
    d = AnsweringMachineDetector(c)
    decision = feed(d, quiet(10.0), 0.01)
    assert decision.verdict == verdict and decision.reason == "silence"
    assert abs(decision.at_s - c.max_wait_first_speech_s) < 0.05


def test_undecided_at_the_cap_gives_the_timeout_verdict():
    c = AmdConfig(timeout_verdict="machine")
    d = AnsweringMachineDetector(c)
    feed(d, quiet(2.6), 0.0)  # someone speaks just before the first-speech wait runs out...
    decision = feed(d, noise(3.0), 0.9)  # ...and is neither short nor long by the cap
    assert decision.verdict == "machine" and decision.reason == "timeout"
    assert abs(decision.at_s - c.max_decision_s) < 0.05


def test_a_click_is_not_a_greeting():
    d = AnsweringMachineDetector()
    feed(d, quiet(0.3), 0.0)
    feed(d, noise(0.064), 0.9)  # two chunks
    assert feed(d, quiet(1.5), 0.0) is None
    decision = feed(d, noise(6.0, seed=7), 0.9)
    assert decision.verdict == "machine"


# --- the drivers, with a fake VAD and ASR ------------------------------------------------------
class EnergyVAD:
    """Loud is speech, as Silero hears it, except a pure tone (Silero gives a beep ~0.02)."""

    chunk_samples = 512
    name = "energy"

    def speech_probability(self, chunk: np.ndarray) -> float:
        if np.sqrt(np.mean(chunk**2)) <= 0.01:
            return 0.0
        power = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)))) ** 2
        k = int(np.argmax(power))
        return 0.02 if power[max(0, k - 2):k + 3].sum() > 0.9 * power.sum() else 0.9

    def reset(self) -> None:
        pass


class FakeASR:
    def __init__(self, text: str, block: threading.Event | None = None):
        self.text, self.block, self.calls, self.finished = text, block, [], 0

    def transcribe(self, audio, language=None, urgent=True):
        self.calls.append(len(audio) / RATE)
        if self.block is not None:
            self.block.wait(5)
        self.finished += 1
        return type("Transcript", (), {"text": self.text})()


async def frames_of(audio: np.ndarray, size: int = 320, pace: float = 0.002):
    for i in range(0, len(audio), size):
        await asyncio.sleep(pace)  # leaves the decode thread time to run, as a live call does
        yield audio[i : i + size]


def test_detect_decides_on_words():
    audio = np.concatenate([quiet(0.5), noise(4.0), quiet(2.0)])
    asr = FakeASR("您拨打的电话已关机")
    decision = asyncio.run(detect(frames_of(audio), EnergyVAD(), asr, AmdConfig(), language="zh"))
    assert decision.verdict == "machine" and decision.reason == "announcement_words"
    assert asr.calls and asr.calls[0] >= 1.2


def test_detect_does_not_wait_for_words_once_the_audio_decided():
    block = threading.Event()
    audio = np.concatenate([quiet(0.3), noise(1.5), sine(1000, 0.4), quiet(3.0)])
    asr = FakeASR("", block)

    async def run():
        decision = await detect(frames_of(audio), EnergyVAD(), asr, AmdConfig())
        decoding = asr.calls and not asr.finished
        block.set()
        return decision, decoding

    decision, decoding = asyncio.run(run())
    assert decision.reason == "beep" and decoding


def test_detect_rechunks_and_resamples_8k_frames():
    audio = np.concatenate([quiet(0.4), noise(0.4), quiet(3.0)])[::2].copy()  # as if at 8 kHz
    decision = asyncio.run(detect(frames_of(audio, size=160), EnergyVAD(), FakeASR("喂"), AmdConfig(), rate=8000))
    assert decision.verdict == "human" and decision.reason == "short_greeting"
    assert 0.8 <= decision.at_s <= 2.0


def test_wait_for_greeting_end_returns_after_the_beep():
    audio = np.concatenate([noise(2.0), quiet(0.3), sine(1000, 0.4), quiet(5.0)])
    waited = asyncio.run(wait_for_greeting_end(frames_of(audio, pace=0.0), EnergyVAD(), AmdConfig()))
    assert 2.7 <= waited <= 3.0


def test_wait_for_greeting_end_returns_after_silence_without_a_beep():
    audio = np.concatenate([noise(1.0), quiet(6.0)])
    waited = asyncio.run(wait_for_greeting_end(frames_of(audio, pace=0.0), EnergyVAD(), AmdConfig()))
    assert 2.4 <= waited <= 2.7


# --- real voices, real Silero and Whisper ------------------------------------------------------
def _make_amd_set():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "make_amd_set.py"
    spec = importlib.util.spec_from_file_location("make_amd_set", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_amd_set", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_real_answers_are_told_apart():
    from voiceagent.audio.resample import resample
    from voiceagent.config import Config
    from voiceagent.runtime import Runtime

    mk = _make_amd_set()
    wanted = {("hello_zh", "喂？"), ("hello_zh", "你好，哪位？"), ("hello_en", "Hello?"),
              ("carrier_zh", "您拨打的电话已关机。"), ("carrier_en", "We're sorry, your call cannot be completed as dialed."),
              ("voicemail_en", "Hi, you've reached Anna. Leave a message after the beep.")}
    specs = [s for s in mk.SPECS if (s.kind, s.text) in wanted and s.split == "dev"]
    assert len(specs) == 6
    rt = Runtime.load(Config.load(None), parts=("vad", "asr"))
    vad = rt.new_vad()
    right, people_called_machines = 0, 0
    for spec in specs:
        audio8k, meta = mk.render(spec, 0)
        audio = resample(audio8k, mk.LINE_RATE, RATE)
        vad.reset()
        decision = asyncio.run(detect(frames_of(audio, pace=0.02), vad, rt.asr, AmdConfig(), language=spec.lang))
        right += decision.verdict == spec.label
        people_called_machines += spec.label == "human" and decision.verdict == "machine"
    assert people_called_machines == 0
    assert right >= 5
