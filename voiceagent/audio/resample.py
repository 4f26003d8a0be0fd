"""Sample-rate conversion (soxr: high quality, fast, streaming-capable)."""

from __future__ import annotations

import numpy as np
import soxr


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
