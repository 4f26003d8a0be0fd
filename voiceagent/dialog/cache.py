"""Hot-question cache: the same context-free question gets the same answer without running the
NLU, the tools or the LLM again ("什么时候发货", "退货运费谁出" asked a thousand times a day).

Only replies that depend on nothing but the words are cached: policy and knowledge-base answers,
small talk. Anything that read an order, a customer or the conversation so far is not.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass


def normalise(text: str) -> str:
    return re.sub(r"[\s,.!?;:，。！？；：、~～…\"'“”‘’]+", "", text.lower())


@dataclass(frozen=True)
class CachedReply:
    text: str
    intent: str
    grounding: tuple[str, ...]
    resolved: bool
    understanding: object  # the Understanding of the first time it was asked
    pending_intent: str | None = None  # the flow the reply offers to continue ("tell me the order number")


class HotCache:
    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._items: OrderedDict[tuple, CachedReply] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, lang: str, tier: str | None, text: str) -> CachedReply | None:
        key = (lang, tier or "new", normalise(text))
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, lang: str, tier: str | None, text: str, reply: CachedReply) -> None:
        key = (lang, tier or "new", normalise(text))
        if not key[2]:
            return
        with self._lock:
            self._items[key] = reply
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def texts(self) -> list[str]:
        """Reply texts held, most recent last: what the voice side pre-synthesises."""
        with self._lock:
            return [item.text for item in self._items.values()]
