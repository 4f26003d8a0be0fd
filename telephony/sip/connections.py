"""Which inbound SIP-over-TCP connections to keep, sans-IO: addresses and times in, decisions out.

A TCP connection costs a socket and a reader task whether or not anything comes over it, so
connections that say nothing must not pile up until new clients are locked out:
- a connection that sends no complete message within `first_message_s` of opening, or none for
  `idle_s` since its last one, is closed (bytes trickling in without ever completing a message do
  not count: that is how a slow client holds a socket);
- at most `max_connections` in all and `max_per_source` from one address: a new connection beyond
  either evicts the longest idle connection (of that address, for the per-address cap) or, when
  every one of them carries a call, is refused.
A connection that carries a live call or an unfinished transaction (`in_use()` lists them) is never closed by
this: a phone on a call may send nothing for minutes, and its BYE comes over that connection.
The endpoint (endpoint.py) owns the sockets and carries out the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection

Address = tuple[str, int]


@dataclass
class TcpLimits:
    max_connections: int = 1024  # inbound connections in all
    max_per_source: int = 32  # from one IP address (a PBX or proxy needs a few; NATs share addresses)
    first_message_s: float = 10.0  # a connection must send a complete message this soon after opening
    idle_s: float = 30.0  # then at least one every this long, unless it carries a call


@dataclass
class _Connection:
    address: Address
    opened_s: float
    last_message_s: float | None = None

    @property
    def active_s(self) -> float:
        """When it last did something that counts: its last complete message, or its opening."""
        return self.last_message_s if self.last_message_s is not None else self.opened_s


@dataclass(frozen=True)
class Admission:
    accepted: bool
    evict: tuple[Address, ...] = ()  # connections to close to make room for it


class ConnectionTable:
    def __init__(self, limits: TcpLimits, in_use: Callable[[], Collection[Address]] = frozenset):
        self.limits = limits
        self.in_use = in_use
        self._connections: dict[Address, _Connection] = {}
        self.stats = {"refused": 0, "evicted": 0, "timed_out": 0}

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, address: Address) -> bool:
        return address in self._connections

    def admit(self, address: Address, now: float) -> Admission:
        """A new inbound connection from `address`: keep it? (and which older ones go to make room)."""
        evict: list[Address] = []
        same_source = [c for c in self._connections.values() if c.address[0] == address[0]]
        if len(same_source) >= self.limits.max_per_source:
            victim = self._idlest(same_source, self.in_use())
            if victim is None:
                self.stats["refused"] += 1
                return Admission(False)
            evict.append(victim)
        if len(self._connections) - len(evict) >= self.limits.max_connections:
            victim = self._idlest([c for c in self._connections.values() if c.address not in evict], self.in_use())
            if victim is None:
                self.stats["refused"] += 1
                return Admission(False)
            evict.append(victim)
        for victim in evict:
            del self._connections[victim]
        self.stats["evicted"] += len(evict)
        self._connections[address] = _Connection(address, now)
        return Admission(True, tuple(evict))

    def message(self, address: Address, now: float) -> None:
        """A complete message came over the connection."""
        connection = self._connections.get(address)
        if connection is not None:
            connection.last_message_s = now

    def remove(self, address: Address) -> None:
        self._connections.pop(address, None)

    def expired(self, now: float) -> list[Address]:
        """Connections silent too long (and not in use): forgotten here, for the caller to close."""
        limits = self.limits
        in_use = self.in_use()
        out = []
        for connection in list(self._connections.values()):
            if connection.last_message_s is None:
                late = now - connection.opened_s >= limits.first_message_s
            else:
                late = now - connection.last_message_s >= limits.idle_s
            if late and connection.address not in in_use:
                out.append(connection.address)
                del self._connections[connection.address]
        self.stats["timed_out"] += len(out)
        return out

    def _idlest(self, candidates: list[_Connection], in_use: Collection[Address]) -> Address | None:
        """The connection idle longest among `candidates` that carry no call; None if all do."""
        free = [c for c in candidates if c.address not in in_use]
        return min(free, key=lambda c: c.active_s).address if free else None
