import numpy as np
import pytest
import soundfile as sf

from voiceagent.audio import load_audio
from voiceagent.audio.frames import split_frames, trim_leading_quiet
from voiceagent.errors import BadInput


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    left, right = tone(44100, 1.0), -tone(44100, 1.0) * 0.5
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    audio = load_audio(path, 16000)
    assert audio.sample_rate == 16000 and audio.source_rate == 44100 and audio.source_channels == 2
    assert abs(len(audio.samples) - 16000) <= 2
    assert np.abs(audio.samples).max() == pytest.approx(0.075, abs=0.01)  # (0.3 - 0.15) / 2


def test_8k_is_upsampled(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, tone(8000, 0.5), 8000, subtype="PCM_16")
    audio = load_audio(path, 16000)
    assert audio.source_rate == 8000 and abs(len(audio.samples) - 8000) <= 2


@pytest.mark.parametrize("content, reason", [
    (b"this is not audio at all", "not a readable audio file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),  # truncated header
    (b"", "not a readable audio file"),
])
def test_unreadable_files_give_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=reason):
        load_audio(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(BadInput, match="directory"):
        load_audio(tmp_path)


def test_too_long_is_refused_from_the_header(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 60, np.int16), 8000)
    with pytest.raises(BadInput, match="over the 0 min limit|over the"):
        load_audio(path, max_duration_s=30)


def test_frames_cover_the_signal_and_pad_the_last():
    frames = split_frames(np.ones(16000 + 100, np.float32), 16000, 20)
    assert len(frames) == 51
    assert all(len(f.samples) == 320 for f in frames)
    assert frames[-1].start_s == pytest.approx(1.0)
    assert frames[-1].samples[100:].sum() == 0


def test_leading_silence_is_trimmed_to_20ms_and_a_soft_onset_is_kept():
    rate = 16000
    t = np.arange(rate // 2) / rate
    voice = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    soft = np.full(rate // 20, 0.005, np.float32)  # 50 ms of -46 dBFS: a soft "s" before the vowel
    signal = np.concatenate([np.zeros(rate // 10, np.float32), soft, voice])  # 100 ms of silence first
    out = trim_leading_quiet(signal, rate)
    assert len(out) == len(signal) - rate // 10 + rate // 50  # 80 ms gone, 20 ms kept before the onset
    assert np.array_equal(out[rate // 50:rate // 50 + len(soft)], soft)
    # nothing to trim, or nothing but silence: unchanged
    assert trim_leading_quiet(voice, rate) is voice or np.array_equal(trim_leading_quiet(voice, rate), voice)
    quiet = np.zeros(rate, np.float32)
    assert len(trim_leading_quiet(quiet, rate)) == rate and len(trim_leading_quiet(quiet[:10], rate)) == 10
