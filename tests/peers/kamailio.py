"""A real SIP registrar/proxy for tests: Kamailio in the foreground, one per test.

    from tests.peers.kamailio import Kamailio

    with Kamailio(users={"agent": "secret", "alice": "pw"}) as k:
        alice = Baresip("alice", registrar=k.hostport, password="pw")
        ...
        assert any(r["method"] == "INVITE" for r in k.requests())

The config is ``tests/peers/kamailio.cfg`` with the placeholders filled in (listen address and
port, realm, the users table) and written to a temp dir, together with the runtime dir (-Y) and the
pid file (-P): nothing is read from or written to /etc, /var or /run, and root is not needed.
Started as ``kamailio -DD -E -f CFG -Y RUNDIR -P PIDFILE -w DIR -m 32 -M 4`` in a new session (so
its children go with it), stdout/stderr to ``kamailio.log``.

What the config does (see the .cfg for details):
* registrar: REGISTER is saved in usrloc (memory only, the user part alone is the key). With
  ``auth_register`` (default) REGISTER is challenged with 401 (digest, ``realm``) and checked
  against the cleartext passwords of ``users`` (an htable filled at start): a wrong password or an
  unknown user gets 403 at once (instead of a new challenge, which a phone would retry), and so does
  an auth user that is not the To user.
* ``auth_invite``: initial INVITEs whose From user is in ``users`` are challenged with 407.
* proxy: every initial request but REGISTER gets ``record_route()`` (Record-Route
  ``<sip:127.0.0.1:PORT;lr;ftag=...>``); a request for this proxy's domain goes to the
  registered contact (``lookup``; 404 when the user is not registered), any other is relayed to its
  Request-URI; in-dialog requests are loose-routed; CANCEL follows its INVITE's transaction.
  OPTIONS to the proxy itself (no user part) is answered 200 (used as readiness check).
* every request is logged as a line ``REQ <method> <ruri> from=.. to=.. src=ip:port proto=..
  rr=[<Route header>]``, every reply relayed as ``RPL <code> <reason> for <method> src=..``:
  ``requests()`` and ``replies()`` parse them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from .ports import HOST, free_port

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
TEMPLATE = Path(__file__).with_name("kamailio.cfg")

_REQ = re.compile(r"REQ (\S+) (\S+) from=(\S*) to=(\S*) src=(\S+) proto=(\S+) rr=\[(.*)\]$")
_RPL = re.compile(r"RPL (\d{3}) (.*) for (\S+) src=(\S+)$")


class KamailioError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("kamailio") is not None or Path(KAMAILIO).exists()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Kamailio:
    """Kamailio on 127.0.0.1:``port`` (UDP and TCP).

    Parameters:
        port: default: a free one.
        users: ``{"user": "cleartext password"}`` for digest auth.
        realm: digest realm.
        auth_register: challenge REGISTER (else anyone may register).
        auth_invite: challenge initial INVITEs from users of ``users``.
        keep: keep the temp dir (config, log) after ``stop()``.
        debug: Kamailio's log level (2 = info, includes the REQ/RPL lines).
        children: worker processes per listener.
    """

    def __init__(self, *, port: int | None = None, users: dict[str, str] | None = None,
                 realm: str = "voiceagent.test", auth_register: bool = True, auth_invite: bool = False,
                 keep: bool = False, debug: int = 2, children: int = 2, start_timeout: float = 10.0,
                 workdir: str | os.PathLike | None = None):
        self.port = port or free_port("sip")
        self.users = dict(users or {})
        for name in self.users:
            if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", name):
                raise ValueError(f"unsupported user name {name!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", realm):
            raise ValueError(f"unsupported realm {realm!r}")
        self.realm = realm
        self.auth_register = auth_register
        self.auth_invite = auth_invite
        self.keep = keep
        self.debug = debug
        self.children = children
        self.start_timeout = start_timeout
        self._workdir_arg = workdir
        self.dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._log_cache = ""

    # ----------------------------------------------------------------------------------- addresses
    @property
    def host(self) -> str:
        return HOST

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def uri(self) -> str:
        """The proxy's own URI (for outbound proxy / registrar settings)."""
        return f"sip:{HOST}:{self.port}"

    def aor(self, user: str) -> str:
        """``sip:user@127.0.0.1:PORT``: the address of a user registered here."""
        return f"sip:{user}@{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "kamailio.log"

    @property
    def config_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "kamailio.cfg"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # ----------------------------------------------------------------------------------- lifecycle
    def config_text(self) -> str:
        users = "\n".join(f'\t$sht(users=>{u}) = "{_quote(p)}";' for u, p in self.users.items())
        text = TEMPLATE.read_text()
        for key, value in (("ADDR", HOST), ("PORT", str(self.port)), ("REALM", self.realm),
                           ("USERS", users or "\t$var(nousers) = 0;")):
            text = text.replace(f"%%{key}%%", value)
        text = text.replace("debug=2", f"debug={self.debug}", 1)
        text = text.replace("children=2\ntcp_children=2",
                            f"children={self.children}\ntcp_children={self.children}", 1)
        return text

    def command_line(self) -> list[str]:
        assert self.dir is not None
        args = [KAMAILIO, "-DD", "-E", "-f", str(self.config_path), "-Y", str(self.dir / "run"),
                "-P", str(self.dir / "run" / "kamailio.pid"), "-w", str(self.dir), "-m", "32", "-M", "4"]
        if self.auth_register:
            args += ["-A", "WITH_AUTH"]
        if self.auth_invite:
            args += ["-A", "WITH_INVITE_AUTH"]
        return args

    def start(self) -> Kamailio:
        if self._proc is not None:
            return self
        self._check_available()
        if self._workdir_arg:
            self.dir = Path(self._workdir_arg)
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix=self.TEMP_PREFIX))
        (self.dir / "run").mkdir(exist_ok=True)
        self._write_files()
        self._log_file = open(self.log_path, "wb")
        self._proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, cwd=str(self.dir), start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    TEMP_PREFIX = "kamailio-"

    def _check_available(self) -> None:
        if not available():
            raise KamailioError("kamailio (Debian kamailio) is not installed")

    def _write_files(self) -> None:
        """What the run reads from its temp dir (here: the filled-in config)."""
        self.config_path.write_text(self.config_text())

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KamailioError(f"kamailio exited with {self._proc.returncode}:\n{self.log_tail()}")
            status = self.options_ping(timeout=0.3)
            if status is not None and status.startswith("SIP/2.0 200"):
                if self._tcp_up():
                    return
            time.sleep(0.1)
        raise KamailioError(f"kamailio on {self.hostport} not ready within {self.start_timeout}s:\n"
                            f"{self.log_tail()}")

    def _tcp_up(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def options_ping(self, timeout: float = 1.0) -> str | None:
        """Send one OPTIONS over UDP to the proxy itself; the reply's status line, or None."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((HOST, 0))
            lport = s.getsockname()[1]
            call_id = uuid.uuid4().hex
            msg = (f"OPTIONS sip:{HOST}:{self.port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bK-{call_id[:16]};rport\r\n"
                   f"Max-Forwards: 70\r\n"
                   f"From: <sip:probe@{HOST}:{lport}>;tag={call_id[16:24]}\r\n"
                   f"To: <sip:{HOST}:{self.port}>\r\n"
                   f"Call-ID: {call_id}\r\n"
                   f"CSeq: 1 OPTIONS\r\n"
                   f"Content-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), (HOST, self.port))
            s.settimeout(timeout)
            data, _ = s.recvfrom(65536)
            return data.decode("utf-8", "replace").split("\r\n", 1)[0]
        except OSError:
            return None
        finally:
            s.close()

    def stop(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the main process stops its children
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only kamailio's processes
                except ProcessLookupError:
                    pass
                proc.wait(5)
        if proc is not None:
            # children left behind (main process killed): they are in the same process group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.dir is not None and self.log_path.exists():
            self._log_cache = self._read_log()
        if self.dir is not None and not self.keep and not self._workdir_arg and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> Kamailio:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------------------------------ logs
    def _read_log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        if self.dir is not None and self.log_path.exists():
            return self._read_log()
        return self._log_cache

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def requests(self) -> list[dict]:
        """Requests that reached the proxy, oldest first: ``{"method", "ruri", "from", "to", "src",
        "proto", "route"}`` ("route": the Route header, "<null>" when none)."""
        out = []
        for line in self.log_text().splitlines():
            m = _REQ.search(line)
            if m:
                out.append(dict(zip(("method", "ruri", "from", "to", "src", "proto", "route"), m.groups())))
        return out

    def replies(self) -> list[dict]:
        """Replies relayed by the proxy: ``{"status": int, "reason", "method", "src"}``."""
        out = []
        for line in self.log_text().splitlines():
            m = _RPL.search(line)
            if m:
                out.append({"status": int(m.group(1)), "reason": m.group(2), "method": m.group(3),
                            "src": m.group(4)})
        return out
