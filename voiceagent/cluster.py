"""Which worker this process is, among the many `voiceagent serve` processes behind one Kamailio and one
Postgres: the name goes on its metrics (the `worker` label), on every call it stores, and on the events its
console shares with the others."""

from __future__ import annotations

import os
import re
import socket

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def worker_name(configured: str = "") -> str:
    """[cluster] worker, else $VOICEAGENT_WORKER, else host:pid; at most 64 plain characters (it is a
    metric label and a column)."""
    name = configured or os.environ.get("VOICEAGENT_WORKER", "") or f"{socket.gethostname()}:{os.getpid()}"
    return _SAFE.sub("-", name)[:64] or "worker"
