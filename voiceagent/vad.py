"""Voice activity detection: speech probability per fixed-size chunk of 16 kHz audio.

Two backends behind one small interface: Silero v6 (ONNX, the default: robust on phone audio) and
webrtcvad (microseconds per frame, for very high call counts).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import VadConfig
from .errors import ModelMissing
from .provision import resolve

SAMPLE_RATE = 16000


class VoiceActivityDetector(Protocol):
    chunk_samples: int  # the detector consumes exactly this many samples per call
    name: str

    def speech_probability(self, chunk: np.ndarray) -> float: ...

    def reset(self) -> None: ...


class _SileroSession:
    """The ONNX session is shared by all calls; each call keeps its own recurrent state."""

    _sessions: dict[str, object] = {}

    @classmethod
    def get(cls, path: str):
        if path not in cls._sessions:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            cls._sessions[path] = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)
        return cls._sessions[path]


class SileroVAD:
    chunk_samples = 512  # 32 ms at 16 kHz, as the model requires
    context_samples = 64

    def __init__(self, model_path: str):
        self.name = "silero-vad-v6"
        self._session = _SileroSession.get(model_path)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.context_samples, dtype=np.float32)

    def speech_probability(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = chunk[-self.context_samples :].astype(np.float32, copy=True)
        return float(np.asarray(out).reshape(-1)[0])


class WebRtcVAD:
    chunk_samples = 480  # 30 ms at 16 kHz

    def __init__(self, aggressiveness: int = 2):
        import webrtcvad

        self.name = f"webrtcvad-{aggressiveness}"
        self._vad = webrtcvad.Vad(aggressiveness)

    def reset(self) -> None:
        pass

    def speech_probability(self, chunk: np.ndarray) -> float:
        pcm = (np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes()
        return 1.0 if self._vad.is_speech(pcm, SAMPLE_RATE) else 0.0


def create_vad(config: VadConfig) -> VoiceActivityDetector:
    if config.backend == "webrtc":
        return WebRtcVAD(config.webrtc_aggressiveness)
    if config.backend != "silero":
        raise ModelMissing(f"unknown VAD backend {config.backend!r} (use silero or webrtc)")
    path = resolve(config.model, "vad")
    if path is None:
        raise ModelMissing(f"VAD model {config.model!r} not found (a manifest id or a path to an .onnx file)")
    if path.is_dir():
        path = next(path.glob("*.onnx"))
    return SileroVAD(str(path))
