"""Piper neural TTS (ONNX), the default English voice."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ModelMissing
from ..provision import resolve
from ..textnorm import speakable_en
from .sentences import split_sentences
from .voice import SpeechChunk


class PiperVoiceBackend:
    def __init__(self, ref: str, speed: float = 1.0):
        from piper import PiperVoice, SynthesisConfig

        path = resolve(ref, "tts")
        if path is None:
            raise ModelMissing(f"piper voice {ref!r} not found (a manifest id or a path to a .onnx voice)")
        onnx = next(iter(sorted(path.glob("*.onnx"))), None) if path.is_dir() else Path(path)
        if onnx is None or not onnx.is_file():
            raise ModelMissing(f"piper voice {ref!r}: no .onnx file in {path}")
        config = onnx.with_name(onnx.name + ".json")
        if not config.is_file():
            raise ModelMissing(f"piper voice {ref!r}: missing {config.name} beside {onnx.name}")
        self._voice = PiperVoice.load(str(onnx), str(config))
        self._syn_config = SynthesisConfig(length_scale=1.0 / speed if speed > 0 else 1.0)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.name = f"piper:{onnx.stem}"

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            spoken = speakable_en(sentence)
            audio = [c.audio_float_array for c in self._voice.synthesize(spoken, syn_config=self._syn_config)]
            if audio:
                # piper normalises to full scale; leave headroom for resampling and the line codec
                yield SpeechChunk(0.8 * np.concatenate(audio).astype(np.float32), self.sample_rate, sentence)
