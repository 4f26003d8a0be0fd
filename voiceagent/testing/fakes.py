"""Fake models for fast tests of the call engine, as LiveKit Agents and Pipecat have: the real
session, turn detector, playout and legs run unchanged on them, with no model loaded, on simulated
time, so a whole call plays out in milliseconds.

How a test speaks: `FakeASR.speech(text)` gives a pure tone, its own frequency per text; FakeVAD
hears any loud enough chunk as speech, and FakeASR reads the tones in the audio it is asked about
back into their texts (so a partial decode, a turn with two utterances, or a syllable carried into
the next turn all come out as they would). Silence is zeros. `CallerScript` lays speech, silence
and key presses on the call's timeline and makes the leg that plays them.

How a test listens: FakeTTS speaks `ms_per_char` of tone per character of text, so the leg's
`agent_track()` shows where the agent spoke and for how long, and what was cut.

Each fake matches the duck type the engine uses (vad.py VoiceActivityDetector, asr.py
SpeechRecognizer, tts/voice.py Voice, llm.py LanguageModel, dialog/engine.py DialogEngine) and
returns the real data types (Transcript, SpeechChunk, Reply, Understanding). Each can be told to
fail, and records what it was asked. The product never imports this module.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..asr import Segment, Transcript
from ..audio import AudioFrame
from ..config import Config
from ..dialog import templates
from ..dialog.engine import DialogState, Reply
from ..dialog.escalation import Escalation
from ..dialog.nlu import Understanding
from ..legs import FileLeg
from ..runtime import Runtime
from ..tts import SpeechChunk

SAMPLE_RATE = 16000  # the engine's rate: what the VAD and the recogniser are given
SPEECH_RMS = 0.01  # FakeVAD: a chunk this loud (RMS) or louder is speech
# Caller tones: one frequency per text, far enough apart to tell apart in one 32 ms VAD chunk (the
# FFT's bins are 31 Hz wide there) and under 3.8 kHz, so that they survive a leg at 8 kHz.
FIRST_TONE_HZ = 240.0
TONE_STEP_HZ = 80.0
MAX_TONE_HZ = 3800.0
AGENT_TONE_HZ = 1000.0
_BLOCK = 512


def tone(seconds: float, frequency: float, amplitude: float = 0.3, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A cosine (loud from its first sample: nothing for a leading-silence trim to cut)."""
    t = np.arange(int(round(seconds * sample_rate)), dtype=np.float64) / sample_rate
    return (amplitude * np.cos(2 * np.pi * frequency * t)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _join(texts: list[str]) -> str:
    out = ""
    for text in texts:
        if not text:
            continue
        cjk = re.search(r"[\u3000-\u9fff\uff00-\uffef]", text[:1] + out[-1:])
        out += text if (not out or cjk) else " " + text
    return out


# -- VAD --------------------------------------------------------------------------------------

class FakeVAD:
    """Speech is a chunk whose RMS is at least `threshold`: a test speaks with a tone and is silent
    with zeros. The same chunk size as Silero, so turn timings match the real engine's."""

    chunk_samples = 512

    def __init__(self, threshold: float = SPEECH_RMS):
        self.name = "fake-vad-rms"
        self.threshold = threshold
        self.chunks = 0  # chunks judged

    def speech_probability(self, chunk: np.ndarray) -> float:
        self.chunks += 1
        return 1.0 if _rms(chunk) >= self.threshold else 0.0

    def reset(self) -> None:
        pass


# -- ASR --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Utterance:
    text: str
    frequency: float
    language: str | None  # None: the recogniser's own language
    fails: bool  # decoding audio with this utterance in it raises


@dataclass(frozen=True)
class AsrCall:
    """One transcribe() the engine asked for."""

    seconds: float
    language: str | None
    urgent: bool
    check_switch: bool
    text: str | None  # what was returned; None when it raised


class FakeASR:
    """Reads FakeASR.speech() tones back into their texts.

    `language`: the language the caller speaks unless an utterance says otherwise. `default_text`:
    what any other loud sound decodes to (a cough: "" by default). `fail`: every decode raises
    (set it at any time; `error` is what is raised)."""

    def __init__(self, language: str = "en", default_text: str = "", fail: bool = False,
                 error: Exception | None = None, probability: float = 0.99):
        self.name = "fake-asr"
        self.language = language
        self.default_text = default_text
        self.fail = fail
        self.error = error or RuntimeError("fake ASR failure")
        self.probability = probability
        self.queue_depth = 0  # nothing ever waits: partial decodes always run
        self.calls: list[AsrCall] = []
        self._utterances: dict[tuple[str, str | None, bool], Utterance] = {}
        self._lock = threading.Lock()  # decodes run in worker threads

    # -- the test's side ----------------------------------------------------------------------
    def utterance(self, text: str, language: str | None = None, fails: bool = False) -> Utterance:
        """The utterance for `text` (the same text, the same tone)."""
        key = (text, language, fails)
        with self._lock:
            if key not in self._utterances:
                frequency = FIRST_TONE_HZ + TONE_STEP_HZ * len(self._utterances)
                if frequency > MAX_TONE_HZ:
                    raise ValueError("too many distinct utterances for one FakeASR")
                self._utterances[key] = Utterance(text, frequency, language, fails)
            return self._utterances[key]

    def speech(self, text: str, seconds: float | None = None, language: str | None = None, fails: bool = False,
               sample_rate: int = SAMPLE_RATE, amplitude: float = 0.3) -> np.ndarray:
        """Audio that decodes to `text`: by default 60 ms a character, at least 0.3 s."""
        u = self.utterance(text, language, fails)
        return tone(seconds if seconds is not None else max(0.3, 0.06 * len(text)), u.frequency, amplitude,
                    sample_rate)

    @property
    def heard(self) -> list[str]:
        """The texts of the urgent decodes (the ones a turn's end waits for), in order."""
        return [c.text for c in self.calls if c.urgent and c.text is not None]

    # -- SpeechRecognizer ---------------------------------------------------------------------
    def _read(self, audio: np.ndarray) -> list[Utterance | None]:
        """The utterances in `audio`, in order (None: a loud sound that is none of them)."""
        found: list[Utterance | None] = []
        last = "silence"
        known = list(self._utterances.values())
        window = np.hanning(_BLOCK)
        for i in range(0, len(audio), _BLOCK):
            block = audio[i : i + _BLOCK]
            if _rms(block) < SPEECH_RMS:
                last = "silence"
                continue
            block = np.pad(block, (0, _BLOCK - len(block))) * window
            peak = float(np.argmax(np.abs(np.fft.rfft(block)))) * SAMPLE_RATE / _BLOCK
            match = min(known, key=lambda u: abs(u.frequency - peak), default=None)
            if match is not None and abs(match.frequency - peak) > TONE_STEP_HZ / 2:
                match = None
            if match is not last:  # one utterance spans many chunks: count it once
                found.append(match)
            last = match
        return found

    def transcribe(self, audio: np.ndarray, language: str | None = None, urgent: bool = True,
                   check_switch: bool = False, domain: str = "service") -> Transcript:
        audio = np.asarray(audio, dtype=np.float32)
        seconds = round(len(audio) / SAMPLE_RATE, 3)
        try:
            if self.fail:
                raise self.error
            found = self._read(audio)
            if any(u is not None and u.fails for u in found):
                raise self.error
        except Exception:
            self.calls.append(AsrCall(seconds, language, urgent, check_switch, None))
            raise
        if not found:  # nothing heard: no language either, unless the call's was given
            self.calls.append(AsrCall(seconds, language, urgent, check_switch, ""))
            return Transcript("", language or "", 1.0 if language else 0.0, seconds)
        text = _join([u.text if u is not None else self.default_text for u in found])
        spoken = next((u.language for u in found if u is not None and u.language), self.language)
        scores: dict[str, float] = {}
        result_language = language or spoken
        if language is None or check_switch:  # the detector ran (as the real recogniser's does)
            scores = {spoken: self.probability}
            if language is not None and language != spoken:
                scores[language] = round(1.0 - self.probability, 3)
            result_language = spoken
        self.calls.append(AsrCall(seconds, language, urgent, check_switch, text))
        return Transcript(text, result_language, self.probability, seconds, [Segment(0.0, seconds, text)], scores)

    def detect_language(self, audio: np.ndarray, urgent: bool = True) -> tuple[str, float]:
        if self.fail:
            raise self.error
        found = [u for u in self._read(np.asarray(audio, dtype=np.float32)) if u is not None]
        return next((u.language for u in found if u.language), self.language), self.probability

    def warm_up(self) -> None:
        pass


# -- TTS --------------------------------------------------------------------------------------

class FakeVoice:
    def __init__(self, tts: "FakeTTS", language: str):
        self.tts = tts
        self.language = language
        self.name = f"fake-voice-{language}"
        self.sample_rate = tts.sample_rate

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        tts = self.tts
        if tts.fail or (tts.fail_on is not None and tts.fail_on(text)):
            tts.failures.append(text)
            raise tts.error
        tts.said.append((self.language, text))
        if text.strip():
            yield SpeechChunk(tone(tts.duration_s(text), AGENT_TONE_HZ, tts.amplitude, self.sample_rate),
                              self.sample_rate, text)


class FakeTTS:
    """Speech as a tone `ms_per_char` long per character of text (spaces aside), so the agent's
    track shows where it spoke and how much of a reply was heard.

    `fail`: every synthesis raises; `fail_on(text)`: those texts raise (a reply is synthesised
    sentence by sentence, or clause by clause for a long one: failing a later one fails mid-reply)."""

    def __init__(self, ms_per_char: float = 60.0, sample_rate: int = SAMPLE_RATE, amplitude: float = 0.2,
                 fail: bool = False, fail_on: Callable[[str], bool] | None = None, error: Exception | None = None):
        self.ms_per_char = ms_per_char
        self.sample_rate = sample_rate
        self.amplitude = amplitude
        self.fail = fail
        self.fail_on = fail_on
        self.error = error or RuntimeError("fake TTS failure")
        self.cache = None  # no speech cache: Runtime.prewarm_speech does nothing
        self.said: list[tuple[str, str]] = []  # (language, text) synthesised
        self.failures: list[str] = []  # texts that raised
        self._voices: dict[str, FakeVoice] = {}

    def duration_s(self, text: str) -> float:
        return len(re.sub(r"\s", "", text)) * self.ms_per_char / 1000

    def voice(self, language: str) -> FakeVoice:
        lang = "zh" if language.startswith("zh") else "en"  # as the real router: one voice per language
        if lang not in self._voices:
            self._voices[lang] = FakeVoice(self, lang)
        return self._voices[lang]

    def preload(self) -> None:
        pass

    def prewarm(self, texts_by_language: dict[str, list[str]], stop: threading.Event | None = None) -> int:
        return 0


# -- LLM --------------------------------------------------------------------------------------

class FakeLLM:
    """Streams scripted replies, one per stream() call, in order: a string (cut into word tokens),
    a list of tokens, or an exception to raise. After the script, `default`."""

    def __init__(self, replies: Iterable[str | list[str] | Exception] = (), default: str = "OK."):
        self.name = "fake-llm"
        self._replies = list(replies)
        self.default = default
        self.prompts: list[list[dict[str, str]]] = []  # the messages of each stream() call
        self.closed = False

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Iterator[str]:
        self.prompts.append([dict(m) for m in messages])
        scripted = self._replies.pop(0) if self._replies else self.default
        if isinstance(scripted, Exception):
            raise scripted
        tokens = scripted if isinstance(scripted, list) else re.findall(r"\S+\s*", scripted)
        yield from tokens[:max_tokens] if max_tokens else tokens

    def close(self) -> None:
        self.closed = True


# -- dialog -----------------------------------------------------------------------------------

def reply(text: str = "", intent: str = "other", *, language: str = "", confidence: float = 0.9,
          slots: Mapping[str, str] | None = None, resolved: bool = True, handoff: bool = False,
          handoff_reason: str | None = None, handoff_target: str | None = None, handoff_summary: dict | None = None,
          pieces: Iterable[str] | None = None, escalation: Escalation | None = None, source: str = "template",
          grounding: Iterable[str] = ()) -> Reply:
    """A real dialog Reply for FakeDialog to give. `language` "" is the turn's (as the engine
    replies in the language it heard); `pieces`: a streamed reply (`text` is then filled from what
    was said, as for an LLM's)."""
    u = Understanding(text="", intent=intent, confidence=confidence, slots=dict(slots or {}), language=language)
    if escalation is None:
        escalation = Escalation("transfer", handoff_reason, None, handoff_target) if handoff else Escalation()
    return Reply(text, u, intent, dict(slots or {}), handoff=handoff, handoff_reason=handoff_reason,
                 handoff_target=handoff_target, handoff_summary=handoff_summary, escalation=escalation,
                 resolved=resolved and not handoff, source=source, grounding=list(grounding),
                 streaming=pieces is not None, pieces=list(pieces) if pieces is not None else None)


Scripted = Reply | str | Exception | Callable[[str, DialogState, str], "Reply | str"]


@dataclass
class Heard:
    """One turn the dialog was given."""

    text: str
    language: str | None
    state_language: str


class FakeDialog:
    """Scripted replies, as DialogEngine gives them (respond_cached, respond, callback_ticket).

    `replies`: in order (a list), or by the caller's words (a mapping, case and spaces aside). Each
    is a Reply (see `reply()`), a text, an exception to raise, or a function of (text, state,
    language). After the script, or for words not in the mapping, `default` (None: raise)."""

    def __init__(self, replies: Iterable[Scripted] | Mapping[str, Scripted] = (), default: str | None = "OK.",
                 ticket_id: str = "CB-FAKE-1", ticket_error: Exception | None = None):
        self.keyed = isinstance(replies, Mapping)
        self._replies: dict[str, Scripted] | list[Scripted] = (
            {self._key(k): v for k, v in replies.items()} if self.keyed else list(replies))
        self.default = default
        self.ticket_id = ticket_id
        self.ticket_error = ticket_error
        self.heard: list[Heard] = []
        self.callbacks: list[dict] = []  # the handoff summaries callback tickets were booked with
        self.llm = None

    @staticmethod
    def _key(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip().lower()

    def _next(self, text: str) -> Scripted:
        if self.keyed:
            found = self._replies.get(self._key(text))
        else:
            found = self._replies.pop(0) if self._replies else None
        if found is None:
            if self.default is None:
                raise LookupError(f"FakeDialog has no reply for {text!r}")
            return self.default
        return found

    def respond_cached(self, text: str, state: DialogState, language: str | None = None, voice=None,
                       at_s: float = 0.0) -> Reply | None:
        return None  # no hot cache: every turn goes to respond()

    def respond(self, text: str, state: DialogState, language: str | None = None, cache_checked: bool = False,
                stream: bool = False, voice=None, at_s: float = 0.0,
                language_scores: dict[str, float] | None = None) -> Reply:
        self.heard.append(Heard(text, language, state.language))
        lang = language if language in ("zh", "en") else state.language
        scripted = self._next(text)
        if callable(scripted) and not isinstance(scripted, Reply):
            scripted = scripted(text, state, lang)
        if isinstance(scripted, Exception):
            raise scripted
        if isinstance(scripted, str):
            scripted = reply(scripted)
        # a copy: a keyed reply may be given again, and the session fills in its parts
        r = dataclasses.replace(scripted, understanding=dataclasses.replace(scripted.understanding),
                                slots=dict(scripted.slots), grounding=list(scripted.grounding))
        if r.pieces is not None:
            r.pieces = (piece for piece in list(r.pieces))  # a generator, as a streamed LLM reply is
        # the state moves as the real engine moves it: the reply's language, intents, slots, history
        u = r.understanding
        u.text = text
        u.language = u.language or lang
        state.language = u.language
        state.intents.append(r.intent)
        state.slots.update(u.slots)
        r.slots = dict(state.slots)
        state.history = (state.history + [("caller", text)] + ([("agent", r.text)] if r.text else []))[-20:]
        if r.handoff and r.handoff_summary is None:
            r.handoff_summary = {"reason": r.handoff_reason, "brief": f"Caller said: {text}",
                                 "intents": list(state.intents)}
        return r

    def callback_ticket(self, state: DialogState, summary: dict, lang: str) -> str:
        state.transfer_failures += 1
        self.callbacks.append(dict(summary))
        if self.ticket_error is not None:
            raise self.ticket_error
        state.callback_ticket = state.callback_ticket or self.ticket_id
        return templates.render(lang, "transfer_failed", ticket_id=state.callback_ticket)


# -- the runtime --------------------------------------------------------------------------------

@dataclass
class FakeRuntime(Runtime):
    """A Runtime whose every call gets a FakeVAD."""

    vad_threshold: float = SPEECH_RMS

    def new_vad(self) -> FakeVAD:
        return FakeVAD(self.vad_threshold)

    def model_names(self) -> dict[str, str]:
        return {"asr": getattr(self.asr, "name", "none"), "tts": "fake-tts",
                "llm": getattr(self.llm, "name", "none"), "vad": "fake-vad-rms"}


def fake_runtime(*, asr: FakeASR | None = None, tts: FakeTTS | None = None, dialog: FakeDialog | None = None,
                 llm: FakeLLM | None = None, config: Config | None = None, perception=None,
                 **call: object) -> FakeRuntime:
    """A Runtime on fakes (each made with its defaults unless given) and a default Config; keyword
    arguments override the [call] section (reprompt_after_s=2.0, max_stage_errors=2...)."""
    config = config or Config()
    if call:
        config = dataclasses.replace(config, call=dataclasses.replace(config.call, **call))
    dialog = dialog if dialog is not None else FakeDialog()
    if llm is not None:
        dialog.llm = llm
    return FakeRuntime(config, asr=asr or FakeASR(), tts=tts or FakeTTS(), llm=llm, dialog=dialog,
                       perception=perception)


# -- the caller ---------------------------------------------------------------------------------

@dataclass
class Spoken:
    text: str
    start_s: float
    end_s: float


class CallerScript:
    """The caller's side of a test call on the call's timeline: speech (FakeASR tones), silence
    and key presses, played by a FileLeg (`file_leg`) or pushed as frames (`frames`)."""

    def __init__(self, asr: FakeASR, sample_rate: int = SAMPLE_RATE):
        self.asr = asr
        self.sample_rate = sample_rate
        self._parts: list[np.ndarray] = []
        self._length = 0
        self.spoken: list[Spoken] = []
        self.keys: list[tuple[float, str]] = []  # (time, key)

    @property
    def now_s(self) -> float:
        return self._length / self.sample_rate

    def _add(self, samples: np.ndarray) -> None:
        self._parts.append(samples.astype(np.float32, copy=False))
        self._length += len(samples)

    def silence(self, seconds: float) -> "CallerScript":
        self._add(np.zeros(int(round(seconds * self.sample_rate)), np.float32))
        return self

    def until(self, t: float) -> "CallerScript":
        """Silence up to `t` on the timeline."""
        if t > self.now_s:
            self.silence(t - self.now_s)
        return self

    def say(self, text: str, at_s: float | None = None, seconds: float | None = None, language: str | None = None,
            fails: bool = False) -> Spoken:
        """Speak `text` at `at_s` (or now): returns when it starts and ends."""
        if at_s is not None:
            if at_s < self.now_s - 1e-9:
                raise ValueError(f"at_s={at_s} is before the script's end ({self.now_s:.3f} s)")
            self.until(at_s)
        start = self.now_s
        self._add(self.asr.speech(text, seconds, language, fails, self.sample_rate))
        spoken = Spoken(text, start, self.now_s)
        self.spoken.append(spoken)
        return spoken

    def sound(self, samples: np.ndarray, at_s: float | None = None) -> Spoken:
        """Any other sound (a cough, line noise) at `at_s` (or now), at the script's rate."""
        if at_s is not None:
            self.until(at_s)
        start = self.now_s
        self._add(np.asarray(samples, np.float32))
        return Spoken("", start, self.now_s)

    def press(self, keys: str, at_s: float | None = None, every_s: float = 0.3) -> list[float]:
        """Key presses from `at_s` (or now), `every_s` apart, over whatever audio is there; the script
        is made long enough to carry them. Returns their times."""
        start = self.now_s if at_s is None else at_s
        times = [start + i * every_s for i in range(len(keys))]
        self.keys.extend(zip(times, keys))
        self.keys.sort()
        self.until(times[-1] + 0.1)
        return times

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)

    def file_leg(self) -> FileLeg:
        """A FileLeg on simulated time: the input ends (the caller hangs up) where the script ends."""
        return FileLeg(self.audio, self.sample_rate, realtime=False, dtmf=self.keys)

    def frames(self, frame_ms: int = 20) -> list[AudioFrame]:
        """The audio as a phone sends it, in frames stamped on the timeline (for MemoryLeg.push)."""
        size = self.sample_rate * frame_ms // 1000
        audio = self.audio
        return [AudioFrame(audio[i : i + size], self.sample_rate, i / self.sample_rate)
                for i in range(0, len(audio) - size + 1, size)]
