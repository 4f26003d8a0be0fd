"""Pre-synthesised speech: the audio of sentences the agent says again and again (the knowledge
base's answers, "请告诉我您的订单号", the greeting) is made once and replayed, so a hot question is
answered without running the synthesiser at all.

The cache holds sentences, not whole replies: a reply made of a cached policy answer and a fresh
order sentence replays the first and synthesises only the second. Bounded by memory (least
recently played evicted); shared by every call; thread-safe. Behind it, optionally, the same
sentences on disk (disk_cache.py): a restart replays them instead of synthesising them again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Iterable, Iterator

from .disk_cache import SpeechDiskCache
from .sentences import split_sentences
from .voice import SpeechChunk, Voice

log = logging.getLogger(__name__)


class SpeechCache:
    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[SpeechChunk, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, voice: str, sentence: str) -> tuple[SpeechChunk, ...] | None:
        with self._lock:
            item = self._items.get((voice, sentence))
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end((voice, sentence))
            self.hits += 1
            return item

    def put(self, voice: str, sentence: str, chunks: tuple[SpeechChunk, ...]) -> None:
        size = sum(c.samples.nbytes for c in chunks)
        if not chunks or size > self.max_bytes:
            return
        for c in chunks:
            c.samples.setflags(write=False)  # shared by every call that replays it
        with self._lock:
            old = self._items.pop((voice, sentence), None)
            if old is not None:
                self._bytes -= sum(c.samples.nbytes for c in old)
            self._items[(voice, sentence)] = chunks
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= sum(c.samples.nbytes for c in evicted)

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes


class CachedVoice:
    """A voice that replays cached sentences and caches the ones it synthesises: memory first, then
    the disk store (when one is given: sentences kept between runs), then the synthesiser.

    Only the sentences the prewarm names (the greeting, the fixed replies, the knowledge base's
    answers: the shop's words) go to disk, whenever they are made; a call's own sentences ("您的订单
    38512074已在..."), which carry a caller's data, stay in memory and leave with the process."""

    def __init__(self, inner: Voice, cache: SpeechCache, disk: SpeechDiskCache | None = None, disk_key: str = ""):
        self.inner = inner
        self.cache = cache
        self.disk = disk
        self.disk_key = disk_key or inner.name
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.synthesised = 0  # sentences this process had to synthesise (not replayed)
        self._kept: set[str] = set()  # the sentences that may go to disk (named by prewarm)

    def _ready(self, sentence: str) -> tuple[SpeechChunk, ...] | None:
        """The sentence's audio from memory, or from disk (then kept in memory); None if neither."""
        chunks = self.cache.get(self.name, sentence)
        if chunks is None and self.disk is not None:
            chunks = self.disk.get(self.disk_key, sentence)
            if chunks is not None:
                self.cache.put(self.name, sentence, chunks)
        return chunks

    def _make(self, sentence: str, into_memory: bool = True) -> tuple[SpeechChunk, ...]:
        chunks = tuple(self.inner.synthesize(sentence))
        self.synthesised += 1
        if into_memory or self.disk is None:
            self.cache.put(self.name, sentence, chunks)
        if self.disk is not None and sentence in self._kept:
            self.disk.put(self.disk_key, sentence, chunks)
        return chunks

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            chunks = self._ready(sentence)
            yield from chunks if chunks is not None else self._make(sentence)

    def has(self, sentence: str) -> bool:
        """The sentence is ready to play (no synthesis needed: in memory or on disk)."""
        return (self.name, sentence) in self.cache or (self.disk is not None and (self.disk_key, sentence) in self.disk)

    def prewarm(self, texts: Iterable[str], stop: threading.Event | None = None,
                wait: Callable[[], None] | None = None, into_memory: bool = True) -> int:
        """Makes every sentence of `texts` ready to play (read from disk or synthesised); returns how
        many it readied. Stops between sentences once `stop` is set; calls `wait` before each
        synthesis (background work waiting for the calls in progress to end). `into_memory=False`
        (with a disk store): what is on disk stays there and what is made goes there only, so that
        the memory keeps what it holds (the greeting and fixed replies)."""
        made = 0
        sentences = _sentences(texts)
        self._kept.update(sentences)
        for sentence in sentences:
            if stop is not None and stop.is_set():
                return made
            if (self.name, sentence) in self.cache:
                continue
            on_disk = self.disk is not None and (self.disk_key, sentence) in self.disk
            if on_disk and not into_memory:
                continue
            if self._ready(sentence) is None:
                if wait is not None:
                    wait()
                    if stop is not None and stop.is_set():
                        return made
                self._make(sentence, into_memory)
            made += 1
        return made


def _sentences(texts: Iterable[str]) -> list[str]:
    """The sentences of `texts`, in order, each once."""
    return list(dict.fromkeys(s for text in texts for s in split_sentences(text)))
