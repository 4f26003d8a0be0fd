"""How a caller's turn sounds: loudness, pitch, pitch range, vocal effort and speaking rate.

Pitch and intensity come from Praat (parselmouth), the reference tools of speech prosody; a turn
of 8 s takes ~15 ms. Vocal effort is the spectral balance of voiced frames (energy above 1 kHz
against below): a raised voice puts more energy high, and unlike loudness it does not change with
the line's gain. These are raw measures; what they mean depends on the caller's own baseline
(voice_emotion.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

PITCH_FLOOR_HZ = 70.0
PITCH_CEILING_HZ = 600.0
FRAME_S = 0.01
MIN_VOICED_S = 0.4  # less voiced speech than this says nothing reliable about the voice
_HAN = re.compile(r"[\u4e00-\u9fff]")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


@dataclass
class VoiceFeatures:
    voiced_s: float  # seconds with a pitch
    loudness_db: float  # mean level of voiced frames, dBFS
    pitch_st: float  # median F0, semitones re 100 Hz
    pitch_range_st: float  # 10th to 90th percentile of F0, semitones
    effort_db: float  # voiced energy 1-4 kHz minus 0-1 kHz, dB (spectral balance)
    rate_sps: float | None  # syllables per second of speech (from the words), None without words

    @property
    def pitch_hz(self) -> float:
        return 100.0 * 2 ** (self.pitch_st / 12)

    def to_dict(self) -> dict:
        data = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        data["pitch_hz"] = round(self.pitch_hz, 1)
        return data


def syllables(text: str) -> int:
    """Spoken syllables in a transcript: one per Han character, vowel groups for Latin words."""
    han = len(_HAN.findall(text))
    latin = _HAN.sub(" ", text.lower())
    count = han
    for word in re.findall(r"[a-z']+", latin):
        count += max(1, len(_VOWEL_GROUPS.findall(word.rstrip("e") or word)))
    count += 2 * len(re.findall(r"\d", text))  # digits read out: about two syllables each in en, one in zh
    return count


def measure(audio: np.ndarray, rate: int, text: str = "") -> VoiceFeatures | None:
    """The turn's voice, or None when it holds too little voiced speech to say anything."""
    import parselmouth

    if len(audio) < int(0.2 * rate) or not np.isfinite(audio).all():
        return None
    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=rate)
    pitch = sound.to_pitch_ac(time_step=FRAME_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    f0 = pitch.selected_array["frequency"]
    times = pitch.xs()
    voiced = f0 > 0
    voiced_s = float(voiced.sum() * FRAME_S)
    if voiced_s < MIN_VOICED_S:
        return None
    f0v = f0[voiced]
    semitones = 12 * np.log2(f0v / 100.0)
    # Level and spectral balance over the voiced frames only: pauses and line noise say nothing
    half = int(0.02 * rate)
    centers = (times[voiced] * rate).astype(int)
    frames = [audio[max(0, c - half): c + half] for c in centers]
    frames = np.stack([np.pad(f, (0, 2 * half - len(f))) for f in frames]).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9
    loudness = float(20 * np.log10(np.sqrt(np.mean(rms ** 2))))
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(2 * half), axis=1)) ** 2
    freqs = np.fft.rfftfreq(2 * half, 1 / rate)
    low = spectrum[:, (freqs >= 80) & (freqs < 1000)].sum()
    high = spectrum[:, (freqs >= 1000) & (freqs < 4000)].sum()
    effort = float(10 * np.log10((high + 1e-12) / (low + 1e-12)))
    # Speaking time: from the first to the last voiced frame, long pauses left out
    span = _speaking_time(times[voiced])
    n = syllables(text)
    rate_sps = round(n / span, 2) if n and span > 0.3 else None
    return VoiceFeatures(
        voiced_s=round(voiced_s, 2),
        loudness_db=loudness,
        pitch_st=float(np.median(semitones)),
        pitch_range_st=float(np.percentile(semitones, 90) - np.percentile(semitones, 10)),
        effort_db=effort,
        rate_sps=rate_sps,
    )


def _speaking_time(voiced_times: np.ndarray, max_gap_s: float = 0.3) -> float:
    if len(voiced_times) < 2:
        return 0.0
    gaps = np.diff(voiced_times)
    return float(np.sum(np.where(gaps <= max_gap_s, gaps, 0.0)) + FRAME_S)
