"""Call recordings: every call's audio, the caller on the left channel and the agent on the right,
compressed, kept for a retention period, deleted on request, and decoded to WAV for operators.

A `CallRecorder` is fed 20 ms frames from the event loop, so each frame costs a resample step and a
copy into an in-memory int16 buffer, nothing more. Each side's frames land at their `start_s` on
the call's timeline (the two channels line up sample for sample; gaps stay silent; late or
overlapping frames go where they belong and never shift what follows). When the buffer passes
~10 s, all but its last seconds are spilled by a background thread to `DIR/<call_id>.part` (raw
int16, interleaved), so a 30-minute call holds a few hundred kB, and a killed process leaves the
spilled audio behind for `RecordingStore.recover()`. `finish()` (blocking: run it in a thread)
encodes the 2-channel file.

Format: Ogg/Opus when libsndfile has it and the rate is one Opus takes (8/12/16/24/48 kHz), else
FLAC. Opus at a fixed ~38 kbit/s for the pair (libsndfile compression level 0.95) is ~270 kB per
minute of speech at 8 or 16 kHz, with the two channels kept apart (crosstalk under -44 dB; at 0.97,
~28 kbit/s, an onset leaked into the other channel at -12 dB); FLAC of telephone speech is ~1.1 MB
per minute at 8 kHz, ~1.45 MB at 16 kHz.

With a store (`RecordingStore(..., database=)`), each finished recording also gets a row in the
`recordings` table (which worker, where, format, size, length): the files stay on the disk that wrote
them, and a worker asked for another worker's recording finds it through the index when that path is
on a volume every worker mounts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from telephony.audio import AudioFrame, StreamResampler, float_to_pcm16

from .. import paths
from ..cluster import worker_name
from ..config import RecordingsConfig
from ..db import Database
from ..errors import ConfigError

log = logging.getLogger(__name__)

CALL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CALLER, AGENT = 0, 1  # channel index: caller left, agent right
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_COMPRESSION_LEVEL = 0.95  # libsndfile maps it to a bitrate: ~38 kbit/s for the two channels
FORMATS = ("auto", "opus", "flac")
SUFFIXES = (".ogg", ".flac")
PHONE_RATE, BROWSER_RATE = 8000, 16000
SPILL_S = 10.0  # the buffer is spilled to the .part file past this much audio ...
HOLD_S = 2.0  # ... all but its last seconds, where late frames and resampler tails still land
MAX_CALL_S = 6 * 3600.0  # frames stamped beyond this are garbage, not a call
CONTIGUOUS_S = 0.001  # a frame this close to where the last one ended continues the same stream
BYTES_PER_FRAME = 4  # int16 x 2 channels


class BadCallId(ValueError):
    """A call id that is not `^[A-Za-z0-9_.-]{1,64}$`: never made into a path."""


def check_call_id(call_id: str) -> str:
    if not isinstance(call_id, str) or not CALL_ID.match(call_id) or call_id in (".", ".."):
        raise BadCallId(f"bad call id: {call_id!r}")
    return call_id


def recording_rate(channel_kind: str) -> int:
    """The rate to record a channel at: the browser (and a simulated call from a file) is wideband,
    a phone line is 8 kHz and recording it finer keeps nothing the caller had."""
    return BROWSER_RATE if channel_kind in ("webrtc", "file", "chat") else PHONE_RATE


def opus_available() -> bool:
    try:
        return "OPUS" in sf.available_subtypes("OGG")
    except Exception:  # an old libsndfile without Ogg at all
        return False


@dataclass(frozen=True)
class Encoding:
    format: str  # libsndfile major format
    subtype: str
    suffix: str


OPUS = Encoding("OGG", "OPUS", ".ogg")
FLAC = Encoding("FLAC", "PCM_16", ".flac")
FORMAT_OF_SUFFIX = {".ogg": "opus", ".flac": "flac"}  # what the index says of a file


def choose_encoding(rate: int, preference: str = "auto") -> Encoding:
    if preference != "flac" and rate in OPUS_RATES and opus_available():
        return OPUS
    return FLAC


class _Track:
    """One source (caller, agent or supervisor) onto the recording's timeline: a streaming resampler
    for as long as frames follow each other, restarted where they jump (a gap, a late frame)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._stream: StreamResampler | None = None
        self._src_rate = 0
        self._next_in_s = 0.0  # where the stream's next frame is expected on the call's clock
        self._out_pos = 0  # where the stream's next output sample goes on the recording's timeline

    def feed(self, frame: AudioFrame) -> list[tuple[int, np.ndarray]]:
        """(position, samples at the recording's rate) pieces to write for this frame."""
        samples = np.asarray(frame.samples)
        if samples.ndim != 1 or samples.size == 0 or not frame.sample_rate or frame.sample_rate <= 0:
            return []
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        samples = np.nan_to_num(samples.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        start_s = float(frame.start_s)
        if not np.isfinite(start_s) or start_s + len(samples) / frame.sample_rate <= 0 or start_s > MAX_CALL_S:
            return []
        if start_s < 0:  # the part before the call began
            samples = samples[int(round(-start_s * frame.sample_rate)):]
            start_s = 0.0
        pieces = []
        if (self._stream is None or frame.sample_rate != self._src_rate
                or abs(start_s - self._next_in_s) > CONTIGUOUS_S):
            pieces += self.flush()
            self._stream = StreamResampler(frame.sample_rate, self.rate)
            self._src_rate = frame.sample_rate
            self._out_pos = int(round(start_s * self.rate))
            self._next_in_s = start_s
        self._next_in_s += len(samples) / frame.sample_rate
        pieces += self._emit(self._stream.process(samples))
        return pieces

    def stalled_before(self, pos: int) -> bool:
        """Its last frame ended before `pos`: a stream waiting for audio that is not coming soon."""
        return self._stream is not None and self._next_in_s * self.rate < pos

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """The resampler's held-back tail; the next frame starts a new stream."""
        if self._stream is None:
            return []
        tail = [] if self._stream.passthrough else self._emit(self._stream.process(np.zeros(0, np.float32), last=True))
        self._stream = None
        return tail

    def _emit(self, out: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if not len(out):
            return []
        pos = self._out_pos
        self._out_pos += len(out)
        return [(pos, out)]


class _PartFile:
    """The spilled audio on disk, written only by the recorder's background thread: raw int16
    stereo at absolute frame offsets (a hole reads back as zeros), its rate beside it in JSON."""

    def __init__(self, path: Path, rate: int):
        self.path, self.rate = path, rate
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            meta = self.path.with_name(self.path.name + ".json")
            meta.write_text(json.dumps({"rate": self.rate, "channels": 2, "sample": "int16le"}), encoding="utf-8")
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        return self._fd

    def write(self, offset: int, stereo: np.ndarray) -> None:
        os.pwrite(self._open(), np.ascontiguousarray(stereo, dtype="<i2").tobytes(), offset * BYTES_PER_FRAME)

    def patch(self, offset: int, channel: int, mono: np.ndarray, mix: bool) -> None:
        """A late piece of one channel into audio already spilled: read, change one side, write back."""
        fd = self._open()
        raw = os.pread(fd, len(mono) * BYTES_PER_FRAME, offset * BYTES_PER_FRAME)
        block = np.zeros((len(mono), 2), np.int16)
        have = np.frombuffer(raw, dtype="<i2")
        block.reshape(-1)[: len(have)] = have
        block[:, channel] = _mixed(block[:, channel], mono) if mix else mono
        self.write(offset, block)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _mixed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.int32) + b.astype(np.int32), -32768, 32767).astype(np.int16)


