"""Reordering buffer for one RTP source: packets out in sequence order, each once, with a bounded
wait for a missing one.

Our own rather than `aiortc.jitterbuffer.JitterBuffer`, which is built for video frames and does
not fit telephone audio:
- it only skips a missing packet when the buffer is full, and then releases one packet per
  arrival, so after a single loss it holds capacity - 2 packets for the rest of the call (280 ms
  of added delay with capacity 16, measured);
- it joins consecutive packets with the same timestamp into one frame, which is exactly what the
  packets of an RFC 4733 key press are (they all carry the press's start timestamp);
- it releases nothing without a new arrival, so the end of an utterance waits for the next packet
  (never, if the remote goes quiet or on hold), and it counts no losses.

Here an in-order packet goes out at once (no added delay when nothing is missing: the consumer
places audio by its timestamp, it does not need a playout cushion), a gap is waited for until
the oldest packet behind it has waited `max_wait_s` or `capacity` packets are waiting, and then
given up on. Sans-IO: the caller passes arrival times and calls pop() at next_deadline().
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_MISORDER = 100  # RFC 3550 A.1: a packet this far behind is late; further, a new sequence
MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump this far ahead is a gap; further, a new sequence


def _unwrap(seq: int, reference: int) -> int:
    """The extended (unwrapped) sequence number closest to `reference` with these low 16 bits."""
    delta = (seq - reference) & 0xFFFF
    return reference + (delta - 0x10000 if delta >= 0x8000 else delta)


class JitterBuffer(Generic[T]):
    """Items keyed by 16-bit RTP sequence number, released in order."""

    def __init__(self, capacity: int = 16, max_wait_s: float = 0.06):
        self.capacity = capacity
        self.max_wait_s = max_wait_s
        self.lost = 0  # sequence numbers given up on
        self.late = 0  # packets that came after their number was given up on
        self.duplicates = 0
        self._next: int | None = None  # extended number of the next packet to release
        self._pending: dict[int, tuple[T, float]] = {}
        self._skipped: set[int] = set()  # recently given up on, to tell late packets from duplicates
        self._ready: list[T] = []  # flushed from a previous sequence, not yet popped
        self._probe: tuple[int, T, float] | None = None  # a jump out of the window, on probation

    def push(self, seq: int, item: T, now: float) -> bool:
        """Store a packet that arrived at `now`; False if it was dropped (duplicate, too late, or
        the first of a sequence jump, kept until the next packet confirms the jump)."""
        if self._next is None:
            self._next = seq
        ext = _unwrap(seq, self._next)
        delta = ext - self._next
        if -MAX_MISORDER <= delta < MAX_DROPOUT:
            self._probe = None
            if delta < 0 or ext in self._pending:
                if ext in self._skipped:
                    self.late += 1
                    self._skipped.discard(ext)
                else:
                    self.duplicates += 1
                return False
            self._pending[ext] = (item, now)
            return True
        # Far outside the window: the sender restarted its numbering (RFC 3550 A.1 "bad_seq").
        # Believe it when the next packet follows on, so that one stray packet changes nothing.
        if self._probe is not None and self._probe[0] == seq:
            _, first, arrived = self._probe
            self._ready += self.flush()
            self._next = (seq - 1) & 0xFFFF
            self._pending = {self._next: (first, arrived), self._next + 1: (item, now)}
            return True
        self._probe = ((seq + 1) & 0xFFFF, item, now)
        return False

    def pop(self, now: float) -> list[T]:
        """The items that may go out at `now`, in order."""
        out, self._ready = self._ready, []
        while self._pending:
            assert self._next is not None
            entry = self._pending.pop(self._next, None)
            if entry is not None:
                out.append(entry[0])
                self._next += 1
                continue
            oldest = min(arrived for _, arrived in self._pending.values())
            if len(self._pending) < self.capacity and now - oldest < self.max_wait_s:
                break
            first = min(self._pending)
            self.lost += first - self._next
            self._skipped.update(range(max(self._next, first - MAX_MISORDER), first))
            self._next = first
        if self._next is not None:
            self._skipped = {s for s in self._skipped if s >= self._next - MAX_MISORDER}
        return out

    def next_deadline(self) -> float | None:
        """When pop() will give up on the packet it is waiting for; None when it waits for none."""
        if not self._pending:
            return None
        return min(arrived for _, arrived in self._pending.values()) + self.max_wait_s

    def flush(self) -> list[T]:
        """Everything still held, in order, gaps ignored; the next push starts a new sequence."""
        out = self._ready + [self._pending[k][0] for k in sorted(self._pending)]
        self._ready, self._pending, self._next, self._probe = [], {}, None, None
        self._skipped.clear()
        return out
