"""G.711 mu-law (PCMU) and A-law (PCMA), the two codecs every phone and PBX speaks (RFC 3551 4.5.14).

Table codecs: the ITU G.711 reference algorithm (the one in Sun's g711.c, which `audioop` also
implements) is evaluated once at import for all 65536 linear values and all 256 code words, so
coding a 20 ms frame is one numpy gather. aiortc's own G.711 goes through a PyAV codec context and
an `av.AudioFrame` per packet, which costs more than the lookup and needs 16-bit PCM frames anyway.

Samples are float32 in [-1, 1] as everywhere in the project; the float <-> 16-bit conversion is the
project's own (`float_to_pcm16`, `pcm16_to_float`), so a signal that went through G.711 here is
bit-identical to `audioop.lin2ulaw(float_to_pcm16(x))`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from telephony.audio import float_to_pcm16, pcm16_to_float

Encoder = Callable[[np.ndarray], bytes]
Decoder = Callable[[bytes], np.ndarray]

_LINEAR = np.arange(-32768, 32768, dtype=np.int32)  # index = int16 value + 32768
_CODES = np.arange(256, dtype=np.int32)


def _segment(value: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    """Index of the first segment end >= value (8 when above all of them), as g711.c's search()."""
    return np.searchsorted(np.asarray(ends), value, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = _LINEAR >> 2  # 14-bit magnitude; arithmetic shift as in the C reference
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)  # clip, then add the bias
    seg = _segment(pcm, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    code = (np.minimum(seg, 7) << 4) | ((pcm >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = _LINEAR >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(pcm, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((pcm >> shift) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~_CODES & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = _CODES ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()
_ULAW_DECODE = pcm16_to_float(_ulaw_decode_table())
_ALAW_DECODE = pcm16_to_float(_alaw_decode_table())


def _index(samples: np.ndarray) -> np.ndarray:
    return float_to_pcm16(np.asarray(samples, dtype=np.float32)).astype(np.int32) + 32768


def ulaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> one mu-law byte per sample."""
    return _ULAW_ENCODE[_index(samples)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> float32 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> one A-law byte per sample."""
    return _ALAW_ENCODE[_index(samples)].tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> float32 samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


CODECS: dict[str, tuple[Encoder, Decoder]] = {
    "PCMU": (ulaw_encode, ulaw_decode),
    "PCMA": (alaw_encode, alaw_decode),
}