class CallRecorder:
    """One call's audio. `caller`, `agent` and `supervisor` are called on the event loop per frame;
    `finish` once, in a thread, after the call."""

    def __init__(self, call_id: str, rate: int = BROWSER_RATE, directory: str | Path | None = None,
                 fmt: str = "auto", spill_s: float = SPILL_S, hold_s: float = HOLD_S,
                 on_done: Callable[[str, Path | None], None] | None = None):
        self.call_id = check_call_id(call_id)
        if rate <= 0:
            raise ValueError(f"bad recording rate: {rate}")
        self.rate = rate
        self.dir = Path(directory) if directory is not None else paths.var_dir() / "recordings"
        self.encoding = choose_encoding(rate, fmt)
        self._spill_at = max(1, int(spill_s * rate))
        self._hold = min(int(hold_s * rate), self._spill_at // 2)
        self._on_done = on_done
        self._tracks = {"caller": _Track(rate), "agent": _Track(rate), "supervisor": _Track(rate)}
        self._buf = np.zeros((self._spill_at + self._hold + rate, 2), np.int16)
        self._base = 0  # timeline position of _buf[0]; everything before it is in the .part file
        self._end = 0  # timeline position just past the last sample written
        self._heard = False
        self._part = _PartFile(self.dir / f"{self.call_id}.part", rate)
        self._writer: ThreadPoolExecutor | None = None  # one thread: the spills keep their order
        self._lock = threading.Lock()  # frames come on the loop, finish() in a thread
        self._closed = False
        self._spill_failed = False

    # -- on the event loop ---------------------------------------------------------------------
    def caller(self, frame: AudioFrame) -> None:
        self._feed("caller", CALLER, frame, mix=False)

    def agent(self, frame: AudioFrame) -> None:
        self._feed("agent", AGENT, frame, mix=False)

    def supervisor(self, frame: AudioFrame) -> None:
        """During a takeover the supervisor speaks for the agent: mixed into the agent's channel."""
        self._feed("supervisor", AGENT, frame, mix=True)

    @property
    def buffered_bytes(self) -> int:
        """Memory the audio in hand takes (bounded whatever the call's length)."""
        return self._buf.nbytes

    @property
    def spilled(self) -> bool:
        return self._writer is not None

    @property
    def duration_s(self) -> float:
        return self._end / self.rate

    def _feed(self, track: str, channel: int, frame: AudioFrame, mix: bool) -> None:
        with self._lock:
            if self._closed:
                return
            for pos, samples in self._tracks[track].feed(frame):
                self._place(pos, channel, samples, mix)
            if self._end - self._base > self._spill_at:
                self._spill(self._end - self._hold, quiet_before=self._end - self._hold)

    def _place(self, pos: int, channel: int, samples: np.ndarray, mix: bool) -> None:
        pcm = float_to_pcm16(samples)
        self._heard = True
        if pos < self._base:  # late: that part of the timeline is on disk already
            cut = min(len(pcm), self._base - pos)
            self._submit(self._part.patch, pos, channel, pcm[:cut], mix)
            pos, pcm = self._base, pcm[cut:]
            if not len(pcm):
                return
        if pos - self._end > self._spill_at:  # a long hole: spill what is here, leave the hole on disk
            self._spill(None, quiet_before=pos)
            self._base = self._end = pos
        end = pos + len(pcm)
        if end - self._base > len(self._buf):
            grown = np.zeros((max(2 * len(self._buf), end - self._base), 2), np.int16)
            grown[: len(self._buf)] = self._buf
            self._buf = grown
        view = self._buf[pos - self._base : end - self._base, channel]
        view[:] = _mixed(view, pcm) if mix else pcm
        self._end = max(self._end, end)

    def _spill(self, upto: int | None, quiet_before: float) -> None:
        """Hand [base, upto) (None: all) to the writer thread and keep the rest. A stream whose source
        went quiet before `quiet_before` is closed first, so its held-back tail is in what goes."""
        self._flush_tracks(quiet_before)
        upto = self._end if upto is None else upto
        count = upto - self._base
        if count <= 0:
            return
        self._submit(self._part.write, self._base, self._buf[:count].copy())
        kept = self._end - upto
        self._buf[:kept] = self._buf[count : count + kept]
        self._buf[kept:] = 0
        self._base = upto

    def _flush_tracks(self, quiet_before: float) -> None:
        for track, channel, mix in (("caller", CALLER, False), ("agent", AGENT, False), ("supervisor", AGENT, True)):
            if self._tracks[track].stalled_before(quiet_before):
                for pos, samples in self._tracks[track].flush():
                    self._place(pos, channel, samples, mix)

    def _submit(self, job: Callable, *args) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rec-{self.call_id}")
        future = self._writer.submit(job, *args)
        future.add_done_callback(self._log_failure)

    def _log_failure(self, future) -> None:
        if future.exception() is not None and not self._spill_failed:
            self._spill_failed = True  # once: a full disk would say it every 8 s
            log.warning("recording %s: spill failed: %s", self.call_id, future.exception())

    # -- in a thread, after the call ------------------------------------------------------------
    def finish(self) -> Path | None:
        """Encode the recording (blocking); None when the call had no audio at all."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._flush_tracks(float("inf"))
            if self._writer is not None:
                self._spill(None, quiet_before=float("inf"))
        path = None
        try:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._part.close()
                path = encode_part(self._part.path, self.rate, self.encoding) if self._heard else None
            elif self._heard:
                self.dir.mkdir(parents=True, exist_ok=True)
                path = _encode(self.dir / f"{self.call_id}{self.encoding.suffix}", self.encoding, self.rate,
                               iter([self._buf[: self._end - self._base]]))
            return path
        finally:
            self._buf = np.zeros((0, 2), np.int16)
            if self._on_done is not None:
                self._on_done(self.call_id, path)


def _encode(target: Path, encoding: Encoding, rate: int, blocks: Iterator[np.ndarray]) -> Path:
    """Blocks of int16 stereo into `target`, through a temporary file: a reader never sees half a file."""
    tmp = target.with_name(target.name + ".tmp")
    kwargs = {"compression_level": OPUS_COMPRESSION_LEVEL} if encoding is OPUS else {}
    with sf.SoundFile(tmp, "w", rate, 2, encoding.subtype, format=encoding.format, **kwargs) as out:
        for block in blocks:
            out.write(block)
    for other in SUFFIXES:  # a call id recorded again replaces its recording, whatever the format
        if other != target.suffix:
            target.with_suffix(other).unlink(missing_ok=True)
    os.replace(tmp, target)
    return target


def encode_part(part: Path, rate: int | None = None, encoding: Encoding | str = "auto") -> Path:
    """A .part file (raw int16 stereo) into its recording; the .part and its JSON are removed after."""
    meta = part.with_name(part.name + ".json")
    if rate is None:
        try:
            rate = int(json.loads(meta.read_text(encoding="utf-8"))["rate"])
        except (OSError, ValueError, KeyError, TypeError):
            rate = PHONE_RATE  # killed before its first spill had its rate written: most calls are phone calls
    encoding = choose_encoding(rate, encoding) if isinstance(encoding, str) else encoding
    call_id = part.name[: -len(".part")]
    frames = part.stat().st_size // BYTES_PER_FRAME
    data = np.memmap(part, dtype="<i2", mode="r", shape=(frames, 2)) if frames else np.zeros((0, 2), np.int16)
    block = rate * 30
    path = _encode(part.with_name(f"{call_id}{encoding.suffix}"), encoding, rate,
                   (np.asarray(data[i : i + block]) for i in range(0, frames, block)))
    del data
    part.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)
    return path


def _lower_priority() -> None:
    try:  # Linux: the nice value of this thread alone
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _wav_header(frames: int, rate: int, channels: int = 2) -> bytes:
    size = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", size))


class RecordingStore:
    """The recordings of one deployment: `DIR/<call_id>.ogg` (or `.flac`), kept `retention_days`.
    `database`: the store whose `recordings` table indexes them (None: the files alone)."""

    def __init__(self, directory: str | Path, retention_days: float = 90, fmt: str = "auto",
                 database: Database | None = None, worker: str = ""):
        if fmt not in FORMATS:
            raise ConfigError(f"recordings.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.dir = Path(directory)
        self.retention_days = retention_days
        self.fmt = fmt
        self.db = database
        self.worker = worker_name(worker)
        self._active: set[str] = set()  # calls being recorded now: their .part is not leftover
        self._lock = threading.Lock()
        self._encoder: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: RecordingsConfig, database: Database | None = None,
                    worker: str = "") -> "RecordingStore":
        return cls(Path(config.dir) if config.dir else paths.var_dir() / "recordings",
                   config.retention_days, config.format, database, worker)

    def recorder(self, call_id: str, rate: int = BROWSER_RATE) -> CallRecorder:
        check_call_id(call_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._active.add(call_id)
        return CallRecorder(call_id, rate, self.dir, self.fmt, on_done=self._done)

    def finish_later(self, recorder: CallRecorder) -> Future:
        """`recorder.finish()` on the store's one encoder thread, at low CPU priority: Opus encodes at
        ~60x real time, so a 30-minute call is half a minute of one core, which live calls come before."""
        with self._lock:
            if self._encoder is None:
                self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rec-encode",
                                                   initializer=_lower_priority)
            return self._encoder.submit(recorder.finish)

    def _done(self, call_id: str, path: Path | None = None) -> None:
        with self._lock:
            self._active.discard(call_id)
        if path is not None:
            self._index(call_id, path)

    # -- the index in the store ----------------------------------------------------------------
    def _index(self, call_id: str, path: Path) -> None:
        """The recording's row (replacing one of an earlier recording of the same call id). A store
        that cannot be written loses the row, never the file: `path` still finds it on this worker."""
        if self.db is None:
            return
        try:
            duration_s = float(sf.info(str(path)).duration)
            with self.db.connect() as conn:
                conn.execute("INSERT INTO recordings (call_id, worker, path, format, bytes, duration_s, created_at) "
                             "VALUES (?,?,?,?,?,?,?) ON CONFLICT (call_id) DO UPDATE SET worker = excluded.worker, "
                             "path = excluded.path, format = excluded.format, bytes = excluded.bytes, "
                             "duration_s = excluded.duration_s, created_at = excluded.created_at",
                             (call_id, self.worker, str(path.resolve()), FORMAT_OF_SUFFIX.get(path.suffix, path.suffix),
                              path.stat().st_size, round(duration_s, 3), time.time()))
        except Exception as exc:  # noqa: BLE001 - the recording is kept whatever the store says
            log.warning("recording %s: not indexed in the store: %s", call_id, exc)

    def indexed(self, call_id: str) -> dict | None:
        """The call's row in the store's index (None: none, or no store)."""
        check_call_id(call_id)
        if self.db is None:
            return None
        with self.db.connect() as conn:
            row = conn.execute("SELECT call_id, worker, path, format, bytes, duration_s, created_at FROM recordings "
                               "WHERE call_id = ?", (call_id,)).fetchone()
        return dict(zip(row.keys(), row)) if row else None

    def path(self, call_id: str) -> Path | None:
        """The call's recording: in this worker's folder, else where the index says another worker put it,
        when that path is readable here (a volume all workers mount)."""
        check_call_id(call_id)
        for suffix in SUFFIXES:
            candidate = self.dir / f"{call_id}{suffix}"
            if candidate.is_file():
                return candidate
        row = self.indexed(call_id)
        if row is not None:
            candidate = Path(row["path"])
            if candidate.suffix in SUFFIXES and candidate.stem == call_id and candidate.is_file():
                return candidate
        return None

    def exists(self, call_id: str) -> bool:
        return self.path(call_id) is not None

    def wav_chunks(self, call_id: str, block_s: float = 10.0) -> Iterator[bytes]:
        """The recording as a 16-bit PCM WAV (caller left, agent right), a header then blocks, for a
        streaming response. FileNotFoundError when there is none (checked before the first chunk)."""
        path = self.path(call_id)
        if path is None:
            raise FileNotFoundError(f"no recording of call {call_id}")
        audio = sf.SoundFile(path)
        return self._wav_blocks(audio, block_s)

    @staticmethod
    def _wav_blocks(audio: sf.SoundFile, block_s: float) -> Iterator[bytes]:
        with audio:
            frames, rate, channels = audio.frames, audio.samplerate, audio.channels
            yield _wav_header(frames, rate, channels)
            left = frames
            for block in audio.blocks(blocksize=max(1, int(block_s * rate)), dtype="int16", always_2d=True):
                block = block[:left]
                left -= len(block)
                yield block.astype("<i2", copy=False).tobytes()
                if left <= 0:
                    break
            if left > 0:  # the header promised this many frames: keep the promise
                yield bytes(left * channels * 2)

    def wav_bytes(self, call_id: str) -> bytes:
        return b"".join(self.wav_chunks(call_id))

    def delete(self, call_id: str) -> bool:
        """Removes the call's recording (and its leftover spill, unless it is being recorded now), its
        index row, and the file the row names when this worker can reach it (a shared volume)."""
        check_call_id(call_id)
        paths_ = [self.dir / f"{call_id}{suffix}" for suffix in SUFFIXES]
        with self._lock:
            if call_id not in self._active:
                paths_ += [self.dir / f"{call_id}.part", self.dir / f"{call_id}.part.json"]
        removed = False
        if self.db is not None:
            with self.db.connect() as conn:
                row = conn.execute("DELETE FROM recordings WHERE call_id = ? RETURNING path", (call_id,)).fetchone()
            if row is not None:
                removed = True  # the row was the recording as far as every other worker knew
                indexed = Path(row[0])
                if indexed.suffix in SUFFIXES and indexed.stem == call_id:  # never anything else the row may name
                    paths_.append(indexed)
        for path in paths_:
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def purge_expired(self, now: float | None = None) -> int:
        """Deletes recordings finished more than `retention_days` ago (by the file's mtime); 0 days
        keeps them forever. Returns how many went."""
        if self.retention_days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        purged: set[str] = set()
        if self.dir.is_dir():
            for path in self.dir.iterdir():
                if path.suffix in SUFFIXES and CALL_ID.match(path.stem) and path.is_file():
                    try:
                        if path.stat().st_mtime < cutoff:
                            path.unlink()
                            purged.add(path.stem)
                    except FileNotFoundError:  # deleted meanwhile
                        pass
        if self.db is not None:
            # this worker's rows of the files just purged, and any row (whichever worker's) past the
            # retention: its file goes too where this worker can reach it
            with self.db.connect() as conn:
                if purged:
                    conn.executemany("DELETE FROM recordings WHERE call_id = ? AND worker = ?",
                                     [(call_id, self.worker) for call_id in sorted(purged)])
                expired = conn.execute("DELETE FROM recordings WHERE created_at < ? RETURNING call_id, path",
                                       (cutoff,)).fetchall()
            for call_id, where in expired:
                path = Path(where)
                if path.suffix in SUFFIXES and path.stem == call_id:
                    try:
                        path.unlink()
                        purged.add(call_id)
                    except OSError:  # another worker's disk, or gone already
                        pass
        return len(purged)

    def recover(self) -> list[str]:
        """At start: leftover .part files (a process killed mid-call) become recordings. Returns the
        call ids recovered."""
        if not self.dir.is_dir():
            return []
        recovered = []
        for tmp in self.dir.glob("*.tmp"):  # killed while encoding: the .part is still there
            tmp.unlink(missing_ok=True)
        for part in sorted(self.dir.glob("*.part")):
            call_id = part.name[: -len(".part")]
            with self._lock:
                if call_id in self._active or not CALL_ID.match(call_id):
                    continue
            try:
                self._index(call_id, encode_part(part, encoding=self.fmt))
                recovered.append(call_id)
            except (OSError, RuntimeError, ValueError) as exc:
                log.warning("recording %s: cannot recover %s: %s", call_id, part, exc)
        return recovered
