"""Speech recognition: faster-whisper (CTranslate2), language pinned or detected.

The model is loaded once per process and shared by every call (CTranslate2 releases the GIL, so
decoding runs in worker threads without blocking the event loop). Chinese output is kept in
Simplified characters with a Simplified initial prompt plus a character map for what slips through.

A call turn (under LONG_AUDIO_S) is not padded to Whisper's 30 s window: only the speech plus
WINDOW_PAD_S of silence is encoded and decoded (~3x faster); longer audio goes through
faster-whisper's own `transcribe`. Decodes take one of `parallel_decodes` priority slots: final
transcripts (urgent) go before speculative partials waiting for the model.

Whisper answers for callers who said nothing: a turn that is only a tone or steady hiss is not
decoded, and a Mandarin decode that echoes the initial prompt or loops is decoded once more without
the prompt (asr_guard.py holds the checks; benchmarks/eval_asr_zh_phone.py measures them).

Parallel decodes, one thread each, rather than one decode on every core: on the 2-core machines we
measured (benchmarks/bench_asr_parallel.py), a whisper-base turn decodes as fast on one thread as on
two (391 vs 404 ms), so two at once make 4.45 turns/s against 2.69 for one two-thread decoder, at no
cost to a call on its own.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from . import asr_guard
from .config import AsrConfig
from .errors import ModelMissing
from .provision import resolve
from .textnorm import to_simplified

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160  # samples per mel frame
LONG_AUDIO_S = 28.0  # from here on, faster-whisper's 30 s window path
WINDOW_PAD_S = 2.0  # silence after the speech; 1 s garbled 2 sample turns (WER en .070 vs .058)
# faster-whisper's defaults for calling a decode silence (no_speech_threshold, log_prob_threshold,
# compression_ratio_threshold)
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
# Audio whose loudest 100 ms stays below this is not decoded: Whisper turns near-silence into
# "you" / "Thank you." / the initial prompt with confident scores. Speech turns are ~-15 dBFS.
SILENCE_DBFS = -50.0
SWITCH_MIN_S = 1.5  # detection on less speech than this is too unsure to override the call's language
MIN_REPEAT_TOKENS = 4  # shortest unit the repeated-tail safety net collapses (shorter: asr_guard, 3 copies)
# Whisper's prompt budget is 223 tokens (half its text context); the shop's words are added to the
# Mandarin prompt only up to this many, so the prompt's opening sentence is never truncated away.
PROMPT_TOKEN_BUDGET = 150
# Whisper's stock subtitles ("谢谢观看") are taken for the caller's words only on audio at least
# this long and this loud, where Whisper does not doubt a voice either.
STOCK_PHRASE_MIN_S = 2.0
STOCK_PHRASE_MIN_DBFS = -35.0
STOCK_PHRASE_NO_SPEECH = 0.3


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    language: str
    language_probability: float
    duration_s: float
    segments: list[Segment] = field(default_factory=list)
    # the detector's probabilities over all its languages (top few), when it ran: "yue" among them
    # tells Cantonese apart where the model knows it (Whisper large-v3)
    language_scores: dict[str, float] = field(default_factory=dict)


class SpeechRecognizer(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, language: str | None = None, urgent: bool = True,
                   check_switch: bool = False, domain: str = "service") -> Transcript:
        """`language`: decode in it (None: detect). `check_switch`: `language` is only the call's
        guess, and a turn plainly in another configured language is decoded in that one.
        `domain`: the kind of call, for the words expected ("service" or "marketing")."""

    def warm_up(self) -> None:
        """The first decode of a process pays one-off costs (~1 s); pay them at start-up, not on a call."""

    def detect_language(self, audio: np.ndarray, urgent: bool = True) -> tuple[str, float]: ...


class PrioritySlots:
    """A semaphore of `slots` whose urgent waiters acquire before non-urgent ones; first come, first
    served within a level. A final transcript must not queue behind other calls' speculative partials."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._cond = threading.Condition()
        self._busy = 0
        self._queue: list[tuple[int, int]] = []  # heap of (0 urgent / 1 not, arrival number)
        self._arrivals = itertools.count()

    def acquire(self, urgent: bool = True) -> None:
        with self._cond:
            ticket = (0 if urgent else 1, next(self._arrivals))
            heapq.heappush(self._queue, ticket)
            try:
                while self._busy >= self.slots or self._queue[0] != ticket:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue as if never queued
                self._queue.remove(ticket)
                heapq.heapify(self._queue)
                self._cond.notify_all()
                raise
            heapq.heappop(self._queue)
            self._busy += 1
            self._cond.notify_all()  # the next in line may take a free slot too

    def release(self) -> None:
        with self._cond:
            if not self._busy:
                raise RuntimeError("release of an unheld PrioritySlots")
            self._busy -= 1
            self._cond.notify_all()

    @contextmanager
    def hold(self, urgent: bool = True) -> Iterator[None]:
        self.acquire(urgent)
        try:
            yield
        finally:
            self.release()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)


