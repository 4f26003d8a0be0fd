"""`voiceagent serve` worker processes for the cluster tests and benchmarks: SIP and HTTP on loopback, a
var dir of their own, one shared store ([store] db), each with its [cluster] worker name.

    worker = Worker("w1", tmp_path, postgres_url, rtp=(35000, 35499))
    worker.start(); ...; worker.healthy(); worker.kill()  # SIGKILL, as a crashed host
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from .ports import free_port

VOICEAGENT = str(Path(sys.executable).with_name("voiceagent"))


class Worker:
    """One `voiceagent serve` process: SIP and HTTP on loopback, its own var dir, the shared store."""

    def __init__(self, name: str, tmp_path: Path, store_url: str, *, max_calls: int = 3, rtp: tuple[int, int],
                 drain_s: float = 0.0, extra_toml: str = ""):
        self.name = name
        self.sip_port, self.http_port = free_port("sip"), free_port("tcp")
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.config = self.dir / "voiceagent.toml"
        self.config.write_text(
            "[call]\ngreeting = false\n"  # the sample callers start talking at once
            f"[sip]\nmax_calls = {max_calls}\ntrusted_proxies = [\"127.0.0.1\"]\n"
            f"rtp_port_min = {rtp[0]}\nrtp_port_max = {rtp[1]}\n"
            f"[store]\ndb = {json.dumps(store_url)}\n"
            f"[cluster]\nworker = \"{name}\"\ndrain_s = {drain_s}\n"
            f"[recordings]\ndir = {json.dumps(str(self.dir / 'recordings'))}\n" + extra_toml)
        self.log_path = self.dir / "serve.log"
        self.proc: subprocess.Popen | None = None

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [VOICEAGENT, "serve", "--config", str(self.config), "--sip", self.hostport,
                 "--http", f"127.0.0.1:{self.http_port}"], stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, VOICEAGENT_VAR=str(self.dir / "var")), start_new_session=True)

    def healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as r:
                return json.loads(r.read()).get("status") == "ok"
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no BYE, no goodbye, as a crashed host."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only this worker's processes
        self.proc.wait(5)

    def terminate(self) -> None:
        """SIGTERM, as a rolling restart or a scale-down sends it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
