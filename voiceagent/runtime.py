"""The process-wide set of loaded models and services, shared by every call.

Loaded once (each model is big and slow to load); sessions take what they need from here.
`Runtime.load` times each part so start-up cost is visible (`voiceagent models check --load`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .config import Config

if TYPE_CHECKING:  # the parts load lazily (Runtime.load): only their types here
    from .asr import SpeechRecognizer
    from .dialog.engine import DialogEngine
    from .dialog.nlu import NLU
    from .embeddings import Embedder
    from .llm import LanguageModel
    from .perception import Perception
    from .shop.knowledge import KnowledgeBase
    from .shop.repository import ShopRepository
    from .tts.router import VoiceRouter

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: Config
    asr: SpeechRecognizer | None = None
    tts: VoiceRouter | None = None
    llm: LanguageModel | None = None
    embedder: Embedder | None = None  # the knowledge base's encoder
    nlu: NLU | None = None
    shop: ShopRepository | None = None
    kb: KnowledgeBase | None = None
    dialog: DialogEngine | None = None
    perception: Perception | None = None
    load_times_s: dict[str, float] = field(default_factory=dict)
    call_activity: CallActivity = field(default_factory=lambda: CallActivity())  # run_call counts its calls here
    _prewarm_stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _prewarm_thread: threading.Thread | None = field(default=None, repr=False)
    _warming_now: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _speech_texts: dict[str, list[str]] = field(default_factory=dict, repr=False)  # what prewarm makes ready

    @classmethod
    def load(cls, config: Config, parts: tuple[str, ...] = ("vad", "asr", "dialog", "llm", "tts")) -> "Runtime":
        rt = cls(config)
        for part in parts:
            t0 = time.perf_counter()
            getattr(rt, f"_load_{part}")()
            rt.load_times_s[part] = round(time.perf_counter() - t0, 3)
            log.info("loaded %s in %.2f s", part, rt.load_times_s[part])
        if {"asr", "dialog", "tts"} <= set(parts):
            t0 = time.perf_counter()
            rt.warm_up_turn()
            rt.load_times_s["warm_up"] = round(time.perf_counter() - t0, 3)
        return rt

    def warm_up_turn(self) -> None:
        """One caller turn's work done once per language before the first call: a decode of real
        speech (the voice's own) and a whole dialog turn. The first of each in a process costs more
        than later ones (measured on the first call after a start: +150-300 ms of ASR, +250 ms of
        dialog; benchmarks/bench_first_call.py), and a restarted server should answer its first
        caller as fast as its tenth. Leaves no trace: the dialog's hot cache is set aside meanwhile."""
        from .audio import resample
        from .dialog.flows.state import DialogState

        turns = (("zh", "我想查一下我的快递到哪了。", "你们的退货政策是什么？"),
                 ("en", "Where is my parcel?", "What is your return policy?"))
        cache, self.dialog.cache = self.dialog.cache, None
        try:
            for lang, said, asked in turns:
                voice = self.tts.voice(lang)
                chunks = list(getattr(voice, "inner", voice).synthesize(said))  # past the cache: not a reply
                if chunks:
                    import numpy as np

                    audio = np.concatenate([resample(c.samples, c.sample_rate, 16000) for c in chunks])
                    self.asr.transcribe(audio, lang, True, True)
                    if self.perception is not None:
                        self.perception.hear(audio, 16000, said)  # the voice's measures on speech, not a tone
                self.dialog.respond(asked, DialogState(language=lang, channel="voice"), lang, cache_checked=True,
                                    stream=True)
        except Exception:  # a warm-up that fails costs the first call time, nothing else
            log.exception("warming up a turn failed")
        finally:
            self.dialog.cache = cache

    def _load_vad(self) -> None:
        self.new_vad()  # validates the model and warms the shared ONNX session

    def new_vad(self):
        """A VAD with its own state, for one call (the ONNX session itself is shared)."""
        from .vad import create_vad

        return create_vad(self.config.vad)

    def _load_asr(self) -> None:
        from .asr import create_asr

        self.asr = create_asr(self.config.asr)
        self.asr.warm_up()

    def _load_tts(self) -> None:
        from .tts import create_tts

        self.tts = create_tts(self.config.tts)
        self.tts.preload()
        for lang in ("en", "zh"):  # first synthesis per voice is slow (ONNX graph set-up)
            voice = self.tts.voice(lang)
            voice = getattr(voice, "inner", voice)  # past the speech cache: a replay would warm nothing
            list(voice.synthesize("OK." if lang == "en" else "好的。"))

    def _load_llm(self) -> None:
        from .llm import create_llm

        self.llm = create_llm(self.config.llm)
        if self.dialog is not None:
            self.dialog.llm = self.llm

    def _load_shop(self) -> None:
        from .db import resolve
        from .shop import open_shop

        tickets = None
        if resolve(self.config.store.db)[0] == "postgresql":
            # Many workers: the call center's tickets go to the shared store, so that a ticket logged on
            # one worker is found (and not logged twice) on the next call, whichever worker takes it.
            # One process on SQLite keeps them in the shop's file, as before.
            from .shop.tickets import TicketBook

            tickets = TicketBook(self.config.store.db, self.config.cluster.worker, today=lambda: self.shop.today)
        self.shop = open_shop(self.config.dialog.shop_db, tickets=tickets)

    def _load_nlu(self) -> None:
        from .dialog.nlu import NLU
        from .dialog.nlu_model import intent_encoder
        from .embeddings import Embedder
        from .perception.text_emotion import load_anger_classifier

        if self.shop is None:
            self._load_shop()
        # Two encoders: the general one searches the knowledge base (configurable); the intent
        # classifier's own is tuned on the intents and belongs to its trained weights.
        self.embedder = Embedder(self.config.dialog.embedding_model)
        tuned = intent_encoder()
        # the anger classifier was fitted on e5-small's embeddings: its own instance when the
        # knowledge base is configured with another model
        base = self.embedder if self.config.dialog.embedding_model == "e5-small" else Embedder("e5-small")
        self.nlu = NLU(tuned, self.shop, anger=load_anger_classifier(base, tuned))

    def _load_dialog(self) -> None:
        from .dialog.cache import HotCache
        from .dialog.engine import DialogEngine
        from .dialog.escalation import EscalationPolicy
        from .perception import Perception
        from .shop.knowledge import KnowledgeBase

        if self.nlu is None:
            self._load_nlu()
        c = self.config.dialog
        self.kb = KnowledgeBase(self.embedder, self.shop, threshold=c.kb_threshold)
        policy = EscalationPolicy(self.config.escalation, self.config.perception.served_dialects)
        self.dialog = DialogEngine(self.nlu, self.shop, self.llm, c.low_confidence, kb=self.kb,
                                   cache=HotCache(c.cache_size) if c.cache_size else None, escalation=policy)
        self.perception = Perception(self.config.perception.ser_model, self.config.perception.voice_emotion)
        for text, lang in (("你好，我的快递到哪了", "zh"), ("hello, where is my parcel", "en")):
            self.nlu.understand(text, lang)  # the encoders' first run is slow: not on the first call
        self.perception.hear(_voiced_tone(), 16000, "你好")  # Praat's first run too (~130 ms more than later ones)

    def customer_for_caller_id(self, caller_id: str) -> str | None:
        """A phone caller's number to a known customer (their tier and orders personalise the
        call); None for short or unknown numbers, or when the lookup fails."""
        number = re.sub(r"\D", "", caller_id or "")
        if len(number) < 5 or self.shop is None:
            return None
        try:
            customer = self.shop.customer_by_phone(number)
        except Exception:
            log.exception("customer lookup failed")
            return None
        return customer.customer_id if customer else None

    def prewarm_speech(self, background: bool = True) -> threading.Thread | None:
        """Makes what the agent says most ready to play, in two steps. Now, in the caller's thread:
        the sentences kept on disk (speech-cache, from earlier runs) are read into memory (well under
        a second), and the greeting and fixed replies missing from disk are synthesised; after that a
        call is as fast as any later one. Then the knowledge base's answers still missing are
        synthesised in a background thread at the lowest OS priority that also waits while any call
        is in progress (`call_activity`); a sentence not ready yet is synthesised on demand as usual.
        `background=False`: all of it in the caller's thread."""
        if self.tts is None or self.dialog is None or getattr(self.tts, "cache", None) is None:
            return None
        essential, rest = self._speech_to_prewarm()
        self._speech_texts = {lang: essential.get(lang, []) + rest.get(lang, []) for lang in ("zh", "en")}
        # each run its own event (a finished run's stop stays set), unless a shutdown already asked
        # this runtime to stop: then nothing more is synthesised
        if not self._prewarm_stop.is_set():
            self._prewarm_stop = threading.Event()
        stop = self._prewarm_stop
        if stop.is_set():
            return None
        t0 = time.perf_counter()
        synthesised = self._synthesised()
        try:
            with self._warming_now:  # stop_prewarm waits for this part too
                # the greeting and fixed replies into memory: read from disk, synthesised if missing
                # (a cold start: before the first call, at full speed). The knowledge base's answers
                # already on disk stay there (a replay reads one in about a millisecond; memory holds
                # about half of the whole set as float32)
                ready = self.tts.prewarm(essential, stop)
        except Exception:  # a voice that fails here fails loudly on the first call instead
            log.exception("pre-synthesis failed")
            return None
        made = self._synthesised() - synthesised
        log.info("speech ready in %.1f s: %d sentences of the greeting and fixed replies (%d synthesised, the rest "
                 "from disk); %s", time.perf_counter() - t0, ready, made, self.speech_status())

        def run(wait: Callable[[], None] | None) -> None:
            t1 = time.perf_counter()
            try:
                made = self.tts.prewarm(rest, stop, wait, into_memory=getattr(self.tts, "disk", None) is None)
            except Exception:
                log.exception("pre-synthesis failed")
                return
            log.info("pre-synthesised %d sentences in %.1f s", made, time.perf_counter() - t1)

        if not background:
            run(None)
            return None

        def low_priority() -> None:
            _lower_thread_priority()
            run(lambda: self.call_activity.wait_idle(stop))

        thread = threading.Thread(target=low_priority, name="speech-prewarm", daemon=True)
        self._prewarm_thread = thread
        thread.start()
        return thread

    def _synthesised(self) -> int:
        voices = getattr(self.tts, "_voices", {}).values()
        return sum(getattr(v, "synthesised", 0) for v in voices)

    def _speech_to_prewarm(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Per language: what a call needs at once (the greeting first, then the fixed replies), and the
        knowledge base's answers."""
        from .dialog import templates

        essential, rest = {}, {}
        for lang in ("zh", "en"):
            greeting = [templates.render(lang, "greeting")]
            essential[lang] = list(dict.fromkeys(greeting + templates.fixed_replies(lang)))
            rest[lang] = [p.answer for p in self.kb.passages if p.lang == lang] if self.kb is not None else []
        return essential, rest

    def speech_status(self) -> dict[str, int]:
        """How many of the sentences the prewarm makes ready are ready (in memory or on disk), how
        many are still missing."""
        from .tts.sentences import split_sentences

        ready = missing = 0
        for lang, texts in self._speech_texts.items():
            voice = self.tts.voice(lang) if self.tts is not None else None
            has = getattr(voice, "has", None)
            for sentence in dict.fromkeys(s for t in texts for s in split_sentences(t)):
                if has is not None and has(sentence):
                    ready += 1
                else:
                    missing += 1
        return {"ready": ready, "missing": missing}

    def stop_prewarm(self, timeout_s: float = 5.0) -> None:
        """Stop the background pre-synthesis (after the sentence it is on) and wait for it. A server
        shutting down calls this: a daemon thread still inside the TTS's native code when the
        interpreter finalises is killed mid-call (pthread_exit as it takes the GIL back), and the
        forced unwind through the C++ frames aborts the process (std::terminate, exit status -6
        instead of 0 after a SIGTERM)."""
        self._prewarm_stop.set()
        if self._warming_now.acquire(timeout=timeout_s):  # the part before ready, in the loader's thread
            self._warming_now.release()
        thread = self._prewarm_thread
        if thread is not None:
            thread.join(timeout_s)

    def model_names(self) -> dict[str, str]:
        c = self.config
        return {
            "asr": getattr(self.asr, "name", f"faster-whisper:{c.asr.model}"),
            "tts": f"en={c.tts.en_voice}, zh={c.tts.zh_voice}",
            "llm": getattr(self.llm, "name", "none") if c.llm.backend != "none" else "none",
            "vad": c.vad.model if c.vad.backend == "silero" else f"webrtcvad-{c.vad.webrtc_aggressiveness}",
        }


class CallActivity:
    """How many calls are in progress, for background work that yields to them (the speech prewarm
    waits while any call is). `run_call` counts every channel's calls here."""

    def __init__(self) -> None:
        self._active = 0
        self._changed = threading.Condition()

    def begin(self) -> None:
        with self._changed:
            self._active += 1

    def end(self) -> None:
        with self._changed:
            self._active = max(0, self._active - 1)
            self._changed.notify_all()

    @property
    def active(self) -> int:
        return self._active

    def wait_idle(self, stop: threading.Event | None = None, poll_s: float = 0.5) -> None:
        """Returns once no call is in progress (or `stop` is set; it is checked every `poll_s`)."""
        with self._changed:
            while self._active and not (stop is not None and stop.is_set()):
                self._changed.wait(poll_s)


def _voiced_tone(rate: int = 16000, seconds: float = 1.0):
    """A second of something voice-like (a 160 Hz buzz with harmonics, rising and falling), to warm
    the voice's measures on."""
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    f0 = 160 + 20 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 - 0.5 * np.cos(2 * np.pi * t / seconds))
    return (0.2 * buzz).astype(np.float32)


def _lower_thread_priority() -> None:
    """This thread (not the process) to the lowest CPU priority: nice 19 (Linux sets it per thread).
    The voice's own ONNX worker threads keep theirs: waiting for the calls to end is what matters."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: waiting for calls still holds
        log.debug("could not lower the prewarm thread's priority")


def accept_when_loaded(runtime: Callable[[], "Runtime | None"], listener, what: str) -> asyncio.Task | None:
    """A call listener (SIP user agent, AudioSocket server) that refuses calls (`accepting` False)
    until the models are loaded in the background; the task that opens it then, or None when they
    already are."""
    listener.accepting = runtime() is not None
    if listener.accepting:
        return None

    async def wait() -> None:
        while runtime() is None:
            await asyncio.sleep(0.2)
        listener.accepting = True
        log.info("%s: models loaded, taking calls", what)

    return asyncio.get_running_loop().create_task(wait())
