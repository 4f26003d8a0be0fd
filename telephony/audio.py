"""Audio as the transports exchange it: fixed-size mono frames of float32 samples, the 16-bit PCM
conversions the wire formats need, and sample-rate conversion.

It lives here, at the bottom, because both sides of the call leg speak it: the transports in
`telephony/` (which must stand alone, importing nothing from `voiceagent/`) and the agent in
`voiceagent/`, which re-exports these names from `voiceagent.audio` next to its own audio tools
(file input/output, trimming a voice's leading silence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr


def pcm16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    arr = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    return arr.astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


@dataclass(frozen=True)
class AudioFrame:
    """A slice of mono audio (20 ms by default). `start_s` is its position on the call's own timeline."""

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


# Sample-rate conversion: soxr (high quality, fast, streaming-capable).
def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    if src_rate == dst_rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32, copy=False), src_rate, dst_rate, quality="HQ").astype(np.float32)


class StreamResampler:
    """Resamples a stream chunk by chunk without clicks at chunk borders."""

    def __init__(self, src_rate: int, dst_rate: int):
        self.passthrough = src_rate == dst_rate
        self._stream = None if self.passthrough else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return samples.astype(np.float32, copy=False)
        return self._stream.resample_chunk(samples.astype(np.float32, copy=False), last=last)