def whisper_device(config: AsrConfig) -> tuple[str, str]:
    """(device, compute type) CTranslate2 is asked for: `device = "auto"` takes a CUDA GPU where
    CTranslate2 sees one; `compute_type = "auto"` is float16 on a GPU, int8 on the CPU."""
    device = config.device
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"[asr] device must be cpu, cuda or auto, not {device!r}")
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute_type = config.compute_type
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def _load_whisper(ref: str, config: AsrConfig):
    from faster_whisper import WhisperModel

    path = resolve(ref, "asr")
    # Not a manifest id nor a path: a faster-whisper size or hub name (needs a model hub).
    source = str(path) if path is not None else ref
    try:
        device, compute_type = whisper_device(config)
        return WhisperModel(source, device=device, compute_type=compute_type, cpu_threads=config.cpu_threads,
                            num_workers=max(1, config.parallel_decodes))
    except Exception as exc:  # ctranslate2/huggingface raise many types; all mean "cannot load"
        raise ModelMissing(f"cannot load ASR model {ref!r}: {exc}") from None


class _EncoderCache:
    """Remembers the encoder output of the last window encoded, per thread.

    Detecting the language encodes the turn's window, and decoding would encode the very same
    window again; with this cache in front of `WhisperModel.encode` the second pass is free.
    (Per thread: decodes run in parallel, each in its own worker thread from detection to decode.)
    """

    def __init__(self, model):
        self._encode = model.encode
        self._last = threading.local()
        model.encode = self  # an instance attribute shadows the method for this model only

    def __call__(self, features: np.ndarray):
        key = (features.shape, hashlib.blake2b(np.ascontiguousarray(features).tobytes(), digest_size=16).digest())
        if getattr(self._last, "key", None) != key:
            self._last.value = self._encode(features)
            self._last.key = key
        return self._last.value


def _loudest_dbfs(audio: np.ndarray) -> float:
    """Level of the loudest 100 ms of the audio."""
    step = SAMPLE_RATE // 10
    n = max(1, math.ceil(len(audio) / step))
    padded = np.zeros(n * step, np.float32)
    padded[: len(audio)] = audio
    rms = np.sqrt(np.mean(np.square(padded.reshape(n, step)), axis=1)).max()
    return float(20 * np.log10(max(rms, 1e-10)))


