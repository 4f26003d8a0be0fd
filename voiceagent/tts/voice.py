"""The interface every voice implements: text in, speech out in chunks (a sentence or a clause
each), so that the first chunk can play while the rest is still being made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np


@dataclass
class SpeechChunk:
    samples: np.ndarray  # mono float32
    sample_rate: int
    text: str


class Voice(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[SpeechChunk]: ...
