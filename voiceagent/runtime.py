"""The process-wide set of loaded models and services, shared by every call.

Loaded once (each model is big and slow to load); sessions take what they need from here.
`Runtime.load` times each part so start-up cost is visible (`voiceagent models check --load`).
"""

from __future__ import annotations

import asyncio
import logging
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
    _prewarm_stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _prewarm_thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def load(cls, config: Config, parts: tuple[str, ...] = ("vad", "asr", "dialog", "llm", "tts")) -> "Runtime":
        rt = cls(config)
        for part in parts:
            t0 = time.perf_counter()
            getattr(rt, f"_load_{part}")()
            rt.load_times_s[part] = round(time.perf_counter() - t0, 3)
            log.info("loaded %s in %.2f s", part, rt.load_times_s[part])
        return rt

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
            list(self.tts.voice(lang).synthesize("OK." if lang == "en" else "好的。"))

    def _load_llm(self) -> None:
        from .llm import create_llm

        self.llm = create_llm(self.config.llm)
        if self.dialog is not None:
            self.dialog.llm = self.llm

    def _load_shop(self) -> None:
        from .shop import open_shop

        self.shop = open_shop(self.config.dialog.shop_db)

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
        """Pre-synthesise the knowledge base's answers and the fixed replies, so that hot questions are
        spoken from memory. In a background thread by default: calls are taken meanwhile, and what
        is not ready yet is synthesised as usual."""
        if self.tts is None or self.dialog is None or getattr(self.tts, "cache", None) is None:
            return None
        from .dialog import templates

        texts: dict[str, list[str]] = {}
        for lang in ("zh", "en"):
            answers = [p.answer for p in self.kb.passages if p.lang == lang] if self.kb is not None else []
            texts[lang] = templates.fixed_replies(lang) + answers

        stop = self._prewarm_stop = threading.Event()  # each run its own: a stopped one stays stopped

        def run() -> None:
            t0 = time.perf_counter()
            try:
                made = self.tts.prewarm(texts, stop)
            except Exception:  # a voice that fails here fails loudly on the first call instead
                log.exception("pre-synthesis failed")
                return
            log.info("pre-synthesised %d sentences in %.1f s", made, time.perf_counter() - t0)

        if not background:
            run()
            return None
        thread = threading.Thread(target=run, name="speech-prewarm", daemon=True)
        self._prewarm_thread = thread
        thread.start()
        return thread

    def stop_prewarm(self, timeout_s: float = 5.0) -> None:
        """Stop the background pre-synthesis (after the sentence it is on) and wait for it. A server
        shutting down calls this: a daemon thread still inside the TTS's native code when the
        interpreter finalises is killed mid-call (pthread_exit as it takes the GIL back), and the
        forced unwind through the C++ frames aborts the process (std::terminate, exit status -6
        instead of 0 after a SIGTERM)."""
        self._prewarm_stop.set()
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