def _window_features(model, audio: np.ndarray) -> np.ndarray:
    """Mel features of the speech plus WINDOW_PAD_S of silence, in whole seconds.

    The padding is audio (as Whisper pads), not zeroed features: the log-mel normalisation sees it.
    """
    window = int(math.ceil(len(audio) / SAMPLE_RATE + WINDOW_PAD_S)) * SAMPLE_RATE
    padded = np.zeros(window + HOP, np.float32)
    padded[: len(audio)] = audio
    return model.feature_extractor(padded)[:, : window // HOP]


def _echoes_prompt(text: str, prompt: str) -> bool:
    """Whisper fed a short or unclear sound often answers with the initial prompt's own words
    ("订单号、发货、退款、", "以下是电商客服"): see asr_guard.echoes_prompt."""
    return asr_guard.echoes_prompt(text, prompt)


def _strip_repeated_tail(tokens: list[int]) -> list[int]:
    """'A B B B' -> 'A B' for a unit B of MIN_REPEAT_TOKENS tokens or more (a decoder loop)."""
    n = len(tokens)
    for size in range(MIN_REPEAT_TOKENS, n // 2 + 1):
        unit = tokens[n - size :]
        copies = 1
        while copies * size + size <= n and tokens[n - (copies + 1) * size : n - copies * size] == unit:
            copies += 1
        if copies > 1:
            return tokens[: n - (copies - 1) * size]
    return tokens


@dataclass
class _DecodeSetup:
    tokenizer: object  # faster_whisper.tokenizer.Tokenizer
    prompt: list[int]
    suppress_tokens: list[int]
    zh_prompt: str = ""  # the Mandarin prompt's text, shop's words included (what an echo repeats)


@dataclass
class _Decoded:
    segments: list[Segment]
    no_speech_prob: float
    looped: bool = False  # the decoder ran to its length cap (repeating itself)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


class WhisperASR:
    def __init__(self, config: AsrConfig):
        self.config = config
        self.name = f"faster-whisper:{config.model}"
        self._model = _load_whisper(config.model, config)
        self._english = _load_whisper(config.english_model, config) if config.english_model else None
        _EncoderCache(self._model)
        # As many decodes at once as the model has workers (CTranslate2 replicas); the rest queue.
        self._decode_slots = PrioritySlots(max(1, config.parallel_decodes))
        self._setups: dict[tuple[int, str, str, bool], _DecodeSetup] = {}
        self._setup_lock = threading.Lock()  # set_vocabulary vs decodes building a setup
        self._vocabulary: list[str] = _clean_words(config.vocabulary)
        self._detected = threading.local()  # the last detection's scores, per decode thread

    def set_vocabulary(self, words: list[str]) -> None:
        """The shop's own words (product names, carriers) to bias Mandarin decodes towards, in
        place of [asr] vocabulary. Safe while other threads decode: they finish with the prompt
        they started with; the next decode builds its setup with these words. Measure before
        wiring a whole catalogue: whisper-base then writes product names it did not hear
        (benchmarks/eval_asr_zh_phone.py --vocabulary demo-shop)."""
        cleaned = _clean_words(words)
        with self._setup_lock:
            self._vocabulary = cleaned
            self._setups = {}

    @property
    def vocabulary(self) -> list[str]:
        return list(self._vocabulary)

    @property
    def queue_depth(self) -> int:
        """Decodes waiting for the model: calls skip optional (partial) decodes while there are any."""
        return self._decode_slots.waiting

    def warm_up(self) -> None:
        """The first decode of a process pays one-off costs (~1 s); pay them at start-up, not on a call."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        self.detect_language(noise)
        self.transcribe(noise, self.config.languages[0] if self.config.languages else "en")

    # -- language -------------------------------------------------------------------------------
    def _detection_features(self, audio: np.ndarray) -> np.ndarray:
        model = self._model
        if len(audio) < LONG_AUDIO_S * SAMPLE_RATE:
            return _window_features(model, audio)
        from faster_whisper.audio import pad_or_trim

        features = model.feature_extractor(audio)
        # the window faster-whisper's transcribe encodes first (it drops the last frame), so the
        # encoder cache serves both
        frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
        return pad_or_trim(features[:, :frames])

    def _detect(self, features: np.ndarray) -> tuple[str, float]:
        """Caller holds a decode slot."""
        model = self._model
        if not model.model.is_multilingual:
            return "en", 1.0
        results = model.model.detect_language(model.encode(features))[0]
        all_probs = [(token[2:-2], prob) for token, prob in results]
        self._detected.scores = {lang: round(float(p), 3) for lang, p in all_probs[:5]}
        allowed = {lang: p for lang, p in all_probs if lang in self.config.languages}
        if not allowed:
            lang, prob = all_probs[0]
            return lang, float(prob)
        total = sum(allowed.values()) or 1.0
        lang = max(allowed, key=allowed.get)
        return lang, float(allowed[lang] / total)

    def detect_language(self, audio: np.ndarray, urgent: bool = True) -> tuple[str, float]:
        """Most likely language among the configured ones, with its probability among them."""
        if not self._model.model.is_multilingual:
            return "en", 1.0
        features = self._detection_features(audio.astype(np.float32, copy=False))
        with self._decode_slots.hold(urgent):
            return self._detect(features)

    # -- transcription --------------------------------------------------------------------------
    def _model_for(self, language: str):
        return self._english if (language == "en" and self._english is not None) else self._model

    def transcribe(self, audio: np.ndarray, language: str | None = None, urgent: bool = True,
                   check_switch: bool = False, domain: str = "service") -> Transcript:
        """`domain`: which Mandarin prompt biases the decode: "service" (customer service, the
        default) or "marketing" (a campaign call's "好的，发给我吧" / "别再打了").
        `urgent`: a final transcript (goes before waiting non-urgent decodes such as partials).
        `check_switch`: see SpeechRecognizer.transcribe; costs one detection pass (~20 ms for
        whisper-base), so the turn detector asks for it once a turn."""
        audio = audio.astype(np.float32, copy=False)
        duration = len(audio) / SAMPLE_RATE
        if duration >= LONG_AUDIO_S:
            return self._transcribe_long(audio, language, urgent)
        pinned = language
        loudest = _loudest_dbfs(audio)
        if loudest < SILENCE_DBFS:
            return self._nothing_heard(pinned, duration)
        # a beep, a DTMF key, a dial tone or hiss: Whisper would write the prompt or a subtitle
        if (why := asr_guard.non_speech(audio)) is not None:
            log.debug("no speech (%s)", why)
            return self._nothing_heard(pinned, duration)
        prob = 1.0
        scores: dict[str, float] = {}
        model = self._model_for(language) if language else self._model
        features = _window_features(model, audio)
        with self._decode_slots.hold(urgent):
            if language is None:
                language, prob = self._detect(features)  # encodes the window the decode uses
                scores = dict(getattr(self._detected, "scores", {}))
            elif check_switch and self._may_switch(model, duration):
                # the call's language is only a hint: one decoder step on the window already encoded
                # tells whether this turn is plainly in another (the caller switched)
                detected, p = self._detect(features)
                scores = dict(getattr(self._detected, "scores", {}))
                if detected != language and p >= self.config.switch_probability:
                    log.debug("turn in %s (p=%.2f), not the call's %s: decoded in %s", detected, p, language, detected)
                    language, prob = detected, p
            if self._model_for(language) is not model:
                model = self._model_for(language)
                features = _window_features(model, audio)
            decoded = self._decode_window(model, features, language, duration, domain)
            if decoded is not None and language == "zh":
                decoded = self._without_prompt_if_misled(model, features, duration, domain, decoded)
        if decoded is None:
            return self._nothing_heard(pinned, duration)
        segs = decoded.segments
        text = decoded.text
        if asr_guard.is_stock_phrase(text) and (duration < STOCK_PHRASE_MIN_S or loudest < STOCK_PHRASE_MIN_DBFS
                                                or decoded.no_speech_prob > STOCK_PHRASE_NO_SPEECH):
            log.debug("Whisper's stock subtitle %r on doubtful audio: nothing heard", text)
            return self._nothing_heard(pinned, duration)
        result = self._finish(segs, language, prob, duration)
        result.language_scores = scores
        return result

    def _without_prompt_if_misled(self, model, features: np.ndarray, duration: float, domain: str,
                                  decoded: _Decoded) -> _Decoded | None:
        """A Mandarin decode that echoes the initial prompt ("发货、退货、退货、…" for "好的，没问题")
        or loops is decoded once more without the prompt; an echo both times is nothing heard.
        Caller holds a decode slot."""
        prompt = self._setup(model, "zh", domain).zh_prompt
        echo = _echoes_prompt(decoded.text, prompt)
        if not (echo or decoded.looped):
            return decoded
        again = self._decode_window(model, features, "zh", duration, domain, prompted=False)
        # without the prompt there is nothing to echo: a caller's own "查快递物流" (all of it prompt
        # words) is heard; only the prompt's opening sentence would still be the old echo
        if again is not None and not again.looped and not asr_guard.opens_like_prompt(again.text, prompt):
            log.debug("prompted decode %s (%r): %r without the prompt", "echoed" if echo else "looped",
                      decoded.text, again.text)
            return again
        if echo:
            log.debug("decode only echoes the initial prompt: nothing heard")
            return None
        return decoded  # its loop collapsed (asr_guard.collapse_repeated_tail)

    def _may_switch(self, model, duration: float) -> bool:
        return (self.config.switch_probability < 1.0 and duration >= SWITCH_MIN_S
                and model.model.is_multilingual and len(self.config.languages) > 1)

    @staticmethod
    def _nothing_heard(language: str | None, duration: float) -> Transcript:
        # a language detected on noise must not pin the call's language
        return Transcript("", language or "", 1.0 if language else 0.0, round(duration, 3))

    def _zh_prompt(self, domain: str) -> str:
        return self.config.zh_marketing_prompt if domain == "marketing" else self.config.zh_initial_prompt

    def _setup(self, model, language: str, domain: str = "service", prompted: bool = True) -> _DecodeSetup:
        key = (id(model), language, domain, prompted)
        setups = self._setups  # set_vocabulary swaps the dict: a setup from the old one is still whole
        if key not in setups:
            with self._setup_lock:
                setups = self._setups
                if key not in setups:
                    setups[key] = self._build_setup(model, language, domain, self._vocabulary, prompted)
        return setups[key]

    def _build_setup(self, model, language: str, domain: str, vocabulary: list[str],
                     prompted: bool = True) -> _DecodeSetup:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        multilingual = model.model.is_multilingual
        tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                              language=language if multilingual else None)
        zh_prompt = ""
        previous: list[int] = []
        if language == "zh" and multilingual and self._zh_prompt(domain):
            zh_prompt = _with_vocabulary(self._zh_prompt(domain).strip(), vocabulary,
                                         lambda text: len(tokenizer.encode(" " + text)))
            if prompted:  # as faster-whisper's initial_prompt: " " + prompt
                previous = tokenizer.encode(" " + zh_prompt)
        # timestamps on: without them the decoder repeats the sentence on short windows
        prompt = model.get_prompt(tokenizer, previous, without_timestamps=False)
        return _DecodeSetup(tokenizer, prompt, list(get_suppressed_tokens(tokenizer, [-1])), zh_prompt)

    def _decode_window(self, model, features: np.ndarray, language: str, duration: float,
                       domain: str = "service", prompted: bool = True) -> _Decoded | None:
        """Greedy/beam decode of a short window; None when it is judged silence. Caller holds a decode slot.
        `prompted`: with the initial prompt (Mandarin)."""
        from faster_whisper.transcribe import get_compression_ratio

        setup = self._setup(model, language, domain, prompted)
        tokenizer = setup.tokenizer
        max_new = int(10 + duration * 12)  # caps a looping decoder, well above any speaking rate
        max_length = min(model.max_length, len(setup.prompt) + max_new)
        result = model.model.generate(
            model.encode(features), [setup.prompt],
            beam_size=self.config.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=setup.suppress_tokens,
            max_initial_timestamp_index=50,  # first word within 1 s, as faster-whisper
        )[0]
        tokens = result.sequences_ids[0]
        # faster-whisper's silence rule (generate_with_fallback): high no-speech probability and a
        # failed decode. We decode once (no temperature fallback), so a decode faster-whisper would
        # retry for being repetitive (compression ratio) or that hit the length cap counts as failed.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        looped = len(tokens) >= max_length - len(setup.prompt)
        failed = (avg_logprob < LOG_PROB_THRESHOLD
                  or get_compression_ratio(tokenizer.decode(tokens).strip()) > COMPRESSION_RATIO_THRESHOLD
                  or looped)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and failed:
            log.debug("no speech (p=%.2f, avg logprob %.2f)", result.no_speech_prob, avg_logprob)
            return None
        return _Decoded(self._segments(tokens, tokenizer, duration), float(result.no_speech_prob), looped)

    @staticmethod
    def _segments(tokens: list[int], tokenizer, duration: float) -> list[Segment]:
        """Text between timestamp tokens; a timestamp pair closes one segment and opens the next."""
        first_ts = tokenizer.timestamp_begin
        spans: list[tuple[float, float, list[int]]] = []
        start, text = 0.0, []
        for tok in tokens:
            if tok >= first_ts:
                t = (tok - first_ts) * 0.02
                if text:
                    spans.append((start, t, text))
                    text = []
                start = t
            elif tok < tokenizer.eot:
                text.append(tok)
        if text:
            spans.append((start, duration, text))
        last = math.floor(duration * 100 + 1e-6) / 100  # rounded down: segments end within the audio
        segs: list[Segment] = []
        for start, end, text in spans:
            # a loop of a short unit ("服服服服"); a cut multi-byte character decodes to U+FFFD
            words = tokenizer.decode(_strip_repeated_tail(text)).replace("\ufffd", "")
            words = asr_guard.collapse_repeated_tail(words).strip()
            if not words or (segs and words == segs[-1].text):  # a repeated segment is a loop too
                continue
            end = min(round(end, 2), last)
            segs.append(Segment(min(round(start, 2), end), end, words))
        return segs

    def _transcribe_long(self, audio: np.ndarray, language: str | None, urgent: bool) -> Transcript:
        duration = len(audio) / SAMPLE_RATE
        prob = 1.0
        if language is None:
            language, prob = self.detect_language(audio, urgent)
        model = self._model_for(language)
        prompt = self._setup(model, language).zh_prompt if language == "zh" else None
        with self._decode_slots.hold(urgent):
            segments, _info = model.transcribe(
                audio,
                language=language,
                beam_size=self.config.beam_size,
                temperature=0.0,
                condition_on_previous_text=False,
                initial_prompt=prompt,
                vad_filter=False,  # turns are already cut by our own VAD
                without_timestamps=False,
            )
            segs = [Segment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments]
        return self._finish(segs, language, prob, duration)

    @staticmethod
    def _finish(segs: list[Segment], language: str, prob: float, duration: float) -> Transcript:
        if language == "zh":
            segs = [Segment(s.start, s.end, to_simplified(s.text)) for s in segs]
        joiner = "" if language in ("zh", "ja") else " "
        text = joiner.join(s.text for s in segs if s.text).strip()
        return Transcript(text, language, round(prob, 3), round(duration, 3), segs)


def _clean_words(words) -> list[str]:
    """Distinct non-empty words, in order, without the list marks the prompt uses between them."""
    seen: dict[str, None] = {}
    for word in words or []:
        word = re.sub(r"[、，,。：:；;\s]+", " ", str(word)).strip()
        if word:
            seen.setdefault(word, None)
    return list(seen)


def _with_vocabulary(prompt: str, words: list[str], token_count) -> str:
    """The prompt with the shop's words added to its word list ("...、优惠券、<words>。"), as many as
    fit PROMPT_TOKEN_BUDGET (`token_count(text)`: the text's length in tokens)."""
    if not words:
        return prompt
    head, end = (prompt[:-1], prompt[-1]) if prompt.endswith(("。", ".")) else (prompt, "")
    sep = "、" if "：" in head else "：" if head else ""
    for word in words:
        candidate = head + sep + word
        if token_count(candidate + end) > PROMPT_TOKEN_BUDGET:
            break
        head, sep = candidate, "、"
    return head + end


def create_asr(config: AsrConfig) -> SpeechRecognizer:
    return WhisperASR(config)
