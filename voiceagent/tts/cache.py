"""Pre-synthesised speech: the audio of sentences the agent says again and again (the knowledge
base's answers, "请告诉我您的订单号", the greeting) is made once and replayed, so a hot question is
answered without running the synthesiser at all.

The cache holds sentences, not whole replies: a reply made of a cached policy answer and a fresh
order sentence replays the first and synthesises only the second. Bounded by memory (least
recently played evicted); shared by every call; thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Iterable, Iterator

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
    """A voice that replays cached sentences and caches the ones it synthesises."""

    def __init__(self, inner: Voice, cache: SpeechCache):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.sample_rate = inner.sample_rate

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            chunks = self.cache.get(self.name, sentence)
            if chunks is None:
                chunks = tuple(self.inner.synthesize(sentence))
                self.cache.put(self.name, sentence, chunks)
            yield from chunks

    def has(self, sentence: str) -> bool:
        """The sentence is ready to play (no synthesis needed)."""
        return (self.name, sentence) in self.cache

    def prewarm(self, texts: Iterable[str], stop: threading.Event | None = None) -> int:
        """Synthesises every sentence of `texts` not cached yet; returns how many it made. Stops
        between sentences once `stop` is set."""
        made = 0
        for text in texts:
            for sentence in split_sentences(text):
                if stop is not None and stop.is_set():
                    return made
                if self.cache.get(self.name, sentence) is None:
                    self.cache.put(self.name, sentence, tuple(self.inner.synthesize(sentence)))
                    made += 1
        return made
