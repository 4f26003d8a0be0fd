"""SIP load and protocol checks with SIPp (Debian ``sip-tester``, binary ``sipp``, 3.6.1).

    from tests.peers.sipp import run_uac, SippUas

    with SippUas() as uas:                                       # sipp -sn uas on a free port
        res = run_uac(uas.target, calls=10, rate=10, limit=5, hold_ms=200)
    assert res.successful == 10 and res.failed == 0, res.summary()

Scenarios (``tests/peers/sipp/``, pass the stem or a path as ``scenario``):
* ``uac_call``: INVITE with a PCMU SDP offer, optional 100/180/183, 200 (its Record-Route set and
  Contact are kept: ACK and BYE follow the dialog's route set), ACK, pause ``hold_ms``, BYE, 200.
* ``uac_cancel``: INVITE, 100 (required), optional 180/183, pause ``hold_ms``, CANCEL, 200 (to the
  CANCEL), 487, ACK. The callee must not answer within the pause.
* ``options``: one OPTIONS, expect 200.
No RTP is sent or answered (the SDP offers PCMU on sipp's media port only).

Results come from the files sipp writes into a temp dir (``-trace_stat -stf``: cumulative
SuccessfulCall(C) / FailedCall(C) and the failure reasons; ``-trace_counts``: per scenario step,
columns ``<index>_<code>_Recv`` for the responses the scenario expected; ``-trace_error_codes``:
codes of unexpected responses, comma-separated per period; ``-trace_err``: the unexpected messages
in full; ``-trace_screen``: the final screens) and from the exit status: 0 all calls successful,
1 at least one failed, 97 exit on internal command, 99 normal exit without calls processed, 255 /
-1 fatal error, 254 / -2 fatal error binding a socket.

Quirks: sipp's control port (UDP, default 8888) and media port (default 6000, and +2) are
allocated free here so several sipp can run at once; a UAS stops gracefully on SIGUSR1 (as if 'q'
was pressed) and ``-m N`` makes it stop after N calls; fractional rates are given as
``-r 1 -rp <ms>``; ``-recv_timeout`` (default 10 s here) bounds a call that gets no answer and
``-timeout`` (the Python ``timeout``) bounds the run.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, free_port

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).with_name("sipp")

EXIT_CODES = {0: "all calls successful", 1: "at least one call failed", 97: "exit on internal command",
              99: "normal exit without calls processed", 255: "fatal error", 254: "fatal error binding a socket"}


class SippError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("sipp") is not None


def scenario_path(scenario: str | os.PathLike) -> Path:
    p = Path(scenario)
    if p.suffix == ".xml" and p.exists():
        return p
    q = SCENARIOS / (str(scenario) + ("" if str(scenario).endswith(".xml") else ".xml"))
    if not q.exists():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} (looked for {p} and {q})")
    return q


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    responses: Counter = field(default_factory=Counter)   # code -> count, expected and unexpected
    unexpected: Counter = field(default_factory=Counter)  # code -> count of unexpected responses
    stats: dict = field(default_factory=dict)             # last row of the -trace_stat CSV
    counts: dict = field(default_factory=dict)            # last row of the -trace_counts CSV
    errors: str = ""                                      # -trace_err log
    screen: str = ""                                      # -trace_screen final screens
    output: str = ""                                      # stdout/stderr
    command: list = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    @property
    def created(self) -> int:
        return int(self.stats.get("TotalCallCreated", 0) or 0)

    def failures(self) -> dict:
        """Non-zero cumulative failure counters, e.g. {"FailedUnexpectedMessage": 3}."""
        out = {}
        for k, v in self.stats.items():
            if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)":
                try:
                    n = int(v)
                except ValueError:
                    continue
                if n:
                    out[k[:-3]] = n
        return out

    def summary(self) -> str:
        lines = [
            f"sipp exit {self.returncode} ({EXIT_CODES.get(self.returncode, '?')}), {self.elapsed:.1f}s: "
            f"created {self.created}, successful {self.successful}, failed {self.failed} "
            f"{self.failures() or ''}; responses {dict(self.responses)}; unexpected {dict(self.unexpected)}",
            "command: " + " ".join(self.command),
        ]
        if self.errors:
            lines.append("errors:\n" + self.errors[-3000:])
        if self.returncode not in (0, 1) and self.output:
            lines.append("output:\n" + self.output[-3000:])
        return "\n".join(lines)


def _read_csv_last(path: Path) -> dict:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def _collect(workdir: Path, returncode: int, output: str, command: list, elapsed: float) -> SippResult:
    stats = _read_csv_last(workdir / "stat.csv")
    counts_files = sorted(workdir.glob("*_counts.csv"))
    counts = _read_csv_last(counts_files[0]) if counts_files else {}
    responses: Counter = Counter()
    for k, v in counts.items():
        parts = k.split("_")
        if len(parts) == 3 and parts[1].isdigit() and parts[2] == "Recv":
            try:
                n = int(v)
            except ValueError:
                continue
            if n:
                responses[int(parts[1])] += n
    unexpected: Counter = Counter()
    for f in workdir.glob("*_error_codes.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            cells = line.split(";")
            if len(cells) < 3:
                continue
            for code in cells[2].split(","):
                code = code.strip()
                if code.isdigit():
                    unexpected[int(code)] += 1
    responses.update(unexpected)

    def num(name: str) -> int:
        try:
            return int(stats.get(name, 0) or 0)
        except ValueError:
            return 0

    errors = ""
    if (workdir / "errors.log").exists():
        errors = (workdir / "errors.log").read_text(errors="replace")
    screen = ""
    if (workdir / "screen.log").exists():
        screen = (workdir / "screen.log").read_text(errors="replace")
    return SippResult(returncode=returncode, successful=num("SuccessfulCall(C)"), failed=num("FailedCall(C)"),
                      responses=responses, unexpected=unexpected, stats=stats, counts=counts, errors=errors,
                      screen=screen, output=output, command=command, elapsed=elapsed)


def _common_args(workdir: Path, local_port: int, transport: str) -> list[str]:
    t = {"udp": "u1", "tcp": "t1"}.get(transport, transport)
    return ["-i", HOST, "-p", str(local_port), "-t", t, "-nostdin",
            "-cp", str(free_port("udp")), "-mi", HOST, "-mp", str(free_port("udp", span=4)),
            "-trace_stat", "-stf", str(workdir / "stat.csv"), "-fd", "1",
            "-trace_counts", "-trace_error_codes",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_screen", "-screen_file", str(workdir / "screen.log")]


def _rate_args(rate: float) -> list[str]:
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if float(rate).is_integer():
        return ["-r", str(int(rate))]
    if rate > 1:
        # N calls per 1000 ms with N integral: keep the period at 10 s for precision
        return ["-r", str(int(round(rate * 10))), "-rp", "10000"]
    return ["-r", "1", "-rp", str(int(round(1000 / rate)))]


def _listening(port: int, transport: str = "udp") -> bool:
    """Whether something on this machine is bound to UDP ``port`` / listens on TCP ``port``."""
    want = f":{port:04X}"
    tables = ("/proc/net/udp", "/proc/net/udp6") if transport == "udp" else ("/proc/net/tcp", "/proc/net/tcp6")
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[1].endswith(want) and (transport == "udp" or parts[3] == "0A"):
                return True
    return False


def run_uac(target: str, *, scenario: str | os.PathLike = "uac_call", service: str = "agent",
            calls: int = 1, rate: float = 10.0, limit: int | None = None, hold_ms: int = 1000,
            transport: str = "udp", local_port: int | None = None, recv_timeout_ms: int = 10000,
            timeout: float = 120.0, extra_args: tuple[str, ...] = (), keep_dir: str | os.PathLike | None = None
            ) -> SippResult:
    """Run sipp as UAC: ``calls`` calls of ``scenario`` to ``target`` ("host:port"), started at
    ``rate`` calls/s, at most ``limit`` at once, each holding ``hold_ms`` (the scenario's
    ``<pause/>``). ``service`` is the Request-URI user part. Blocks until sipp exits (``timeout``
    seconds at most: then it is killed and the counts so far are returned with returncode 124).
    Files are written to a temp dir, removed afterwards unless ``keep_dir`` names a dir to use."""
    if not available():
        raise SippError("sipp (Debian sip-tester) is not installed")
    workdir = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="sipp-uac-"))
    workdir.mkdir(parents=True, exist_ok=True)
    local_port = local_port or free_port("sip")
    cmd = [SIPP, target, "-sf", str(scenario_path(scenario)), "-s", service, "-m", str(calls),
           *_rate_args(rate), "-d", str(int(hold_ms)), "-recv_timeout", str(int(recv_timeout_ms)),
           "-timeout", f"{int(timeout)}s", *_common_args(workdir, local_port, transport)]
    if limit:
        cmd += ["-l", str(int(limit))]
    cmd += list(extra_args)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout + 10)
        rc, out = proc.returncode, proc.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.output or b"").decode("utf-8", "replace")
    try:
        return _collect(workdir, rc, out, cmd, time.monotonic() - t0)
    finally:
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def run_options(target: str, *, service: str = "ping", count: int = 1, **kw) -> SippResult:
    """``count`` OPTIONS pings to ``target``; successful = answered with 200."""
    kw.setdefault("rate", 10)
    return run_uac(target, scenario="options", service=service, calls=count, hold_ms=0, **kw)


class SippUas:
    """sipp as UAS in the background (default: the built-in ``-sn uas``: answers INVITE with 180
    and 200, expects ACK, answers BYE with 200), listening on 127.0.0.1:``port``.

    ``calls``: stop by itself after that many calls (-m); otherwise ``stop()`` (SIGUSR1, a
    graceful quit). ``stop()`` returns the SippResult, also kept as ``.result``."""

    def __init__(self, *, port: int | None = None, scenario: str | os.PathLike | None = None,
                 calls: int | None = None, transport: str = "udp", extra_args: tuple[str, ...] = (),
                 keep: bool = False):
        self.port = port or free_port("sip")
        self.scenario = scenario
        self.calls = calls
        self.transport = transport
        self.extra_args = extra_args
        self.keep = keep
        self.dir: Path | None = None
        self.result: SippResult | None = None
        self._proc: subprocess.Popen | None = None
        self._t0 = 0.0
        self._cmd: list[str] = []

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def uri(self) -> str:
        return f"sip:service@{HOST}:{self.port}"

    def start(self) -> SippUas:
        if not available():
            raise SippError("sipp (Debian sip-tester) is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="sipp-uas-"))
        scen = ["-sf", str(scenario_path(self.scenario))] if self.scenario else ["-sn", "uas"]
        self._cmd = [SIPP, *scen, *_common_args(self.dir, self.port, self.transport)]
        if self.calls:
            self._cmd += ["-m", str(self.calls)]
        self._cmd += list(self.extra_args)
        self._out = open(self.dir / "output.txt", "wb")
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(self._cmd, cwd=str(self.dir), stdin=subprocess.DEVNULL, stdout=self._out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        # listening once its port shows up in /proc/net/{udp,tcp} (probing with bind() could race
        # with sipp's own bind)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SippError(f"sipp UAS exited with {self._proc.returncode}: "
                                f"{(self.dir / 'output.txt').read_text(errors='replace')[-2000:]}")
            if _listening(self.port, "tcp" if self.transport == "tcp" else "udp"):
                return self
            time.sleep(0.05)
        self.stop()
        raise SippError("sipp UAS did not bind its port")

    def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for a UAS started with ``calls`` to stop by itself."""
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.stop()

    def stop(self, timeout: float = 8.0) -> SippResult:
        if self.result is not None:
            return self.result
        proc = self._proc
        assert proc is not None and self.dir is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._out.close()
        out = (self.dir / "output.txt").read_text(errors="replace")
        self.result = _collect(self.dir, proc.returncode, out, self._cmd, time.monotonic() - self._t0)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.result

    def __enter__(self) -> SippUas:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
