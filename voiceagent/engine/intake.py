"""Caller audio onto the call's timeline.

Frames arrive at the leg's rate, stamped with where they belong on the call's clock. The engine
wants 16 kHz audio in order and without holes, so that the VAD and the timers see real time pass:
late duplicates are dropped, holes (lost packets) are filled with silence, a long outage restarts
the timeline, and garbage (NaN, empty frames, a bad rate) is made safe or dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import AudioFrame, resample

ENGINE_RATE = 16000
MAX_GAP_FILL_S = 30.0  # a longer hole in the input restarts the timeline instead of being filled


@dataclass
class Placed:
    samples: np.ndarray  # 16 kHz, to feed the turn detector
    restarted: bool = False  # a long outage: the turn in hand is void


class CallerAudioIntake:
    def __init__(self) -> None:
        self.timeline_s = 0.0  # end of the caller audio placed so far
        self.frames_in = 0
        self.frames_dropped = 0
        self.gaps_filled_ms = 0.0

    def drop(self) -> None:
        """A frame nothing can be made of (the caller's leg sent garbage): counted, the call goes on."""
        self.frames_dropped += 1

    def place(self, frame: AudioFrame) -> Placed | None:
        """The frame's audio at 16 kHz, in timeline order; None when it is dropped."""
        self.frames_in += 1
        samples = np.nan_to_num(np.asarray(frame.samples, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if not frame.sample_rate or frame.sample_rate <= 0 or samples.ndim != 1 or samples.size == 0:
            self.frames_dropped += 1
            return None
        samples = np.clip(resample(samples, frame.sample_rate, ENGINE_RATE), -1.0, 1.0)
        gap = frame.start_s - self.timeline_s
        if gap < -0.5 * len(samples) / ENGINE_RATE:  # late, duplicated or out of order
            self.frames_dropped += 1
            return None
        restarted = False
        if gap > MAX_GAP_FILL_S:  # a long outage: start again from here
            self.timeline_s = frame.start_s
            restarted = True
        elif gap > 0.005:  # a hole (lost packets): silence, so the VAD and the timers see time pass
            if self.frames_in > 1:  # before the first frame the line was still connecting: no hole
                self.gaps_filled_ms += gap * 1000
            samples = np.concatenate([np.zeros(int(round(gap * ENGINE_RATE)), np.float32), samples])
        self.timeline_s += len(samples) / ENGINE_RATE
        return Placed(samples, restarted)

    def stats(self) -> dict:
        return {"frames_in": self.frames_in, "frames_dropped": self.frames_dropped,
                "gaps_filled_ms": round(self.gaps_filled_ms, 1)}
