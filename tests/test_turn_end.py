"""The end-of-turn model: finished turns get the short window, turns cut mid-sentence (a half-read
order number, a trailing conjunction) the long one, on held-out templates too; the voice features
read pitch and energy the right way round; a missing model is an error, not the word rules."""

import json
from pathlib import Path

import numpy as np
import pytest

from voiceagent.config import VadConfig
from voiceagent.errors import ModelMissing
from voiceagent.turn_completion import silence_window_ms
from voiceagent.turn_end import AUDIO_FEATURES, DEFAULT_MODEL, HASH_DIM, TEXT_FEATURES, TurnEndModel, audio_features, load_model

ROOT = Path(__file__).resolve().parent.parent
TURNS = ROOT / "training" / "data" / "turn_end" / "turns.jsonl"
QUESTION = ("Hi, I ordered a pair of running shoes last week and they still have not arrived. "
            "Can you tell me where my package is?")


@pytest.fixture(scope="module")
def model() -> TurnEndModel:
    return load_model(DEFAULT_MODEL)


def _heldout(lang: str) -> list[dict]:
    rows = [json.loads(line) for line in TURNS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] == "heldout" and r["lang"] == lang]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_heldout_turns_are_judged_right(model, lang):
    rows = _heldout(lang)
    assert len(rows) >= 200
    p = np.array([model.probability(r["text"], r["lang"], None, r.get("expecting_number", False)) for r in rows])
    y = np.array([r["label"] for r in rows])
    assert np.mean((p >= 0.5) == (y == 1)) >= 0.9
    assert np.mean(p[y == 1] >= model.high) >= 0.85  # finished: the short window
    assert np.mean(p[y == 0] >= model.high) <= 0.03  # unfinished given the short window: cut off


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_heldout_voiced_turns_with_their_voice_are_judged_right(model, lang):
    from training.train_turn_end import featurise, predict  # the stored voice features of synthesised turns

    m = featurise([r for r in _heldout(lang) if r.get("audio")], with_audio=True)
    p = predict(model, m)
    assert len(p) >= 40
    assert np.mean((p >= 0.5) == (m.y == 1)) >= 0.9
    assert np.mean(p[m.y == 0] >= model.high) <= 0.05


def test_a_natural_question_ends_on_the_short_window(model):
    config = VadConfig()
    assert model.probability(QUESTION, "en") >= model.high
    assert silence_window_ms(QUESTION, config, language="en") == config.complete_silence_ms
    # the words the recogniser may leave without the "?" still read as finished more than not
    assert model.probability(QUESTION.rstrip("?"), "en") > 0.5


@pytest.mark.parametrize("text,lang,expecting", [
    ("my order number is 3851", "en", False), ("My order number is 38 51.", "en", True),
    ("我的订单号是3851", "zh", False), ("订单号是2024", "zh", True), ("我的订单号是", "zh", False),
    ("I want to, um", "en", False), ("and, um", "en", False), ("我想问一下，嗯", "zh", False),
])
def test_half_said_turns_wait_long(model, text, lang, expecting):
    config = VadConfig()
    assert model.probability(text, lang, expecting_number=expecting) <= model.low
    assert silence_window_ms(text, config, expecting, language=lang) == config.incomplete_silence_ms


@pytest.mark.parametrize("text,lang,expecting", [
    ("My order number is 20241108.", "en", True), ("我的订单号是20241108", "zh", True), ("订单号是20241108", "zh", False),
    ("我的快递到哪里了？", "zh", False), ("这件衣服有黑色的吗", "zh", False), ("对", "zh", False), ("no", "en", False),
    ("I want to return these shoes.", "en", False),
])
def test_finished_turns_end_soon(model, text, lang, expecting):
    assert silence_window_ms(text, VadConfig(), expecting, language=lang) < VadConfig().unsure_silence_ms


def test_windows_between_the_thresholds_are_between(tmp_path):
    # a model unsure of everything: P = 0.45, half-way between its thresholds
    unsure = TurnEndModel(np.zeros(len(TEXT_FEATURES) + len(AUDIO_FEATURES)), np.zeros(HASH_DIM),
                          bias=float(np.log(0.45 / 0.55)), high=0.5, low=0.4)
    path = tmp_path / "unsure.json"
    path.write_text(unsure.to_json())
    config = VadConfig(complete_silence_ms=200, incomplete_silence_ms=2000, turn_end_model=str(path))
    for text in ["the black one", "我上周买的", "it's about the"]:
        assert silence_window_ms(text, config) == 1100


