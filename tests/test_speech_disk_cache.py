"""No cold start: the speech the agent says most is kept on disk between runs, a restart replays it
instead of synthesising it again, what is missing is made in the background without competing with
calls, and /healthz says ok only once a call would be answered as fast as any later one."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voiceagent.config import Config, TtsConfig
from voiceagent.runtime import CallActivity, Runtime
from voiceagent.tts import SpeechChunk, split_sentences
from voiceagent.tts.cache import CachedVoice, SpeechCache
from voiceagent.tts.disk_cache import SpeechDiskCache, voice_key
from voiceagent.tts.router import VoiceRouter


class CountingVoice:
    """A voice that makes a tone per sentence (its pitch from the text) and counts its syntheses."""

    sample_rate = 16000

    def __init__(self, name: str = "fake:tone"):
        self.name = name
        self.said: list[str] = []

    def synthesize(self, text: str):
        self.said.append(text)
        n = 800 + 40 * len(text)
        t = np.arange(n) / self.sample_rate
        tone = 0.5 * np.sin(2 * np.pi * (200 + 7 * len(text)) * t)
        yield SpeechChunk(tone.astype(np.float32), self.sample_rate, text)


def _voice(root: Path, inner: CountingVoice | None = None, max_bytes: int = 1 << 20) -> CachedVoice:
    """A voice as a fresh process has it: an empty memory cache over the disk store at `root`."""
    inner = inner or CountingVoice()
    return CachedVoice(inner, SpeechCache(), SpeechDiskCache(root, max_bytes), voice_key(inner.name))


def _audio(chunks) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks])


def test_a_second_run_over_the_same_disk_synthesises_nothing_it_has_said(tmp_path):
    first = _voice(tmp_path)
    assert first.prewarm(["Your parcel is on its way. Anything else?"]) == 2
    said = list(first.synthesize("Your parcel is on its way. Anything else?"))
    assert first.inner.said == ["Your parcel is on its way.", "Anything else?"]

    again = _voice(tmp_path)  # a restart: new memory, same disk
    replayed = list(again.synthesize("Your parcel is on its way. Anything else?"))
    assert again.inner.said == [] and again.has("Anything else?")
    assert [c.text for c in replayed] == [c.text for c in said] and replayed[0].sample_rate == 16000
    # kept as 16-bit PCM: the same audio to within one step of it
    assert np.max(np.abs(_audio(replayed) - _audio(said))) <= 1.0 / 32767
    with pytest.raises(ValueError):  # replayed audio is shared by every call
        replayed[0].samples[0] = 0.0
    # a sentence of the prewarm's made on a call is kept for the next run as well
    again.prewarm(["Goodbye."], stop=_stopped())
    list(again.synthesize("Goodbye."))
    assert again.inner.said == ["Goodbye."] and _voice(tmp_path).has("Goodbye.")


def test_a_calls_own_sentences_never_reach_the_disk(tmp_path):
    voice = _voice(tmp_path)
    voice.prewarm(["请告诉我您的订单号。"])
    list(voice.synthesize("您的订单38512074已发货。请告诉我您的订单号。"))
    assert voice.inner.said == ["请告诉我您的订单号。", "您的订单38512074已发货。"]
    assert voice.has("您的订单38512074已发货。")  # replayed from memory during this run
    files = list(tmp_path.glob("*/*.pcm"))
    assert len(files) == 1 and b"38512074" not in files[0].read_bytes()
    assert not _voice(tmp_path).has("您的订单38512074已发货。")


def _stopped() -> threading.Event:
    """A stop already set: prewarm names the sentences (they may go to disk) and makes none now."""
    stop = threading.Event()
    stop.set()
    return stop


def test_another_voice_or_speed_never_replays_this_ones_audio(tmp_path):
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"weights")
    key = voice_key("piper:joe", [model], speed=1.0)
    assert voice_key("piper:joe", [model], speed=1.2) != key
    model.write_bytes(b"other weights")  # a new model file under the same name
    assert voice_key("piper:joe", [model], speed=1.0) != key
    store = SpeechDiskCache(tmp_path / "cache")
    store.put(key, "Hello.", (SpeechChunk(np.zeros(100, np.float32), 16000, "Hello."),))
    assert store.get(key, "Hello.") is not None and store.get(voice_key("piper:amy", [model]), "Hello.") is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_file_is_synthesised_again_and_rewritten(tmp_path, damage):
    _voice(tmp_path).prewarm(["请告诉我您的订单号。"])
    [path] = list(tmp_path.glob("*/*.pcm"))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) - 101], "garbage": os.urandom(len(data)), "empty": b""}[damage])

    voice = _voice(tmp_path)
    voice.prewarm(["请告诉我您的订单号。"], stop=_stopped())  # a restart's prewarm named it
    chunks = list(voice.synthesize("请告诉我您的订单号。"))  # a call: no crash, the sentence is made again
    assert voice.inner.said == ["请告诉我您的订单号。"] and len(_audio(chunks)) > 800
    assert voice.disk.corrupt == 1
    healed = _voice(tmp_path)  # and written again, whole
    list(healed.synthesize("请告诉我您的订单号。"))
    assert healed.inner.said == [] and path.read_bytes() == data


def test_a_file_for_another_sentence_reads_as_missing(tmp_path):
    voice = _voice(tmp_path)
    voice.prewarm(["First.", "Second."])
    first, second = (voice.disk.path(voice.disk_key, s) for s in ("First.", "Second."))
    first.write_bytes(second.read_bytes())  # as if a hash collided
    again = _voice(tmp_path)
    assert [c.text for c in again.synthesize("First.")] == ["First."] and again.inner.said == ["First."]


def test_the_disk_store_is_bounded_and_evicts_the_least_recently_used(tmp_path):
    chunk = lambda s: (SpeechChunk(np.zeros(1000, np.float32), 8000, s),)  # noqa: E731
    store = SpeechDiskCache(tmp_path, max_bytes=3 * 2200)  # room for three sentences of ~2.1 kB
    for i in range(3):
        store.put("v", f"s{i}", chunk(f"s{i}"))
        os.utime(store.path("v", f"s{i}"), ns=(i * 10**9, i * 10**9))  # written in this order
    assert store.get("v", "s0") is not None  # read: now the most recently used
    store.put("v", "s3", chunk("s3"))
    assert store.bytes <= 3 * 2200 and len(store) == 3
    assert store.get("v", "s1") is None and not store.path("v", "s1").exists()  # the oldest went
    assert all(store.get("v", s) is not None for s in ("s0", "s2", "s3"))
    # the bound holds across runs: a new store counts what is there
    assert SpeechDiskCache(tmp_path, max_bytes=3 * 2200).bytes == store.bytes


def test_the_real_voice_is_not_run_again_after_a_restart(tmp_path):
    config = TtsConfig(disk_cache_dir=str(tmp_path))
    first = VoiceRouter(config).voice("en")
    first.prewarm(["Thank you for calling."])
    said = list(first.synthesize("Thank you for calling."))
    assert first.synthesised == 1
    again = VoiceRouter(config).voice("en")
    assert again.has("Thank you for calling.")
    replayed = list(again.synthesize("Thank you for calling."))
    assert again.synthesised == 0 and np.max(np.abs(_audio(replayed) - _audio(said))) <= 1.0 / 32767


# -- prewarm: before ready, then in the background ------------------------------------------------

@dataclass
class _Passage:
    lang: str
    answer: str


class _KB:
    passages = [_Passage("en", "Returns are free within seven days."), _Passage("en", "We ship in two days."),
                _Passage("zh", "七天无理由退货。")]


def _runtime(tmp_path: Path) -> tuple[Runtime, dict[str, CountingVoice]]:
    """A Runtime whose voices are counting fakes behind the real caches (memory and disk)."""
    router = VoiceRouter(TtsConfig(disk_cache_dir=str(tmp_path / "speech")))
    inner = {lang: CountingVoice(f"fake:{lang}") for lang in ("zh", "en")}
    router._voices = {lang: CachedVoice(v, router.cache, router.disk, voice_key(v.name)) for lang, v in inner.items()}
    return Runtime(Config(), tts=router, dialog=object(), kb=_KB()), inner


def test_ready_means_the_greeting_and_fixed_replies_play_at_once_and_the_rest_waits_for_calls(tmp_path):
    from voiceagent.dialog import templates

    rt, inner = _runtime(tmp_path)
    rt.call_activity.begin()  # a call is in progress while the background part runs
    thread = rt.prewarm_speech()
    try:
        # ready: every fixed reply, the greeting first, is ready to play without synthesis
        for lang in ("zh", "en"):
            assert inner[lang].said[0] == split_sentences(templates.render(lang, "greeting"))[0]
            assert all(rt.tts.voice(lang).has(s) for t in templates.fixed_replies(lang) for s in split_sentences(t))
        fixed = {lang: len(v.said) for lang, v in inner.items()}
        # the knowledge base's answers wait for the call to end
        thread.join(0.3)
        assert thread.is_alive() and {lang: len(v.said) for lang, v in inner.items()} == fixed
        assert rt.speech_status()["missing"] == 3
    finally:
        rt.call_activity.end()
    thread.join(10)
    assert not thread.is_alive() and rt.speech_status() == {"ready": sum(fixed.values()) + 3, "missing": 0}

    again, inner2 = _runtime(tmp_path)  # a restart: everything comes from disk
    assert again.prewarm_speech(background=False) is None
    assert inner2["zh"].said == inner2["en"].said == [] and again.speech_status()["missing"] == 0


def test_waiting_for_calls_blocks_until_the_last_one_ends_or_stop():
    activity, stop = CallActivity(), threading.Event()
    activity.begin()
    activity.begin()
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (activity.wait_idle(stop, poll_s=0.05), done.set()))
    waiter.start()
    activity.end()
    assert not done.wait(0.2) and activity.active == 1  # one call still in progress
    activity.end()
    assert done.wait(5)
    activity.begin()  # and a stopped server does not wait for calls
    stopped = threading.Thread(target=activity.wait_idle, args=(stop, 0.05))
    stopped.start()
    stop.set()
    stopped.join(5)
    assert not stopped.is_alive()


def test_the_background_thread_runs_at_the_lowest_priority(tmp_path):
    from voiceagent.runtime import _lower_thread_priority

    seen: list[int] = []
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def probe() -> None:
        _lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen == [19] and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # only that thread


def test_run_call_counts_the_call_as_in_progress():
    from voiceagent.engine import Channel, SessionOptions, run_call
    from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, fake_runtime

    asr = FakeASR(language="en")
    script = CallerScript(asr)
    script.silence(0.4)
    script.say("where is my parcel")
    script.silence(2.0)
    runtime = fake_runtime(asr=asr, dialog=FakeDialog(["It left today."]))
    during: list[int] = []
    channel = Channel("test", started=lambda session: during.append(runtime.call_activity.active))
    asyncio.run(run_call(runtime, script.file_leg(), SessionOptions(greeting=False), channel, call_id="c1"))
    assert during == [1] and runtime.call_activity.active == 0


# -- /healthz -------------------------------------------------------------------------------------

def test_healthz_says_warming_until_the_speech_is_ready_then_ok(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from voiceagent.server import create_app

    loaded, speech_ready = threading.Event(), threading.Event()

    class Warming:
        load_times_s: dict = {}

        def prewarm_speech(self):
            assert speech_ready.wait(10)

        def speech_status(self):
            return {"ready": 133, "missing": 108}

        def stop_prewarm(self, timeout_s: float = 5.0):
            speech_ready.set()

    def load(config):
        assert loaded.wait(10)
        return Warming()

    monkeypatch.setattr(Runtime, "load", staticmethod(load))
    config = Config()
    config.store.db = str(tmp_path / "calls.db")
    config.recordings.dir = str(tmp_path / "recordings")
    app = create_app(config)

    def health() -> tuple[int, dict]:
        r = client.get("/healthz")
        return r.status_code, r.json()

    def until(predicate) -> tuple[int, dict]:
        for _ in range(200):
            got = health()
            if predicate(got):
                return got
            threading.Event().wait(0.05)
        return health()

    class Pbx:
        server = SimpleNamespace(accepting=False)

        async def stop(self):
            pass

    pbx = Pbx()
    with TestClient(app) as client:
        assert health() == (503, {"status": "warming", "stage": "models"})
        loaded.set()
        assert until(lambda g: g[1].get("stage") == "speech") == (503, {"status": "warming", "stage": "speech"})
        assert app.state.runtime is None  # the call listeners refuse calls meanwhile (accept_when_loaded)
        app.state.pbx = pbx  # a listener that opens a moment after the models are ready
        speech_ready.set()
        assert until(lambda g: g[1].get("stage") == "listeners") == (503, {"status": "warming", "stage": "listeners"})
        pbx.server.accepting = True
        assert until(lambda g: g[0] == 200) == (200, {"status": "ok", "speech_cache": {"ready": 133, "missing": 108}})
