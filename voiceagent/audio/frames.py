"""Fixed-size PCM frames, the unit every transport and stage exchanges (20 ms by default), and
level measures over them.

The frame type and the PCM conversions are defined in `telephony.audio` (the transports speak
them and must not import the agent) and re-exported here, so the agent's code imports its audio
from one place.
"""

from __future__ import annotations

import numpy as np

from telephony.audio import AudioFrame, float_to_pcm16, pcm16_to_float, split_frames

__all__ = ["AudioFrame", "float_to_pcm16", "pcm16_to_float", "split_frames", "trim_leading_quiet", "window_rms"]


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
