"""Call recordings: the two sides line up on the call's timeline, gaps are silent, any input rate
lands right, the supervisor speaks in the agent's channel, memory stays bounded on a long call, a
killed process leaves its spilled audio recoverable, retention and deletion work, and a call id
from a URL is never made into a path."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import soundfile as sf

from telephony.audio import AudioFrame, split_frames
from voiceagent.db import open_database
from voiceagent.ops.recordings import (BadCallId, CallRecorder, RecordingStore, choose_encoding, opus_available,
                                       recording_rate)

TONE_HZ = 440.0


def tone(rate: int, seconds: float, amplitude: float = 0.5, hz: float = TONE_HZ) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def frames_at(samples: np.ndarray, rate: int, start_s: float) -> list[AudioFrame]:
    return [AudioFrame(f.samples, rate, start_s + f.start_s) for f in split_frames(samples, rate)]


def decode(store: RecordingStore, call_id: str) -> tuple[np.ndarray, int]:
    data, rate = sf.read(io.BytesIO(store.wav_bytes(call_id)), dtype="float32", always_2d=True)
    return data, rate


def loud_span(channel: np.ndarray, rate: int, floor: float = 0.1) -> tuple[float, float]:
    """Start and end (s) of the part above `floor`, by 5 ms windows' peak."""
    window = rate // 200
    peaks = np.abs(channel[: len(channel) // window * window]).reshape(-1, window).max(axis=1)
    loud = np.flatnonzero(peaks > floor)
    return loud[0] * window / rate, (loud[-1] + 1) * window / rate


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


@pytest.fixture
def store(tmp_path):
    return RecordingStore(tmp_path / "rec", retention_days=90)


@pytest.fixture(params=["files", "sqlite", "postgres"])
def any_store(request, tmp_path):
    """The files alone (no store), then indexed in a SQLite store, then in a real Postgres one."""
    if request.param == "files":
        return RecordingStore(tmp_path / "rec", retention_days=90)
    db = str(tmp_path / "calls.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return RecordingStore(tmp_path / "rec", retention_days=90, database=open_database(db), worker="w1")


def index_rows(store: RecordingStore) -> list[tuple]:
    if store.db is None:
        return []
    with store.db.connect() as conn:
        return [tuple(r) for r in conn.execute("SELECT call_id, worker FROM recordings ORDER BY call_id").fetchall()]


def record(store: RecordingStore, call_id: str, seconds: float = 0.2, rate: int = 8000):
    recorder = store.recorder(call_id, rate=rate)
    recorder.caller(AudioFrame(tone(rate, seconds), rate, 0.0))
    return recorder.finish()


@pytest.mark.parametrize("in_rate,rec_rate", [(16000, 16000), (48000, 16000), (8000, 8000), (48000, 8000),
                                              (16000, 8000)])
def test_the_two_sides_line_up_at_their_offsets(store, in_rate, rec_rate):
    recorder = store.recorder("call-1", rate=rec_rate)
    # the caller's leg sends the whole call (silence, then a tone at 1.0 s); the agent only speaks at 2.0 s
    caller = np.zeros(in_rate * 3, np.float32)
    caller[in_rate : in_rate + in_rate // 2] = tone(in_rate, 0.5)
    for frame in frames_at(caller, in_rate, 0.0):
        recorder.caller(frame)
    for frame in frames_at(tone(in_rate, 0.5), in_rate, 2.0):
        recorder.agent(frame)
    path = recorder.finish()
    assert path is not None and path == store.path("call-1") and store.exists("call-1")

    data, rate = decode(store, "call-1")
    assert rate == rec_rate and data.shape[1] == 2
    assert abs(len(data) / rate - 3.0) < 0.05
    c_start, c_end = loud_span(data[:, 0], rate)
    a_start, a_end = loud_span(data[:, 1], rate)
    assert abs(c_start - 1.0) <= 0.01 and abs(c_end - 1.5) <= 0.01
    assert abs(a_start - 2.0) <= 0.01 and abs(a_end - 2.5) <= 0.01
    # each channel holds its own side only, and the tone's level survives the resampling and the codec
    assert rms(data[int(1.05 * rate) : int(1.45 * rate), 1]) < 0.01
    assert rms(data[int(2.05 * rate) : int(2.45 * rate), 0]) < 0.01
    assert 0.25 < rms(data[int(1.05 * rate) : int(1.45 * rate), 0]) < 0.45  # a 0.5 sine: 0.354


def test_gaps_are_silence_and_a_late_frame_lands_where_it_belongs(store):
    rate = 16000
    recorder = store.recorder("gappy", rate=rate)
    frames = frames_at(tone(rate, 2.0), rate, 0.0)
    lost = range(25, 50)  # 0.5 .. 1.0 s never arrive: a hole in the caller's audio
    late = 75  # 1.5 s arrives after 1.98 s
    for i, frame in enumerate(frames):
        if i not in lost and i != late:
            recorder.caller(frame)
    recorder.caller(frames[late])
    recorder.agent(AudioFrame(tone(rate, 0.2), rate, 3.0))  # the call goes on to 3.2 s
    recorder.finish()

    data, rate = decode(store, "gappy")
    caller = data[:, 0]
    assert rms(caller[int(0.52 * rate) : int(0.98 * rate)]) < 0.005  # the hole is silent ...
    assert rms(caller[int(0.1 * rate) : int(0.45 * rate)]) > 0.25  # ... and did not shift what follows
    assert rms(caller[int(1.05 * rate) : int(1.95 * rate)]) > 0.25  # the late frame filled its place
    assert abs(loud_span(caller, rate)[1] - 2.0) <= 0.01
    assert rms(caller[int(2.05 * rate) :]) < 0.005
    assert abs(len(data) / rate - 3.2) < 0.03


def test_a_frame_far_too_late_for_the_buffer_is_patched_into_the_spilled_audio(tmp_path):
    rate = 8000
    recorder = CallRecorder("late", rate, tmp_path, spill_s=1.0, hold_s=0.2)
    for frame in frames_at(np.zeros(rate * 5, np.float32), rate, 0.0):
        recorder.caller(frame)
    assert recorder.spilled
    recorder.agent(AudioFrame(tone(rate, 0.3), rate, 1.0))  # 4 s late: long on disk
    path = recorder.finish()
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    start, end = loud_span(data[:, 1], rate)
    assert abs(start - 1.0) <= 0.01 and abs(end - 1.3) <= 0.01
    assert rms(data[:, 0]) < 0.005


def test_the_supervisor_speaks_in_the_agents_channel(store):
    rate = 16000
    recorder = store.recorder("takeover", rate=rate)
    for frame in frames_at(tone(rate, 1.0, 0.3, hz=300), rate, 0.0):
        recorder.agent(frame)
    for frame in frames_at(tone(48000, 1.0, 0.3, hz=700), 48000, 0.5):  # a browser microphone, 48 kHz
        recorder.supervisor(frame)
    for frame in frames_at(np.zeros(rate * 2, np.float32), rate, 0.0):
        recorder.caller(frame)
    recorder.finish()

    data, rate = decode(store, "takeover")
    agent = data[:, 1]

    def level(segment: np.ndarray, hz: float) -> float:
        spectrum = np.abs(np.fft.rfft(segment)) / len(segment) * 2
        return float(spectrum[int(round(hz * len(segment) / rate))])

    only_agent, both, only_supervisor = (agent[int(a * rate) : int(b * rate)] for a, b in
                                         ((0.1, 0.4), (0.6, 0.9), (1.1, 1.4)))
    assert level(only_agent, 300) > 0.2 and level(only_agent, 700) < 0.03
    assert level(both, 300) > 0.2 and level(both, 700) > 0.2  # mixed, neither replaced the other
    assert level(only_supervisor, 700) > 0.2 and level(only_supervisor, 300) < 0.03
    assert rms(data[:, 0]) < 0.005  # nothing of either in the caller's channel


def test_a_long_call_spills_and_memory_stays_bounded(store):
    rate = 8000
    recorder = store.recorder("long", rate=rate)
    minutes = 10
    frame_len = rate // 50
    beep = tone(rate, 0.02)
    peak_memory = 0
    for i in range(minutes * 60 * 50):
        at = i / 50
        recorder.caller(AudioFrame(beep if i % 500 == 0 else np.zeros(frame_len, np.float32), rate, at))
        if i % 50 == 0:
            recorder.agent(AudioFrame(np.zeros(frame_len, np.float32), rate, at))
        peak_memory = max(peak_memory, recorder.buffered_bytes)
    assert recorder.spilled and (store.dir / "long.part").exists()  # on disk during the call
    assert peak_memory < 1_000_000  # ~13 s at 8 kHz stereo int16; the whole 10 minutes would be 19 MB
    path = recorder.finish()
    assert not (store.dir / "long.part").exists()
    info = sf.info(path)
    assert abs(info.frames / info.samplerate - minutes * 60) < 0.1
    # the beeps every 10 s are all there, in place, after the spills
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    for k in range(minutes * 6):
        assert rms(data[k * 10 * rate : k * 10 * rate + frame_len, 0]) > 0.1, k
    per_minute = os.path.getsize(path) / minutes
    print(f"\n{choose_encoding(rate).suffix} at {rate} Hz: {per_minute / 1000:.0f} kB per minute (mostly silence)")
    assert per_minute < 1_100_000


def test_size_per_minute_of_speech_like_audio(tmp_path):
    """Figures for the report: a minute of noisy, modulated tone on both sides."""
    rng = np.random.default_rng(7)
    for rate in (8000, 16000):
        recorder = CallRecorder("size", rate, tmp_path / str(rate))
        t = np.arange(rate * 60) / rate
        voice = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
                 + 0.03 * rng.standard_normal(len(t))).astype(np.float32)
        for frame in frames_at(voice, rate, 0.0):
            recorder.caller(frame)
        for frame in frames_at(np.roll(voice, rate), rate, 0.0):
            recorder.agent(frame)
        path = recorder.finish()
        size = os.path.getsize(path)
        print(f"\n{path.suffix} at {rate} Hz: {size / 1000:.0f} kB per minute")
        limit = 400_000 if path.suffix == ".ogg" else 3_000_000
        assert size < limit


def test_a_killed_process_leaves_a_recoverable_recording(tmp_path):
    rate = 8000
    directory = tmp_path / "rec"
    recorder = CallRecorder("killed", rate, directory, spill_s=1.0, hold_s=0.2)
    caller = np.zeros(rate * 5, np.float32)
    caller[rate * 2 : rate * 2 + rate // 2] = tone(rate, 0.5)
    for frame in frames_at(caller, rate, 0.0):
        recorder.caller(frame)
    recorder._writer.shutdown(wait=True)  # the spills done; then the process dies: finish() never runs
    del recorder
    assert (directory / "killed.part").exists()

    store = RecordingStore(directory)  # the next start
    assert store.recover() == ["killed"]
    assert not (directory / "killed.part").exists() and not (directory / "killed.part.json").exists()
    data, got_rate = decode(store, "killed")
    assert got_rate == rate and len(data) >= rate * 4  # all but the last unspilled moments
    start, end = loud_span(data[:, 0], rate)
    assert abs(start - 2.0) <= 0.01 and abs(end - 2.5) <= 0.01
    assert store.recover() == []


def test_recover_leaves_a_call_being_recorded_alone(store):
    rate = 8000
    recorder = store.recorder("live", rate=rate)
    recorder._spill_at, recorder._hold = rate, rate // 10
    for frame in frames_at(np.zeros(rate * 3, np.float32), rate, 0.0):
        recorder.caller(frame)
    assert recorder.spilled
    assert store.recover() == []
    assert recorder.finish() == store.path("live")
    assert store.recover() == []


def test_retention_purges_old_recordings_only(any_store):
    store = any_store
    for call_id in ("old", "new"):
        record(store, call_id)
    old = store.path("old")
    month_ago = time.time() - 100 * 86400
    os.utime(old, (month_ago, month_ago))
    assert store.purge_expired() == 1
    assert not store.exists("old") and store.exists("new")
    assert index_rows(store) == ([] if store.db is None else [("new", "w1")])  # the row went with the file
    assert store.purge_expired(now=time.time() + 91 * 86400) == 1 and not store.exists("new")
    assert index_rows(store) == []
    forever = RecordingStore(store.dir, retention_days=0)
    recorder = forever.recorder("kept", rate=8000)
    recorder.caller(AudioFrame(tone(8000, 0.2), 8000, 0.0))
    recorder.finish()
    assert forever.purge_expired(now=time.time() + 10_000 * 86400) == 0 and forever.exists("kept")


def test_delete(any_store):
    store = any_store
    recorder = store.recorder("gone", rate=16000)
    recorder.agent(AudioFrame(tone(16000, 0.2), 16000, 0.0))
    recorder.finish()
    assert store.exists("gone")
    assert index_rows(store) == ([] if store.db is None else [("gone", "w1")])
    assert store.delete("gone") is True
    assert not store.exists("gone") and store.path("gone") is None and index_rows(store) == []
    assert store.delete("gone") is False
    with pytest.raises(FileNotFoundError):
        store.wav_bytes("gone")


@pytest.mark.parametrize("bad", ["../etc/passwd", "..", ".", "a/b", "", "x" * 65, "call\x00id", "名字", "a b",
                                 "/abs", "c:\\x"])
def test_a_bad_call_id_is_refused(store, bad):
    for use in (store.path, store.exists, store.wav_bytes, store.delete, store.recorder):
        with pytest.raises(BadCallId):
            use(bad)


def test_a_call_without_audio_has_no_recording_and_garbage_frames_are_ignored(store):
    recorder = store.recorder("silent-line", rate=8000)
    recorder.caller(AudioFrame(np.zeros(0, np.float32), 8000, 0.0))
    recorder.caller(AudioFrame(np.zeros(160, np.float32), 0, 0.0))
    recorder.caller(AudioFrame(np.zeros((2, 160), np.float32), 8000, 0.0))
    recorder.caller(AudioFrame(np.zeros(160, np.float32), 8000, float("nan")))
    recorder.caller(AudioFrame(np.zeros(160, np.float32), 8000, 1e12))
    assert recorder.finish() is None and not store.exists("silent-line")
    assert recorder.finish() is None  # twice is harmless

    recorder = store.recorder("nan", rate=8000)
    recorder.caller(AudioFrame(np.full(160, np.nan, np.float32), 8000, 0.0))
    recorder.caller(AudioFrame(np.full(160, 1e9, np.float32), 8000, 0.02))  # clipped, not wrapped
    recorder.finish()
    data, _ = decode(store, "nan")
    assert np.all(np.isfinite(data))


def test_rates_and_formats():
    assert recording_rate("webrtc") == 16000 and recording_rate("sip") == 8000
    assert recording_rate("audiosocket") == 8000 and recording_rate("campaign") == 8000
    assert choose_encoding(44100).suffix == ".flac"  # not a rate Opus takes
    assert choose_encoding(8000, "flac").suffix == ".flac"
    assert choose_encoding(16000).suffix == (".ogg" if opus_available() else ".flac")


def test_flac_keeps_the_timeline_sample_exact(tmp_path):
    store = RecordingStore(tmp_path, fmt="flac")
    rate = 8000
    recorder = store.recorder("lossless", rate=rate)
    recorder.caller(AudioFrame(tone(rate, 0.5), rate, 1.0))
    recorder.agent(AudioFrame(tone(rate, 0.5), rate, 2.0))
    assert recorder.finish().suffix == ".flac"
    data, _ = sf.read(io.BytesIO(store.wav_bytes("lossless")), dtype="int16", always_2d=True)
    expected = (np.clip(tone(rate, 0.5), -1, 1) * 32767).astype(np.int16)
    assert np.array_equal(data[rate : rate + rate // 2, 0], expected)
    assert np.array_equal(data[2 * rate : 2 * rate + rate // 2, 1], expected)
    assert not data[: rate, :].any() and not data[rate : 2 * rate, 1].any()
    with pytest.raises(Exception, match="recordings.format"):
        RecordingStore(tmp_path, fmt="mp3")


def test_finish_later_encodes_on_the_stores_thread(store):
    recorder = store.recorder("later", rate=8000)
    recorder.caller(AudioFrame(tone(8000, 0.5), 8000, 0.0))
    assert store.finish_later(recorder).result(timeout=60) == store.path("later")


def test_a_finished_recording_is_indexed_with_what_it_is(any_store):
    if any_store.db is None:
        assert record(any_store, "c1", seconds=1.0) is not None and any_store.indexed("c1") is None
        return
    path = record(any_store, "c1", seconds=1.0)
    row = any_store.indexed("c1")
    assert row["worker"] == "w1" and row["path"] == str(path.resolve())
    assert row["format"] == ("opus" if path.suffix == ".ogg" else "flac") and row["bytes"] == path.stat().st_size
    assert 0.9 <= row["duration_s"] <= 1.2 and abs(row["created_at"] - time.time()) < 600
    assert record(any_store, "c1", seconds=2.0) == path  # recorded again: the row follows
    assert 1.9 <= any_store.indexed("c1")["duration_s"] <= 2.2 and index_rows(any_store) == [("c1", "w1")]


def test_another_worker_finds_and_deletes_a_recording_on_the_shared_volume(store_db, tmp_path):
    """Two workers with folders of their own on one store: a recording made by the first is found by the
    second through the index (its path is on a volume both mount), and deleting it there removes both
    the file and the row."""
    database = open_database(store_db)
    first = RecordingStore(tmp_path / "shared" / "w1", database=database, worker="w1")
    second = RecordingStore(tmp_path / "shared" / "w2", database=database, worker="w2")
    path = record(first, "c7")
    assert second.path("c7") == path.resolve() and second.exists("c7")
    assert len(second.wav_bytes("c7")) > 44
    assert not second.exists("c8")
    assert second.delete("c7") is True
    assert not path.exists() and not first.exists("c7") and index_rows(first) == []
    assert second.delete("c7") is False


def test_a_recovered_recording_is_indexed(store_db, tmp_path):
    rate = 8000
    directory = tmp_path / "rec"
    recorder = CallRecorder("killed", rate, directory, spill_s=1.0, hold_s=0.2)
    for frame in frames_at(tone(rate, 3.0), rate, 0.0):
        recorder.caller(frame)
    recorder._writer.shutdown(wait=True)  # then the process dies
    del recorder
    store = RecordingStore(directory, database=open_database(store_db), worker="w1")
    assert store.recover() == ["killed"]
    assert index_rows(store) == [("killed", "w1")] and store.indexed("killed")["duration_s"] > 2.0
