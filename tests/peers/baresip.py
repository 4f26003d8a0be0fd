"""A real SIP phone for tests: one headless baresip process, driven over its ctrl_tcp interface.

    from tests.peers.baresip import Baresip

    with Baresip("alice", audio_source=SAMPLES / "en_order_status_16k.wav", pad_seconds=5) as alice:
        alice.dial("sip:agent@127.0.0.1:5060")
        alice.wait_for("CALL_ESTABLISHED", timeout=5)
        ...
        alice.hangup()
        alice.wait_for("CALL_CLOSED")
        heard = alice.heard_audio()          # float32 numpy array, 8 kHz: what the agent said

What was found by experiment on the installed Debian package (baresip-core 1.0.0-4, bookworm):

ctrl_tcp (module ``ctrl_tcp.so``, config ``ctrl_tcp_listen 127.0.0.1:PORT``) speaks netstrings
(``<len>:<payload>,``) whose payload is JSON, in both directions, on one TCP connection.

* command:  ``{"command": "dial", "params": "sip:b@127.0.0.1:5062", "token": "7"}``. The command
  names are the long names of the ``menu`` module (no leading slash), ``params`` is the rest of the
  command line as one string. Used here: ``dial <uri>``, ``accept``, ``hangup``, ``transfer <uri>``
  (only while a call is up: a call command of the menu), ``uanew <account line>``, ``reginfo``,
  ``listcalls``, ``quit``; ``help`` lists the others (``hold``, ``resume``, ``sndcode`` for DTMF,
  ``answermode``, ``callstat``, ...).
* response: ``{"response": true, "ok": true, "data": "<text the menu printed>", "token": "7"}``.
  ``ok`` is false when the command failed; ``data`` is human text (with ANSI colour codes).
* events: ``{"event": true, "type": "CALL_ESTABLISHED", "class": "call",
  "accountaor": "sip:a@127.0.0.1:5061", "direction": "outgoing", "peeruri": "sip:b@...",
  "id": "<Call-ID>", "param": "..."}``. Types seen: REGISTERING, REGISTER_OK, REGISTER_FAIL
  (class "register", no call fields), CALL_INCOMING (answermode=manual only), CALL_RINGING,
  CALL_LOCAL_SDP / CALL_REMOTE_SDP (param "offer"/"answer"), CALL_ESTABLISHED, CALL_RTPESTAB,
  CALL_RTCP (with "rtcp_stats"), TRANSFER (param: the Refer-To target), CALL_CLOSED (param: the
  reason, e.g. "Connection reset by user" on our side's hangup, "Connection reset by peer" on a BYE,
  "404 Not Found" for a failed INVITE, "end of file" when the audio source file ended, "Call
  transfered" on the transferor's side of a transfer). The first event of an outgoing call (CALL_LOCAL_SDP) comes
  before the Call-ID is known and has no "id".

Only one client may be connected; events are sent to it only while it is connected. So that no
REGISTER event is missed, the account is not in the ``accounts`` file: it is created with
``uanew`` once the control connection is up.

Call transfer: ``transfer <uri>`` makes baresip send REFER (Refer-To: uri) in the current call. A
baresip that receives a REFER answers 202, raises TRANSFER, dials the target itself, reports the
progress with NOTIFY (message/sipfrag), and the transferor then hangs up the first call: the
transferee ends in a call with the target (unattended/blind transfer).

Recording (module ``sndfile.so``, config ``snd_path DIR``): per call, two mono 16-bit WAV files at
the codec's rate (8000 Hz for PCMU) named ``dump-<YYYY-MM-DD-HH-MM-SS>-enc.wav`` (what this phone
sent: its audio source before encoding) and ``dump-<...>-dec.wav`` (what it heard: the decoded
audio from the peer; it starts with the first decoded packet). The timestamp is local time with one-second resolution and there is no call
identifier in the name: two calls of one phone that start in the same second write to the same
files (the later one wins). The files are complete (WAV header written) once the call has closed.

Other quirks:
* baresip 1.0.0 always listens for SIP over UDP and TCP on ``sip_listen`` and for SIP/TLS on TCP
  port+1 (there is no switch for it): the SIP port is allocated with ``free_port("sip", span=2)``.
* The ``aufile`` audio source ends the call when the file ends: ``pad_seconds`` appends silence.
  With no ``audio_source`` the phone sends silence for ``silence_seconds`` (120 s).
* ``call_max_calls`` defaults to 4 (``max_calls``).
* ``sip_trace=True`` starts baresip with ``-s``: every SIP message sent and received is printed to
  the log; ``sip_messages()`` parses them.
* SIGTERM is a graceful stop that unregisters first (slow when the registrar is gone): ``stop()``
  sends ``quit``, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .ports import HOST, free_port

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
RATE = 8000

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRACE_HEAD = re.compile(r"^(UDP|TCP|TLS) (\S+) -> (\S+)$")
_DUMP = re.compile(r"^dump-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-(enc|dec)\.wav$")


class BaresipError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("baresip") is not None and Path(MODULE_PATH, "ctrl_tcp.so").exists()


def convert_wav(src: str | os.PathLike, dst: str | os.PathLike, *, pad_seconds: float = 0.0,
                rate: int = RATE) -> Path:
    """Any WAV (any rate, channels, sample format) to mono s16 at ``rate``, with ``pad_seconds``
    of silence appended. Uses sox when installed, else soundfile and numpy."""
    dst = Path(dst)
    if shutil.which("sox"):
        cmd = ["sox", "-q", "-V1", str(src), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
               str(dst)]
        if pad_seconds > 0:
            cmd += ["pad", "0", f"{pad_seconds:.3f}"]
        subprocess.run(cmd, check=True, capture_output=True)
        return dst
    import soundfile as sf

    data, sr = sf.read(str(src), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != rate:
        n = int(round(len(mono) * rate / sr))
        mono = np.interp(np.linspace(0, len(mono) - 1, n), np.arange(len(mono)), mono).astype(np.float32)
    if pad_seconds > 0:
        mono = np.concatenate([mono, np.zeros(int(pad_seconds * rate), np.float32)])
    sf.write(str(dst), mono, rate, subtype="PCM_16")
    return dst


def write_silence(dst: str | os.PathLike, seconds: float, rate: int = RATE) -> Path:
    import soundfile as sf

    sf.write(str(dst), np.zeros(int(seconds * rate), np.int16), rate, subtype="PCM_16")
    return Path(dst)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], sample rate)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    """One baresip process with its own config dir, a SIP account and a ctrl_tcp connection.

    Parameters:
        user: user part of the account's address (``sip:USER@127.0.0.1:PORT`` when not
            registering, ``sip:USER@REGISTRAR`` when registering).
        port: SIP port on 127.0.0.1 (UDP and TCP; TCP port+1 is taken for TLS); default: free.
        audio_source: WAV file played into each call (converted to mono s16 8 kHz); None: silence.
        pad_seconds: silence appended to ``audio_source`` (the call ends when the file ends).
        silence_seconds: length of the silent source used when ``audio_source`` is None.
        record: record both directions of each call (``snd_path``); see ``recordings()``.
        auto_answer: answer incoming calls at once (answermode=auto), else ``accept()`` them.
        registrar: "host:port" / "sip:host:port" of a registrar: the account registers there
            (every ``regint`` seconds) with digest auth (``password``, ``auth_user``).
        outbound_proxy: "sip:host:port" through which every request is sent.
        transport: "udp" or "tcp" for requests to the registrar/proxy.
        sip_trace: log every SIP message (``sip_messages()``).
        keep: keep the temp dir (config, log, recordings) after ``stop()``.
        max_calls: ``call_max_calls``.
        extra_config: more lines for the config file.
        extra_account_params: more ``;name=value`` parameters for the account line.
    """

    def __init__(self, user: str = "bot", *, port: int | None = None,
                 audio_source: str | os.PathLike | None = None, pad_seconds: float = 0.0,
                 silence_seconds: float = 120.0, record: bool = True, auto_answer: bool = True,
                 registrar: str | None = None, password: str | None = None, auth_user: str | None = None,
                 regint: int = 60, outbound_proxy: str | None = None, transport: str = "udp",
                 sip_trace: bool = True, keep: bool = False, workdir: str | os.PathLike | None = None,
                 max_calls: int = 4, start_timeout: float = 10.0, extra_config: str = "",
                 extra_account_params: str = ""):
        if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", user):
            raise ValueError(f"unsupported user name {user!r}")
        if transport not in ("udp", "tcp"):
            raise ValueError("transport must be 'udp' or 'tcp'")
        self.user = user
        self.port = port or free_port("sip", span=2)
        self.ctrl_port = free_port("tcp")
        self.audio_source = audio_source
        self.pad_seconds = pad_seconds
        self.silence_seconds = silence_seconds
        self.record = record
        self.auto_answer = auto_answer
        self.registrar = _hostport(registrar) if registrar else None
        self.password = password
        self.auth_user = auth_user
        self.regint = regint
        self.outbound_proxy = outbound_proxy
        self.transport = transport
        self.sip_trace = sip_trace
        self.keep = keep
        self.max_calls = max_calls
        self.start_timeout = start_timeout
        self.extra_config = extra_config
        self.extra_account_params = extra_account_params
        self._workdir_arg = workdir

        self.dir: Path | None = None
        self.events: list[dict] = []
        self.responses: list[dict] = []
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._consumed: set[int] = set()
        self._pending: dict[str, dict | None] = {}
        self._tokens = itertools.count(1)
        self._send_lock = threading.Lock()
        self._closed = False
        self._log_file = None

    # ----------------------------------------------------------------------------------- addresses
    @property
    def host(self) -> str:
        return HOST

    @property
    def aor(self) -> str:
        """The account's address of record."""
        if self.registrar:
            return f"sip:{self.user}@{self.registrar}"
        return f"sip:{self.user}@{HOST}:{self.port}"

    @property
    def uri(self) -> str:
        """Where to reach this phone directly (no proxy)."""
        return f"sip:{self.user}@{HOST}:{self.port}"

    @property
    def record_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "rec"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "baresip.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def account_line(self) -> str:
        params = [f"answermode={'auto' if self.auto_answer else 'manual'}", "audio_codecs=PCMU"]
        if self.registrar:
            params.append(f"regint={self.regint}")
            if self.password is not None:
                params.append(f"auth_pass={self.password}")
            if self.auth_user:
                params.append(f"auth_user={self.auth_user}")
        else:
            params.append("regint=0")
        if self.outbound_proxy:
            params.append(f'outbound="{self.outbound_proxy}"')
        if self.extra_account_params:
            params.append(self.extra_account_params.lstrip(";"))
        transport = f";transport={self.transport}" if self.transport != "udp" else ""
        return f"<{self.aor}{transport}>;" + ";".join(params)

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self) -> Baresip:
        if self._proc is not None:
            return self
        if not available():
            raise BaresipError("baresip (Debian baresip-core) is not installed")
        if self._workdir_arg:
            self.dir = Path(self._workdir_arg)
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix=f"baresip-{self.user}-"))
        cfg = self.dir / "cfg"
        cfg.mkdir(exist_ok=True)
        self.record_dir.mkdir(exist_ok=True)
        source = self.dir / "source.wav"
        if self.audio_source is not None:
            convert_wav(self.audio_source, source, pad_seconds=self.pad_seconds)
        else:
            write_silence(source, self.silence_seconds)
        (cfg / "config").write_text(self._config_text(source))
        (cfg / "accounts").write_text("")  # the account is added with `uanew` (see module doc)
        (cfg / "contacts").write_text("")

        args = [BARESIP, "-f", str(cfg)]
        if self.sip_trace:
            args.append("-s")
        self._log_file = open(self.log_path, "wb")
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, cwd=str(self.dir), start_new_session=True)
        try:
            self._connect()
            resp = self.command("uanew", self.account_line())
            if not resp.get("ok", False):
                raise BaresipError(f"uanew failed: {resp}")
        except BaseException:
            self.stop()
            raise
        return self

    def _config_text(self, source: Path) -> str:
        lines = [
            "poll_method epoll",
            f"module_path {MODULE_PATH}",
            f"sip_listen {HOST}:{self.port}",
            f"net_interface {HOST}",
            "call_local_timeout 120",
            f"call_max_calls {self.max_calls}",
            # aubridge's player keeps time and discards: ALSA's "null" device never blocks, so its
            # playback thread spun a whole core per phone and starved the agent beside it
            "audio_player aubridge,voiceagent-discard",
            f"audio_source aufile,{source}",
            "audio_alert aubridge,voiceagent-discard",
            "ausrc_format s16",
            "auplay_format s16",
            "auenc_format s16",
            "audec_format s16",
            "rtp_stats no",
            "ringback_disabled yes",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
        ]
        if self.record:
            lines += [f"snd_path {self.record_dir}", "module sndfile.so"]
        lines += [
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {HOST}:{self.ctrl_port}",
        ]
        if self.extra_config:
            lines.append(self.extra_config.strip())
        return "\n".join(lines) + "\n"

    def _connect(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: OSError | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self._proc.returncode}:\n{self.log_text()}")
            try:
                self._sock = socket.create_connection((HOST, self.ctrl_port), timeout=1.0)
                break
            except OSError as e:
                last = e
                time.sleep(0.05)
        else:
            raise BaresipError(f"ctrl_tcp on port {self.ctrl_port} not up ({last}):\n{self.log_text()}")
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"baresip-{self.user}-ctrl", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 3.0) -> None:
        """quit, then SIGTERM, then SIGKILL; closes the control connection; removes the temp dir
        unless ``keep``."""
        proc = self._proc
        if proc is not None and proc.poll() is None and self._sock is not None and not self._closed:
            try:
                self.send("quit")
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.dir is not None and not self.keep and not self._workdir_arg and self.dir.exists():
            self._log_cache = self._read_log()
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> Baresip:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------------------ control channel
    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                try:
                    n = int(buf[:colon])
                except ValueError:  # out of sync: drop up to the next netstring
                    buf = buf[colon + 1:]
                    continue
                if len(buf) < colon + 1 + n + 1:
                    break
                payload = buf[colon + 1:colon + 1 + n]
                buf = buf[colon + 1 + n + 1:]
                try:
                    msg = json.loads(payload.decode("utf-8", "replace"))
                except json.JSONDecodeError:
                    continue
                self._dispatch(msg)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, msg: dict) -> None:
        with self._cond:
            msg["_t"] = time.monotonic()
            if msg.get("event"):
                self.events.append(msg)
            elif msg.get("response"):
                self.responses.append(msg)
                token = str(msg.get("token", ""))
                if token in self._pending:
                    self._pending[token] = msg
            self._cond.notify_all()

    def send(self, command: str, params: str | None = None) -> str:
        """Send a command without waiting for its response; returns its token."""
        if self._sock is None:
            raise BaresipError("not started")
        token = str(next(self._tokens))
        obj = {"command": command, "token": token}
        if params is not None:
            obj["params"] = params
        with self._cond:
            self._pending[token] = None
        with self._send_lock:
            self._sock.sendall(_netstring(json.dumps(obj).encode()))
        return token

    def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> dict:
        """Send a command and wait for its response ``{"ok": bool, "data": str, ...}``."""
        token = self.send(command, params)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending.get(token) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    self._pending.pop(token, None)
                    raise BaresipError(f"no response to {command!r} within {timeout}s:\n{self.log_tail()}")
                self._cond.wait(left)
            return self._pending.pop(token)

    def dial(self, uri: str) -> dict:
        return self._checked("dial", uri)

    def accept(self) -> dict:
        return self._checked("accept")

    def hangup(self) -> dict:
        """Hang up the current call."""
        return self._checked("hangup")

    def transfer(self, uri: str) -> dict:
        """Blind transfer of the current call: REFER with Refer-To ``uri``."""
        return self._checked("transfer", uri)

    def quit(self) -> None:
        self.send("quit")

    def reginfo(self) -> str:
        return _ANSI.sub("", self.command("reginfo").get("data", ""))

    def listcalls(self) -> str:
        return _ANSI.sub("", self.command("listcalls").get("data", ""))

    def _checked(self, command: str, params: str | None = None) -> dict:
        resp = self.command(command, params)
        if not resp.get("ok", False):
            raise BaresipError(f"{command} {params or ''} failed: {resp.get('data')!r}\n{self.log_tail()}")
        return resp

    # ---------------------------------------------------------------------------------------- events
    def wait_for(self, event_type: str | tuple[str, ...], timeout: float = 10.0,
                 predicate: Callable[[dict], bool] | None = None, consume: bool = True, **match) -> dict:
        """The first event of ``event_type`` (one type or a tuple of types) not yet returned by an
        earlier ``wait_for``, matching ``match`` (e.g. ``peeruri=...``, ``id=...``) and
        ``predicate``; waits up to ``timeout`` seconds for it. Events that came before the call
        count. Raises TimeoutError with the events and the log tail."""
        types = (event_type,) if isinstance(event_type, str) else tuple(event_type)

        def ok(i: int, ev: dict) -> bool:
            if i in self._consumed or ev.get("type") not in types:
                return False
            if any(ev.get(k) != v for k, v in match.items()):
                return False
            return predicate is None or predicate(ev)

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self.events):
                    if ok(i, ev):
                        if consume:
                            self._consumed.add(i)
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self._closed and not self.running):
                    seen = [e.get("type") for e in self.events]
                    raise TimeoutError(f"{self.user}: no {types} event within {timeout}s "
                                       f"(events: {seen})\n{self.log_tail()}")
                self._cond.wait(min(left, 0.5))

    async def await_for(self, event_type: str | tuple[str, ...], timeout: float = 10.0, **kw) -> dict:
        """``wait_for`` for asyncio code (runs in a worker thread)."""
        return await asyncio.to_thread(self.wait_for, event_type, timeout, **kw)

    def events_of(self, event_type: str) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("type") == event_type]

    def wait_registered(self, timeout: float = 10.0) -> dict:
        """REGISTER_OK, or BaresipError on REGISTER_FAIL."""
        ev = self.wait_for(("REGISTER_OK", "REGISTER_FAIL"), timeout)
        if ev["type"] != "REGISTER_OK":
            raise BaresipError(f"{self.user}: registration failed: {ev.get('param')}\n{self.log_tail()}")
        return ev

    # ------------------------------------------------------------------------------------------ logs
    def _read_log(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_bytes().decode("utf-8", "replace"))
        except (OSError, AssertionError):
            return ""

    def log_text(self) -> str:
        """baresip's stdout and stderr (ANSI colours removed)."""
        if self.dir is not None and self.log_path.exists():
            return self._read_log()
        return getattr(self, "_log_cache", "")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def sip_messages(self) -> list[dict]:
        """SIP messages from the trace (``sip_trace=True``), oldest first: dicts with ``proto``,
        ``src``, ``dst``, ``direction`` ("in" | "out"), ``first_line``, ``method`` (requests),
        ``status`` (responses, int), ``headers`` (list of (name, value)), ``text``."""
        out: list[dict] = []
        lines = self.log_text().split("\n")
        me = f"{HOST}:{self.port}"
        i = 0
        while i < len(lines):
            m = _TRACE_HEAD.match(lines[i].rstrip("\r"))
            if not m or i + 1 >= len(lines):
                i += 1
                continue
            body: list[str] = []
            j = i + 1
            while j < len(lines) and lines[j].endswith("\r"):
                body.append(lines[j][:-1])
                j += 1
            i = j
            if not body:
                continue
            first = body[0]
            headers = []
            for h in body[1:]:
                if not h:
                    break
                name, _, value = h.partition(":")
                headers.append((name.strip(), value.strip()))
            msg = {"proto": m.group(1), "src": m.group(2), "dst": m.group(3),
                   "direction": "in" if m.group(3) == me else "out", "first_line": first,
                   "headers": headers, "text": "\n".join(body), "method": None, "status": None}
            if first.startswith("SIP/2.0 "):
                try:
                    msg["status"] = int(first.split()[1])
                except (IndexError, ValueError):
                    pass
            else:
                msg["method"] = first.split(" ", 1)[0]
            out.append(msg)
        return out

    # ------------------------------------------------------------------------------------ recordings
    def all_recordings(self) -> list[dict]:
        """One dict per recorded call, oldest first: ``{"heard": Path | None, "sent": Path | None,
        "stamp": "YYYY-MM-DD-HH-MM-SS"}``; "heard" is the decoded audio from the peer
        (``-dec.wav``), "sent" what this phone sent (``-enc.wav``). Files whose stamps differ by
        at most one second are taken as one call (the two directions open at slightly different
        moments)."""
        if self.dir is None or not self.record_dir.exists():
            return []
        files: list[tuple[float, str, str, Path]] = []
        for p in self.record_dir.iterdir():
            m = _DUMP.match(p.name)
            if m:
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d-%H-%M-%S"))
                files.append((t, m.group(2), m.group(1), p))
        files.sort()
        calls: list[dict] = []
        for t, kind, stamp, p in files:
            key = "sent" if kind == "enc" else "heard"
            last = calls[-1] if calls else None
            if last is not None and last[key] is None and abs(t - last["_t"]) <= 1.0:
                last[key] = p
            else:
                calls.append({"heard": None, "sent": None, "stamp": stamp, "_t": t, key: p})
        for c in calls:
            c.pop("_t")
        return calls

    def recordings(self) -> dict:
        """The last call's recordings: ``{"heard": Path, "sent": Path, "stamp": ...}`` (see
        ``all_recordings``). Raises BaresipError when nothing was recorded."""
        calls = self.all_recordings()
        if not calls:
            raise BaresipError(f"{self.user}: no recordings in {self.dir and self.record_dir}")
        return calls[-1]

    def heard_audio(self) -> np.ndarray:
        """What this phone heard in its last call: float32 mono at 8 kHz."""
        path = self.recordings()["heard"]
        if path is None:
            raise BaresipError(f"{self.user}: no decode-direction recording")
        return read_wav(path)[0]

    def sent_audio(self) -> np.ndarray:
        path = self.recordings()["sent"]
        if path is None:
            raise BaresipError(f"{self.user}: no encode-direction recording")
        return read_wav(path)[0]


def _hostport(value: str) -> str:
    """"sip:host:port", "sip:user@host:port", "host:port" -> "host:port"."""
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    if v.startswith("sip:"):
        v = v[4:]
    v = v.split(";", 1)[0]
    return v.rsplit("@", 1)[-1]
