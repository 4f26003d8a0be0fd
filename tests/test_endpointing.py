"""Turn segmentation on real speech with both VAD backends."""

import numpy as np
import pytest

from voiceagent.audio import load_audio
from voiceagent.config import VadConfig
from voiceagent.endpointing import Endpointer, SpeechStarted, TurnEnded
from voiceagent.vad import SileroVAD, WebRtcVAD, create_vad

from .conftest import SAMPLES


def run(endpointer: Endpointer, samples: np.ndarray, frame: int = 320):
    events = []
    for i in range(0, len(samples), frame):
        events += endpointer.feed(samples[i : i + frame])
    return events + endpointer.flush()


@pytest.fixture(params=["silero", "webrtc"])
def vad(request):
    return create_vad(VadConfig(backend=request.param))


def test_two_turns_separated_by_silence(vad):
    audio = load_audio(SAMPLES / "en_multi_turn_8k.wav").samples
    events = run(Endpointer(vad, VadConfig()), audio)
    turns = [e for e in events if isinstance(e, TurnEnded)]
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(turns) == 2 and len(starts) == 2
    first, second = turns
    assert first.speech_end_s < second.start_s
    assert 0.3 <= first.start_s <= 0.8  # the file opens with 0.5 s of silence
    # the end of turn is decided one silence window after speech stopped, not later
    assert 0.45 <= first.detected_s - first.speech_end_s <= 0.65
    assert len(first.audio) / 16000 == pytest.approx(first.speech_end_s - first.start_s + 0.2 + 0.12, abs=0.1)


def test_silence_and_clicks_make_no_turn(vad):
    rng = np.random.default_rng(1)
    silence = rng.normal(0, 0.002, 16000 * 3).astype(np.float32)
    silence[16000:16080] = 0.8  # a 5 ms click
    events = run(Endpointer(vad, VadConfig()), silence)
    assert not [e for e in events if isinstance(e, TurnEnded)]


def test_speech_running_to_the_end_of_input_still_ends_a_turn():
    audio = load_audio(SAMPLES / "en_human_16k.wav").samples
    cut = audio[: int(2.0 * 16000)]  # stop mid-sentence
    events = run(Endpointer(create_vad(VadConfig()), VadConfig()), cut)
    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert len(turns) == 1 and turns[0].speech_end_s == pytest.approx(2.0, abs=0.05)


def test_backends_have_the_chunk_sizes_their_models_need():
    assert SileroVAD.chunk_samples == 512
    assert WebRtcVAD.chunk_samples == 480
