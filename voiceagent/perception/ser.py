"""An optional speech-emotion model, plugged in by path ([perception] ser_model).

Two kinds of model directory are read:
- ONNX: `model.onnx` taking 16 kHz mono float32 samples shaped [1, n] (the input name does not
  matter; wav2vec2/HuBERT emotion models exported with optimum look like this) and giving logits
  [1, k], with `labels.json`, the k label names in order.
- A Hugging Face audio-classification directory (`config.json` with `id2label`), run by
  transformers when it is installed (it is not a default dependency).

The model's labels map onto the product's (angry, anxious, hesitant, neutral, satisfied); its
probability of anger joins the words and the voice. Nothing here is needed offline by default.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelMissing

# Common SER label names (IEMOCAP, RAVDESS, CREMA-D, CASIA...) onto ours.
LABEL_MAP = {"ang": "angry", "angry": "angry", "anger": "angry", "mad": "angry", "frustrated": "angry",
             "fru": "angry", "disgust": "angry", "dis": "angry", "neu": "neutral", "neutral": "neutral",
             "calm": "neutral", "sad": "neutral", "hap": "satisfied", "happy": "satisfied", "joy": "satisfied",
             "exc": "satisfied", "excited": "satisfied", "surprise": "neutral", "sur": "neutral", "fear": "anxious",
             "fea": "anxious", "fearful": "anxious", "anxious": "anxious"}
SAMPLE_RATE = 16000


class SpeechEmotionModel:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        if (self.path / "model.onnx").exists():
            import onnxruntime as ort

            labels_file = self.path / "labels.json"
            if not labels_file.exists():
                raise ModelMissing(f"speech-emotion model {self.path}: labels.json is missing")
            self.labels = [str(x) for x in json.loads(labels_file.read_text(encoding="utf-8"))]
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.path / "model.onnx"), options,
                                                 providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            self._pipeline = None
        elif (self.path / "config.json").exists():
            try:
                from transformers import pipeline
            except ImportError:
                raise ModelMissing(f"speech-emotion model {self.path} needs transformers (pip install transformers torch)") from None
            self._pipeline = pipeline("audio-classification", model=str(self.path), device="cpu")
            self.labels = list(self._pipeline.model.config.id2label.values())
        else:
            raise ModelMissing(f"speech-emotion model {self.path}: neither model.onnx nor config.json found")
        self.name = f"ser:{self.path.name}"

    def probabilities(self, audio: np.ndarray) -> dict[str, float]:
        """Our labels' probabilities for a 16 kHz turn (labels the model lacks are absent)."""
        audio = audio.astype(np.float32, copy=False)
        if self._pipeline is not None:
            raw = {r["label"]: float(r["score"]) for r in self._pipeline(audio, top_k=None)}
        else:
            with self._lock:
                logits = np.asarray(self._session.run(None, {self._input: audio[None, :]})[0], dtype=np.float64)
            logits = logits.reshape(-1)[: len(self.labels)]
            p = np.exp(logits - logits.max())
            p /= p.sum()
            raw = dict(zip(self.labels, p.tolist()))
        ours: dict[str, float] = {}
        for label, prob in raw.items():
            mapped = LABEL_MAP.get(label.lower().strip())
            if mapped:
                ours[mapped] = ours.get(mapped, 0.0) + prob
        return {k: round(v, 3) for k, v in ours.items()}
