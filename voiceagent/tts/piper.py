"""Piper neural TTS (ONNX), the default English voice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ModelMissing
from ..provision import resolve
from ..textnorm import speakable_en
from .sentences import split_sentences
from .voice import SpeechChunk

# Two intra-op threads that sleep rather than spin between operators: the first clause is what the
# caller waits for, and the second thread cuts its time by a third where the other core is free and
# was no slower with both cores busy; it costs about a quarter more CPU. (Spinning threads, ONNX's
# default, are what slow down when the other core is busy.) benchmarks/bench_first_clause.py
# --threads 2 1 compares them.
THREADS = 2


def _session(onnx: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(onnx), sess_options=options, providers=["CPUExecutionProvider"])


class PiperVoiceBackend:
    def __init__(self, ref: str, speed: float = 1.0, threads: int = THREADS):
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        path = resolve(ref, "tts")
        if path is None:
            raise ModelMissing(f"piper voice {ref!r} not found (a manifest id or a path to a .onnx voice)")
        onnx = next(iter(sorted(path.glob("*.onnx"))), None) if path.is_dir() else Path(path)
        if onnx is None or not onnx.is_file():
            raise ModelMissing(f"piper voice {ref!r}: no .onnx file in {path}")
        config = onnx.with_name(onnx.name + ".json")
        if not config.is_file():
            raise ModelMissing(f"piper voice {ref!r}: missing {config.name} beside {onnx.name}")
        # the session built here (PiperVoice.load takes no session options), once per voice
        self._voice = PiperVoice(session=_session(onnx, threads),
                                 config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))))
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
