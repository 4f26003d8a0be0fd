"""Free ports on 127.0.0.1 for the SIP peers of the tests.

Ports are drawn at random from 20000-31999, below Linux's ephemeral range (32768-60999), so the
kernel does not hand one of them to an outgoing socket between the check here and the moment the
peer binds it. A port handed out once is not handed out again by this process (two fixtures asking
before either peer has bound its port get different ones).

``kind``: "udp", "tcp", or "sip" (both UDP and TCP free: SIP listens on both). ``span``: that many
consecutive ports, all free (baresip binds SIP/TLS on TCP port+1 of its SIP port: use span=2 there;
sipp's media port uses port and port+2).
"""

from __future__ import annotations

import random
import socket
import threading

HOST = "127.0.0.1"
LOW, HIGH = 20000, 31999

_lock = threading.Lock()
_given: set[int] = set()


def _bindable(port: int, kinds: tuple[int, ...], host: str) -> bool:
    for sock_type in kinds:
        s = socket.socket(socket.AF_INET, sock_type)
        try:
            if sock_type == socket.SOCK_STREAM:
                # Same as servers do (baresip, kamailio): a TIME_WAIT left by an earlier test is no
                # obstacle, a listener is.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(kind: str = "sip", *, span: int = 1, host: str = HOST) -> int:
    """A port on ``host`` free for ``kind`` ("udp" | "tcp" | "sip" = both), with the ``span - 1``
    ports after it free as well. Raises RuntimeError when none is found."""
    kinds = {
        "udp": (socket.SOCK_DGRAM,),
        "tcp": (socket.SOCK_STREAM,),
        "sip": (socket.SOCK_DGRAM, socket.SOCK_STREAM),
    }.get(kind)
    if kinds is None:
        raise ValueError(f"kind must be 'udp', 'tcp' or 'sip', not {kind!r}")
    if span < 1:
        raise ValueError("span must be >= 1")
    rng = random.Random()
    with _lock:
        for _ in range(500):
            port = rng.randrange(LOW, HIGH - span + 1)
            block = range(port, port + span)
            if any(p in _given for p in block):
                continue
            if all(_bindable(p, kinds, host) for p in block):
                _given.update(block)
                return port
    raise RuntimeError(f"no free {kind} port (span {span}) found on {host}")


def release_port(port: int, span: int = 1) -> None:
    """Let ``free_port`` hand these out again (optional: the range is large)."""
    with _lock:
        _given.difference_update(range(port, port + span))
