"""Speech segmentation on real speech with both VAD backends: the segmenter that cuts whole files and
hears a live caller's speech and silence."""

import shutil
import subprocess

import numpy as np
import pytest

from voiceagent.asr import create_asr
from voiceagent.audio import load_audio, resample
from voiceagent.config import VadConfig
from voiceagent.events import SpeechStarted
from voiceagent.segmenter import Segmenter, SpeechSegment
from voiceagent.transcription import speech_segments, transcribe_file
from voiceagent.vad import SileroVAD, WebRtcVAD, create_vad

from .conftest import SAMPLES


def run(segmenter: Segmenter, samples: np.ndarray, frame: int = 320):
    """Feed a file as a call's frames would come; the events and the segments, in order."""
    out = []
    for i in range(0, len(samples), frame):
        for heard in segmenter.feed(samples[i : i + frame]):
            out += [*heard.events, *([heard.ended] if heard.ended else [])]
    for heard in segmenter.flush():
        out += [*heard.events, *([heard.ended] if heard.ended else [])]
    if segmenter.confirmed:
        out.append(segmenter.end_turn())
    return out


def file_segmenter(vad, config=VadConfig()):
    return Segmenter(vad, config, end_silence_ms=config.min_silence_ms)


@pytest.fixture(params=["silero", "webrtc"])
def vad(request):
    return create_vad(VadConfig(backend=request.param))


def test_two_turns_separated_by_silence(vad):
    audio = load_audio(SAMPLES / "en_multi_turn_8k.wav").samples
    events = run(file_segmenter(vad), audio)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    turns = [e for e in events if isinstance(e, SpeechSegment)]
    assert len(turns) == 2 and len(starts) == 2
    first, second = turns
    assert first.speech_end_s < second.start_s
    assert 0.3 <= first.start_s <= 0.8  # the file opens with 0.5 s of silence
    assert starts[0].start_s == first.start_s and starts[0].at_s > first.start_s  # announced once sure
    # the end of turn is decided one silence window after speech stopped, not later
    assert 0.45 <= first.detected_s - first.speech_end_s <= 0.65
    assert len(first.audio) / 16000 == pytest.approx(first.speech_end_s - first.start_s + 0.2 + 0.12, abs=0.1)
    assert first.audio_start_s == pytest.approx(first.start_s - 0.12, abs=0.001)  # the pad before the start


def test_silence_and_clicks_make_no_turn(vad):
    rng = np.random.default_rng(1)
    silence = rng.normal(0, 0.002, 16000 * 3).astype(np.float32)
    silence[16000:16080] = 0.8  # a 5 ms click
    events = run(file_segmenter(vad), silence)
    assert not [e for e in events if isinstance(e, SpeechSegment)]


def test_speech_running_to_the_end_of_input_still_ends_a_turn():
    audio = load_audio(SAMPLES / "en_human_16k.wav").samples
    cut = audio[: int(2.0 * 16000)]  # stop mid-sentence
    events = run(file_segmenter(create_vad(VadConfig())), cut)
    turns = [e for e in events if isinstance(e, SpeechSegment)]
    assert len(turns) == 1 and turns[0].speech_end_s == pytest.approx(2.0, abs=0.05)


def test_backends_have_the_chunk_sizes_their_models_need():
    assert SileroVAD.chunk_samples == 512
    assert WebRtcVAD.chunk_samples == 480


def _from_first_sample(audio: np.ndarray) -> np.ndarray:
    """The recording cut so that its speech starts at sample 0, as telephone prompts often do."""
    return audio[int(np.argmax(np.abs(audio) > 0.02)) :]


def _espeak(text: str, tmp_path, rate: int) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "prompt.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return resample(load_audio(path, rate).samples, rate, 16000)  # rate 8000: telephone bandwidth


@pytest.mark.parametrize("source", ["en_angry_complaint_8k.wav", "en_return_8k.wav", "espeak_8k"])
def test_speech_from_the_first_sample_is_all_in_its_segment(source, tmp_path):
    # Silero starts cold: on phone audio it took ~0.2 s (more than the pad) to hear speech that opens
    # a file, and the segment lost its first 70-140 ms (the first word). A call's line gives the VAD
    # silence before the caller speaks; a file is given the same.
    if source == "espeak_8k":
        audio = _from_first_sample(_espeak("Please enter a new extension", tmp_path, 8000))
    else:
        audio = _from_first_sample(load_audio(SAMPLES / source).samples)
    first = speech_segments(audio, VadConfig())[0]
    assert first.audio_start_s == 0.0 and first.start_s <= 0.1
    assert np.array_equal(first.audio, audio[: len(first.audio)])  # nothing shifted or cut at the start
    assert first.speech_end_s - first.start_s > 1.0


def test_a_prompt_that_starts_at_once_keeps_its_first_word(config, tmp_path):
    audio = _from_first_sample(_espeak("Please enter a new extension", tmp_path, 16000))
    result = transcribe_file(create_asr(config.asr), audio, config.vad, "en")
    words = result.text.lower()
    assert "please" in words or "enter" in words, result.text  # was heard as "Use and your new extension"
    assert "extension" in words or "new" in words, result.text
    assert result.segments[0].start <= 0.1
