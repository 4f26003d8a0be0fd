"""Lexical features for the intent and anger classifiers (dialog/nlu.py, perception/text_emotion.py):
hashed character n-grams (Chinese) and word and character n-grams (English), L2-normalised. They
carry the keywords ("取消", "void", "绑定") that a sentence embedding blurs, and cost microseconds.
Its own module because dialog and perception both use it, and dialog imports perception."""

from __future__ import annotations

import re
import zlib

import numpy as np

DIM = 4096


def _grams(text: str) -> list[str]:
    text = text.lower()
    grams: list[str] = []
    cjk = re.sub(r"[^\u4e00-\u9fff]", " ", text)
    for run in cjk.split():
        grams += [f"c1:{c}" for c in run]
        grams += [f"c2:{run[i:i + 2]}" for i in range(len(run) - 1)]
        grams += [f"c3:{run[i:i + 3]}" for i in range(len(run) - 2)]
    words = re.findall(r"[a-z']+", text)
    grams += [f"w1:{w}" for w in words]
    grams += [f"w2:{a}_{b}" for a, b in zip(words, words[1:])]
    for w in words:
        padded = f"<{w}>"
        grams += [f"t3:{padded[i:i + 3]}" for i in range(len(padded) - 2)]
    if re.search(r"\d{5,}", text):
        grams.append("num:long")
    return grams


def lexical(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), DIM), np.float32)
    for i, text in enumerate(texts):
        for g in _grams(text):
            out[i, zlib.crc32(g.encode()) % DIM] += 1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out
