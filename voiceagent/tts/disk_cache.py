"""Pre-synthesised speech kept on disk between runs, so that a restarted server speaks its hot
sentences (the greeting, the fixed replies, the knowledge base's answers) without synthesising them
again: reading ~200 sentences takes well under a second, synthesising them 26-46 s of CPU.

Layout: `<root>/<voice key>/<sha256 of the sentence>.pcm`. The voice key is the voice's name and a
fingerprint of what shapes its sound (the model files' size and mtime, the speed): a new model or
speed is a new directory, never a stale replay. Each file: a small JSON header (the sample rate, the
chunks' texts and lengths, the sentence itself) then mono int16 PCM. Written to a temporary name and
renamed, so a reader never sees half a file; a corrupt, truncated or foreign file reads as missing
(and is removed, the sentence is synthesised and written again). Bounded: past `max_bytes` the
files least recently used (by mtime, touched on every read) are removed. What goes in is the
writer's choice: CachedVoice writes only the shop's sentences (what the prewarm names), never a
call's own, which carry a caller's data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .voice import SpeechChunk

log = logging.getLogger(__name__)

MAGIC = b"VASPCH1\n"  # format version: a file of another version reads as missing
_HEADER_LEN = struct.Struct("<I")
SUFFIX = ".pcm"


def voice_key(name: str, files: Iterable[Path | str] = (), speed: float = 1.0) -> str:
    """A directory name for a voice: its name (made filename-safe) and a fingerprint of what shapes
    its sound: its files (small ones, its code, by content; large ones, its model, by path, size and
    mtime: hashing 60 MB on every start would cost more than it saves) and its speed."""
    h = hashlib.sha256(f"{name}|speed={speed:.4f}".encode())
    for f in sorted(str(p) for p in files):
        try:
            st = os.stat(f)
            if st.st_size <= 1 << 20:
                h.update(f"|{Path(f).name}|".encode() + hashlib.sha256(Path(f).read_bytes()).digest())
            else:
                h.update(f"|{f}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"|{f}|missing".encode())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "voice"
    return f"{safe}-{h.hexdigest()[:16]}"


def _file_name(sentence: str) -> str:
    return hashlib.sha256(sentence.encode("utf-8")).hexdigest() + SUFFIX


def encode(sentence: str, chunks: tuple[SpeechChunk, ...]) -> bytes:
    rates = {c.sample_rate for c in chunks}
    header = {"sentence": sentence, "rate": chunks[0].sample_rate if len(rates) == 1 else None,
              "chunks": [{"text": c.text, "n": int(len(c.samples)), "rate": c.sample_rate} for c in chunks]}
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    pcm = b"".join((np.clip(c.samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes() for c in chunks)
    return MAGIC + _HEADER_LEN.pack(len(head)) + head + pcm


def decode(data: bytes, sentence: str) -> tuple[SpeechChunk, ...] | None:
    """The chunks of a file's bytes, or None when they are not a whole file for this sentence."""
    try:
        if not data.startswith(MAGIC):
            return None
        (n,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _HEADER_LEN.size
        header = json.loads(data[start:start + n].decode("utf-8"))
        if not isinstance(header, dict) or header.get("sentence") != sentence:  # a collision or a foreign file
            return None
        pcm = np.frombuffer(data, dtype="<i2", offset=start + n)
        specs = header["chunks"]
        if not specs or sum(int(s["n"]) for s in specs) != len(pcm) or (len(data) - start - n) % 2:
            return None  # truncated (or padded): not the file that was written
        out, at = [], 0
        for s in specs:
            k, rate = int(s["n"]), int(s["rate"])
            if k < 0 or rate <= 0:
                return None
            samples = pcm[at:at + k].astype(np.float32) / 32767.0  # the scale it was written with
            out.append(SpeechChunk(samples, rate, str(s["text"])))
            at += k
        return tuple(out)
    except Exception:  # whatever is wrong with the file, it is a miss, never a failed call
        return None


class SpeechDiskCache:
    """Sentences' audio on disk, per voice key; thread-safe; every failure reads as a miss."""

    def __init__(self, root: Path | str, max_bytes: int = 256 << 20):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] = {}  # every file under root, scanned once
        self._bytes = 0
        self.reads = 0
        self.writes = 0
        self.corrupt = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for path in self.root.glob(f"*/*{SUFFIX}"):
                self._sizes[path] = path.stat().st_size
            stale = time.time() - 60  # another process sharing the folder may be writing a newer one
            for tmp in self.root.glob("*/*.tmp*"):  # a write cut short by a crash
                try:
                    if tmp.stat().st_mtime < stale:
                        tmp.unlink(missing_ok=True)
                except FileNotFoundError:  # renamed into place meanwhile
                    pass
        except OSError:
            log.exception("speech disk cache %s unreadable: starting empty", self.root)
        self._bytes = sum(self._sizes.values())

    def path(self, key: str, sentence: str) -> Path:
        return self.root / key / _file_name(sentence)

    def __contains__(self, item: tuple[str, str]) -> bool:
        with self._lock:
            return self.path(*item) in self._sizes

    def get(self, key: str, sentence: str) -> tuple[SpeechChunk, ...] | None:
        path = self.path(key, sentence)
        with self._lock:
            if path not in self._sizes:
                return None
        try:
            data = path.read_bytes()
        except OSError:
            self._forget(path)
            return None
        chunks = decode(data, sentence)
        if chunks is None:
            log.warning("speech disk cache: %s is corrupt; it will be synthesised again", path.name)
            self.corrupt += 1
            self._remove(path)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        self.reads += 1
        return chunks

    def put(self, key: str, sentence: str, chunks: tuple[SpeechChunk, ...]) -> None:
        if not chunks:
            return
        data = encode(sentence, chunks)
        if len(data) > self.max_bytes:
            return
        path = self.path(key, sentence)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        except OSError:
            log.exception("speech disk cache: writing %s failed", path)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self._bytes += len(data) - self._sizes.get(path, 0)
            self._sizes[path] = len(data)
            self.writes += 1
            over = self._bytes > self.max_bytes
        if over:
            self._evict()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._sizes)

    def _evict(self) -> None:
        """Removes the least recently used files until the cache fits its bound."""
        with self._lock:
            paths = list(self._sizes)
        ages = []
        for p in paths:
            try:
                ages.append((p.stat().st_mtime_ns, p))
            except OSError:
                ages.append((0, p))
        for _, p in sorted(ages):
            with self._lock:
                if self._bytes <= self.max_bytes:
                    return
            self._remove(p)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        self._forget(path)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._bytes -= self._sizes.pop(path, 0)
