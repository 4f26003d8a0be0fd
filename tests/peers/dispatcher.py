"""The shipped Kamailio dispatcher (docker/kamailio/kamailio.cfg) in front of SIP workers, for tests.

    from tests.peers.dispatcher import KamailioDispatcher

    with KamailioDispatcher({"w1": "127.0.0.1:25071", "w2": "127.0.0.1:25072"}) as proxy:
        proxy.wait_state("w1", "A", timeout=15)        # probed with OPTIONS, answered 200
        phone.dial(proxy.aor("agent"))
        proxy.dispatched()                              # [(Call-ID, worker name), ...]

It runs THE shipped file itself (not a copy), with its #!ifndef defaults overridden on the command
line: -A LISTEN_UDP / LISTEN_TCP (127.0.0.1 and a free port), DS_LIST_FILE (a dispatcher.list written to
the temp dir, in the shipped list's format), CTL_SOCKET (kamcmd's unix socket in the temp dir),
WORKER_MATCH=2 (workers known by address and port: the tests' workers and phones all share 127.0.0.1,
where the shipped default, address alone, would take every phone for a worker), and -Y / -P / -w for the runtime dir, pid file and working dir: nothing in /etc, /var or /run. The
destinations start inactive and probed (flags 9), as in the shipped list. The state of each worker
comes from Kamailio's RPC `dispatcher.list` (over kamcmd); the dispatch decisions from the log lines
``DISPATCH <Call-ID> to sip:HOST:PORT`` (and ``next sip:...`` on failover) the config writes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from .kamailio import KAMAILIO, Kamailio, KamailioError, available as kamailio_available

SHIPPED_CFG = Path(__file__).resolve().parents[2] / "docker" / "kamailio" / "kamailio.cfg"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"

_DISPATCH = re.compile(r"DISPATCH (\S+) (?:to|next) (sip:\S+)")
_DEST = re.compile(r"URI: (sip:\S+)\s+FLAGS: (\w+)")
_LOAD = re.compile(r"URI: (sip:\S+)\s+FLAGS:.*?DLGLOAD: (\d+)", re.S)


def available() -> bool:
    return kamailio_available() and Path(KAMCMD).exists()


class KamailioDispatcher(Kamailio):
    """docker/kamailio/kamailio.cfg on 127.0.0.1:``port`` in front of ``workers`` ({name: "host:port"},
    the name is the destination's duid). ``maxload``: each worker's maxload attribute (its max_calls);
    ``round_robin``: run with -A WITH_ROUND_ROBIN; ``worker_match``: ds_is_from_list's mode (WORKER_MATCH;
    2: address and port, 3: address alone, the shipped default)."""

    def __init__(self, workers: dict[str, str], *, maxload: int = 4, round_robin: bool = False,
                 port: int | None = None, keep: bool = False, start_timeout: float = 10.0, children: int = 2,
                 worker_match: int = 2):
        super().__init__(port=port, auth_register=False, keep=keep, start_timeout=start_timeout, children=children)
        if not workers:
            raise ValueError("a dispatcher needs at least one worker")
        for name, hostport in workers.items():
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or not re.fullmatch(r"[0-9.]+:\d+", hostport):
                raise ValueError(f"worker {name!r} at {hostport!r}: want a plain name and IP:PORT")
        self.workers = dict(workers)
        self.maxload = maxload
        self.round_robin = round_robin
        self.worker_match = worker_match

    @property
    def list_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "dispatcher.list"

    @property
    def ctl_socket(self) -> str:
        assert self.dir is not None
        return f"unix:{self.dir / 'run' / 'kamailio_ctl'}"

    def worker_uri(self, name: str) -> str:
        return f"sip:{self.workers[name]}"

    def list_text(self) -> str:
        # flags 9: inactive + probing, as the shipped list: no calls before a worker's first 200
        return "".join(f"1 sip:{hostport} 9 0 duid={name};maxload={self.maxload}\n"
                       for name, hostport in self.workers.items())

    def command_line(self) -> list[str]:
        assert self.dir is not None
        args = [KAMAILIO, "-DD", "-E", "-f", str(SHIPPED_CFG), "-Y", str(self.dir / "run"),
                "-P", str(self.dir / "run" / "kamailio.pid"), "-w", str(self.dir), "-m", "32", "-M", "4",
                "-A", f"LISTEN_UDP=udp:{self.host}:{self.port}", "-A", f"LISTEN_TCP=tcp:{self.host}:{self.port}",
                "-A", f'DS_LIST_FILE="{self.list_path}"', "-A", f'CTL_SOCKET="{self.ctl_socket}"',
                "-A", f"WORKER_MATCH={self.worker_match}", "-n", str(self.children)]
        if self.round_robin:
            args += ["-A", "WITH_ROUND_ROBIN"]
        return args

    TEMP_PREFIX = "kamailio-dispatcher-"

    def _check_available(self) -> None:
        if not available():
            raise KamailioError("kamailio and kamcmd (Debian kamailio) are not installed")

    def _write_files(self) -> None:
        self.list_path.write_text(self.list_text())  # the shipped cfg itself is run, not a copy

    # -------------------------------------------------------------------------------- what it does
    def rpc(self, *command: str, timeout: float = 5.0) -> str:
        result = subprocess.run([KAMCMD, "-s", self.ctl_socket, *command], capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise KamailioError(f"kamcmd {' '.join(command)}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def states(self) -> dict[str, str]:
        """{worker name: flags}, e.g. "AP" (active, probed), "IP" (inactive), "TP" (trying: one probe
        failed), from the RPC dispatcher.list."""
        by_uri = {self.worker_uri(name): name for name in self.workers}
        return {by_uri.get(uri, uri): flags for uri, flags in _DEST.findall(self.rpc("dispatcher.list"))}

    def loads(self) -> dict[str, int]:
        """{worker name: calls the dispatcher counts on it} (call-load dispatching; 0 with round robin)."""
        by_uri = {self.worker_uri(name): name for name in self.workers}
        text = self.rpc("dispatcher.list")
        return {by_uri.get(uri, uri): int(load) for uri, load in _LOAD.findall(text)}

    def wait_state(self, name: str, state: str, timeout: float) -> float:
        """Seconds until worker ``name``'s state letter is ``state`` ("A", "I", "T"); KamailioError
        after ``timeout``."""
        start = time.monotonic()
        while True:
            flags = self.states().get(name, "")
            if flags.startswith(state):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise KamailioError(f"worker {name} still {flags!r}, not {state!r}, after {timeout}s:\n"
                                    f"{self.log_tail(30)}")
            time.sleep(0.2)

    def dispatched(self) -> list[tuple[str, str]]:
        """(Call-ID, worker name) of every INVITE sent to a worker, in order (a failover adds a line)."""
        by_uri = {self.worker_uri(name): name for name in self.workers}
        return [(call_id, by_uri.get(uri, uri)) for call_id, uri in _DISPATCH.findall(self.log_text())]