def _tone(f_start: float, f_end: float, gain_end: float, seconds: float = 1.2) -> np.ndarray:
    n = int(seconds * 16000)
    f = np.linspace(f_start, f_end, n)
    phase = 2 * np.pi * np.cumsum(f) / 16000
    gain = np.linspace(1.0, gain_end, n)
    return (0.3 * gain * np.sin(phase) + np.random.default_rng(0).normal(0, 0.003, n)).astype(np.float32)


def test_voice_features_read_pitch_and_energy_the_right_way():
    names = {n: i for i, n in enumerate(AUDIO_FEATURES)}
    falling = audio_features(_tone(200, 110, 0.2))
    rising = audio_features(_tone(120, 220, 1.0))
    assert falling[names["a_has"]] == rising[names["a_has"]] == 1.0
    assert falling[names["a_pitch_slope"]] < 0 < rising[names["a_pitch_slope"]]
    assert falling[names["a_final_rel"]] < 0 < rising[names["a_final_rel"]]
    assert falling[names["a_energy_slope"]] < rising[names["a_energy_slope"]]
    assert falling[names["a_voiced_frac"]] > 0.8
    assert not audio_features(None).any() and not audio_features(np.zeros(1600, np.float32)).any()


def test_the_model_with_audio_is_a_probability(model):
    p = model.probability(QUESTION, "en", _tone(200, 110, 0.2))
    assert 0.0 <= p <= 1.0


def test_a_missing_model_is_an_error_unless_the_config_asks_for_the_word_rules(tmp_path):
    config = VadConfig(turn_end_model=str(tmp_path / "nowhere.json"))
    with pytest.raises(ModelMissing, match="end-of-turn model"):
        silence_window_ms("Where is my parcel?", config)
    rules = VadConfig(turn_end_model="", complete_silence_ms=250, unsure_silence_ms=500, incomplete_silence_ms=1800)
    assert silence_window_ms("where is my parcel", rules) == 500
    assert silence_window_ms("the order number is 2024", rules) == 1800


class _SaysRecognizer:
    """Hears every stretch of audio as the same words."""

    def __init__(self, text: str):
        self.text = text

    def transcribe(self, audio, language=None, urgent=True, check_switch=False):
        from voiceagent.asr import Segment, Transcript

        return Transcript(self.text, "en", 1.0, len(audio) / 16000, [Segment(0.0, 1.0, self.text)])


async def _turns(text: str, heard: list):
    import asyncio

    from voiceagent.audio import load_audio
    from voiceagent.config import CallConfig
    from voiceagent.events import FinalTranscript
    from voiceagent.turn_detector import TurnDetector
    from voiceagent.vad import create_vad

    from .test_turn_detector import FRAME, SAMPLES, _AudioClock

    audio = load_audio(SAMPLES / "en_multi_turn_8k.wav").samples
    clock, events = _AudioClock(), []
    detector = TurnDetector(create_vad(VadConfig()), _SaysRecognizer(text), VadConfig(), CallConfig(),
                            events.append, clock, language=lambda: "en")
    for i in range(0, len(audio), FRAME):
        clock.t = (i + FRAME) / 16000
        await detector.feed(audio[i : i + FRAME])
        await asyncio.sleep(0)
    await detector.flush()
    detector.close()
    return [e for e in events if isinstance(e, FinalTranscript)]


@pytest.mark.parametrize("text,window", [(QUESTION, "complete_silence_ms"),
                                         ("my order number is 3851", "incomplete_silence_ms")])
def test_the_live_detector_waits_as_long_as_the_model_says(model, monkeypatch, text, window):
    import asyncio

    heard = []
    probability = TurnEndModel.probability

    def spy(self, text, language="", audio=None, expecting_number=False):
        heard.append((language, None if audio is None else len(audio)))
        return probability(self, text, language, audio, expecting_number)

    monkeypatch.setattr(TurnEndModel, "probability", spy)
    finals = asyncio.run(_turns(text, heard))
    assert finals and heard
    # the turn's speech (its last seconds) and language reach the model
    assert all(language == "en" and n is not None and n >= 0.3 * 16000 for language, n in heard)
    for final in finals:
        assert final.decided_s - final.speech_end_s == pytest.approx(getattr(VadConfig(), window) / 1000, abs=0.06)


def test_a_missing_model_stops_the_detector_at_its_start(tmp_path):
    from voiceagent.config import CallConfig
    from voiceagent.turn_detector import TurnDetector
    from voiceagent.vad import create_vad

    from .test_turn_detector import _AudioClock

    config = VadConfig(turn_end_model=str(tmp_path / "nowhere.json"))
    with pytest.raises(ModelMissing, match="turn_end_model"):
        TurnDetector(create_vad(config), _SaysRecognizer("hi"), config, CallConfig(), lambda e: None, _AudioClock())
