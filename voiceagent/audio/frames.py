"""Fixed-size PCM frames, the unit every transport and stage exchanges (20 ms by default)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pcm16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    arr = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    return arr.astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


def window_rms(samples: np.ndarray, window: int) -> np.ndarray:
    """RMS of each whole `window` samples (a last partial window is left out)."""
    count = len(samples) // window
    return np.sqrt(np.mean(np.square(samples[: count * window].reshape(count, window), dtype=np.float64), axis=1))


def trim_leading_quiet(samples: np.ndarray, sample_rate: int, keep_ms: int = 20,
                       floor_dbfs: float = -50.0) -> np.ndarray:
    """The signal from `keep_ms` before its first 5 ms above `floor_dbfs`. A voice starts its
    speech with up to ~70 ms of silence (piper, espeak): at the head of a reply, that is time the
    caller waits for nothing. The floor sits well under a soft onset ("s", "f"), so none is cut;
    a signal with no sound at all is left as it is."""
    window = max(1, sample_rate // 200)
    loud = np.flatnonzero(window_rms(samples, window) > 10 ** (floor_dbfs / 20))
    if not len(loud):
        return samples
    return samples[max(0, int(loud[0]) * window - sample_rate * keep_ms // 1000):]


@dataclass(frozen=True)
class AudioFrame:
    """A slice of mono audio. `start_s` is its position on the call's own timeline."""

    samples: np.ndarray  # float32 in [-1, 1]
    sample_rate: int
    start_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def split_frames(samples: np.ndarray, sample_rate: int, frame_ms: int = 20) -> list[AudioFrame]:
    """Cut a signal into frames of `frame_ms`; the last one is zero-padded to full size."""
    size = sample_rate * frame_ms // 1000
    frames = []
    for i in range(0, len(samples), size):
        chunk = samples[i : i + size]
        if len(chunk) < size:
            chunk = np.pad(chunk, (0, size - len(chunk)))
        frames.append(AudioFrame(chunk.astype(np.float32, copy=False), sample_rate, i / sample_rate))
    return frames
