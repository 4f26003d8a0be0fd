"""Reading and writing audio files, with one-line errors for everything a caller can get wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import BadInput
from .frames import float_to_pcm16
from .resample import resample


@dataclass
class Audio:
    samples: np.ndarray  # mono float32
    sample_rate: int
    source_rate: int  # the file's own rate, before resampling
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def probe_audio(path: str | Path) -> sf._SoundFileInfo:
    """Header-only look at a file: rate, channels, length. Raises BadInput with a clear reason."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"cannot read {path}: no such file")
    if path.is_dir():
        raise BadInput(f"cannot read {path}: it is a directory")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise BadInput(f"cannot read {path}: not a readable audio file ({_short(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise BadInput(f"cannot read {path}: the file holds no audio")
    return info


def load_audio(path: str | Path, target_rate: int = 16000, max_duration_s: float | None = None) -> Audio:
    """Load any libsndfile-readable file as mono float32 at `target_rate` (downmixed, resampled)."""
    info = probe_audio(path)
    duration = info.frames / info.samplerate
    if max_duration_s is not None and duration > max_duration_s:
        raise BadInput(
            f"{path}: audio is {duration / 60:.1f} min long, over the {max_duration_s / 60:.0f} min limit "
            "(audio.max_duration_s in the config)"
        )
    if info.samplerate < 4000:
        raise BadInput(f"{path}: sample rate {info.samplerate} Hz is too low for speech")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise BadInput(f"cannot read {path}: {_short(exc)}") from None
    if data.size == 0:
        raise BadInput(f"cannot read {path}: the file holds no audio")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return Audio(resample(mono, rate, target_rate), target_rate, rate, data.shape[1])


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), float_to_pcm16(samples), sample_rate, subtype="PCM_16")


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
