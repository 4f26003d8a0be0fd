"""Answering-machine detection: in the first seconds after an outbound call is answered, did a person
or a machine pick up?

A person says a short "喂？"/"Hello?" and waits; a machine talks on (a voicemail greeting), plays a
beep, or is a carrier announcement ("您拨打的电话已关机", "The number you have dialed is not in
service"), often after a short tone. The detector weighs the audio (how long the first speech runs
before a pause, a steady pure tone) and the words (the transcript of that speech, matched against a
table of machine phrases).

Calling a person a machine hangs up on a customer, so every doubt resolves to "human": a long
greeting needs either machine words or more continuous speech than anyone says in a greeting, and
silence or a timeout answer "human" by default.

`AnsweringMachineDetector` is the sans-IO core (deterministic, no threads): feed it VAD chunks,
and give it the transcript it asks for. `detect` drives it on a live call with a VAD and the ASR;
`wait_for_greeting_end` waits out a machine's greeting and beep before a message is left.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import AsyncIterator, Literal

import numpy as np

from ..textnorm import to_simplified

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
Verdict = Literal["human", "machine"]


@dataclass
class AmdConfig:
    speech_threshold: float = 0.5  # VAD probability that counts as speech
    min_speech_s: float = 0.12  # a shorter blip followed by silence is line noise, not a greeting
    # -- a person --
    max_wait_first_speech_s: float = 3.0  # nobody spoke by then: silence_verdict
    silence_verdict: Verdict = "human"  # many people pick up and wait for the caller to speak
    human_max_greeting_s: float = 1.8  # a greeting ("喂，你好，哪位啊？") is rarely longer
    human_silence_s: float = 0.5  # a pause this long after the greeting: a person waiting for us
    # -- a machine by length: continuous speech (pauses under human_silence_s) this long --
    machine_min_speech_s: float = 2.6
    greeting_extra_s: float = 1.2  # more, when the words so far are only greetings
    # -- when the words are asked for --
    words_after_speech_s: float = 1.2  # first transcript once the speech has run this long
    words_every_s: float = 1.0  # then again after this much more speech
    words_min_speech_s: float = 0.8  # speech this long is transcribed before it is called a person
    words_pause_s: float = 0.2  # ... as soon as it pauses this long
    words_wait_max_s: float = 1.5  # a person decision waits at most this long past human_silence_s for words
    words_lead_s: float = 0.3  # audio before the speech onset given to the ASR
    # -- a beep: a steady pure tone --
    beep_min_hz: float = 400.0
    beep_max_hz: float = 2000.0
    beep_min_s: float = 0.15
    beep_purity: float = 0.9  # share of the 200-3400 Hz energy within ±2 FFT bins of the peak
    beep_min_dbfs: float = -40.0
    # -- the cap --
    max_decision_s: float = 5.0
    timeout_verdict: Verdict = "human"
    # -- wait_for_greeting_end (on_machine = "message") --
    greeting_end_silence_s: float = 1.5
    greeting_end_sound_rms: float = 0.01  # -40 dBFS: louder than a phone line's noise
    greeting_end_after_beep_s: float = 0.1  # the beep has stopped this long
    greeting_end_max_s: float = 20.0


@dataclass(frozen=True)
class AmdDecision:
    verdict: Verdict
    # short_greeting, speech_then_pause, long_greeting, beep, announcement_words, voicemail_words,
    # silence, timeout
    reason: str
    at_s: float  # seconds of audio after the answer when decided
    transcript: str = ""


# --- the words ----------------------------------------------------------------------------------
# Phrases only a machine says, matched in the transcript (zh: Simplified, without spaces and
# punctuation; en: lowercased words). Whisper's usual mishearings are listed beside the phrases.
MACHINE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "announcement_words": {
        "zh": ("拨打", "播打", "拨的电话", "拨的号码", "您呼叫的", "你呼叫的",  # 您拨打的电话/号码/用户...
               "已关机", "以关机", "已经关机", "关机了", "已关闭", "无法接通", "无法接统", "空号", "控号",
               "已停机", "以停机", "停机了", "不在服务区", "不再服务区", "正在通话中", "通话中",
               "稍后再拨", "稍后再播", "请查证", "号码有误", "号码不存在"),
        "en": ("number you have dialed", "number you have dialled", "number you dialed", "number you dialled",
               "you have dialed", "you have dialled", "not in service", "no longer in service",
               "out of service", "cannot be completed", "can not be completed", "could not be completed",
               "been disconnected", "check the number", "try again later", "try your call again",
               "switched off", "powered off", "power off", "not reachable", "unreachable",
               "subscriber you have", "subscriber you are calling", "is busy now"),
    },
    "voicemail_words": {
        "zh": ("留言", "流言", "留下您的", "提示音", "提示应", "嘀声", "滴声", "哔声", "嘟声后",
               "语音信箱", "语音邮箱", "语音信", "的语音", "无法接听", "暂时无法", "不方便接", "接停电话",
               "不能接听", "不能接电话", "来电秘书", "录音后", "开始录音"),
        "en": ("leave a message", "leave your message", "leave me a message", "leave a brief message",
               "leave your name", "after the beep", "after the tone", "at the tone", "at the beep",
               "voicemail", "voice mail", "mailbox", "you've reached", "you have reached", "you reached",
               "not available", "unavailable", "can't take your call", "cannot take your call",
               "can't come to the phone", "cannot come to the phone", "get back to you as soon",
               "record your message", "the person you are calling", "the person you're calling"),
    },
}
# What people say when they pick up: a transcript of only these is no sign of a machine.
GREETING_WORDS: dict[str, tuple[str, ...]] = {
    "zh": ("喂", "唯", "为", "位", "你好", "您好", "哪位", "哪一位", "谁啊", "谁呀", "是谁", "请问", "什么事",
           "说话", "是我", "哎", "嗯", "啊", "呀", "哦", "哈喽", "在"),
    "en": ("hello", "hallo", "hullo", "hi", "hey", "there", "yes", "yeah", "yep", "who", "is", "this", "that",
           "who's", "calling", "speaking", "it's", "me", "good", "morning", "afternoon", "evening", "can",
           "i", "help", "you", "what", "uh", "um", "oh"),
}


def _zh_form(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", to_simplified(text))


def _en_form(text: str) -> str:
    words = re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))
    return " " + " ".join(words) + " "


def machine_phrase(text: str) -> tuple[str, str] | None:
    """(reason, phrase) of the first machine phrase in a transcript, in either language."""
    zh, en = _zh_form(text), _en_form(text)
    for reason, table in MACHINE_PHRASES.items():
        for phrase in table["zh"]:
            if phrase in zh:
                return reason, phrase
        for phrase in table["en"]:
            if f" {phrase} " in en:
                return reason, phrase
    return None


def is_greeting_only(text: str) -> bool:
    """True when the transcript holds words and all of them are what people say on picking up."""
    zh = _zh_form(re.sub(r"[A-Za-z0-9']+", " ", text))
    for word in sorted(GREETING_WORDS["zh"], key=len, reverse=True):
        zh = zh.replace(word, "")
    en = _en_form(re.sub(r"[\u4e00-\u9fff]+", " ", text)).split()
    rest_en = [w for w in en if w not in GREETING_WORDS["en"]]
    heard = bool(_zh_form(text))
    return heard and not zh and not rest_en


# --- the beep -----------------------------------------------------------------------------------
class ToneDetector:
    """A steady pure tone (a voicemail beep, a carrier's leading tone): one FFT peak holding nearly
    all the telephone-band energy, at the same frequency, for `beep_min_s` or longer."""

    WINDOW = 512
    HOP = 256

    def __init__(self, config: AmdConfig, rate: int = SAMPLE_RATE):
        self.config = config
        self.rate = rate
        self._hann = np.hanning(self.WINDOW).astype(np.float32)
        freqs = np.fft.rfftfreq(self.WINDOW, 1.0 / rate)
        self._band = (freqs >= 200) & (freqs <= 3400)
        self._tone_bins = np.flatnonzero((freqs >= config.beep_min_hz) & (freqs <= config.beep_max_hz))
        self._min_frames = max(1, int(np.ceil((config.beep_min_s * rate - self.WINDOW) / self.HOP)) + 1)
        self._buf = np.zeros(0, np.float32)
        self._run_bin: int | None = None
        self._run_frames = 0
        self.heard = False  # a tone long enough has been heard
        self.on = False  # ... and is still sounding
        self.frequency_hz = 0.0  # of the last tone heard
        self.max_purity = 0.0  # the highest purity seen (for tuning)

    def feed(self, samples: np.ndarray) -> bool:
        """Adds audio; True while a tone long enough sounds."""
        self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
        while len(self._buf) >= self.WINDOW:
            self._analyse(self._buf[: self.WINDOW])
            self._buf = self._buf[self.HOP :]
        return self.on

    def _analyse(self, frame: np.ndarray) -> None:
        tone_bin = self._tone_bin(frame)
        if tone_bin is not None and self._run_bin is not None and abs(tone_bin - self._run_bin) <= 1:
            self._run_frames += 1
        else:
            self._run_frames = 1 if tone_bin is not None else 0
        self._run_bin = tone_bin
        self.on = self._run_frames >= self._min_frames
        if self.on:
            self.heard = True
            self.frequency_hz = tone_bin * self.rate / self.WINDOW

    def _tone_bin(self, frame: np.ndarray) -> int | None:
        rms = float(np.sqrt(np.mean(np.square(frame))))
        if 20 * np.log10(max(rms, 1e-10)) < self.config.beep_min_dbfs:
            return None
        power = np.square(np.abs(np.fft.rfft(frame * self._hann)))
        total = float(power[self._band].sum())
        if total <= 0:
            return None
        k = int(self._tone_bins[np.argmax(power[self._tone_bins])])
        purity = float(power[k - 2 : k + 3].sum()) / total
        self.max_purity = max(self.max_purity, purity)
        return k if purity >= self.config.beep_purity else None


# --- the detector -------------------------------------------------------------------------------
class AnsweringMachineDetector:
    """Sans-IO core. Per VAD chunk: `feed(samples, speech_prob)`. When `wants_words`, take the
    audio from `words_request()`, transcribe it, and give the text to `words(text, language)`.
    Both return the decision once made (and keep returning it), else None."""

    def __init__(self, config: AmdConfig | None = None, rate: int = SAMPLE_RATE):
        self.config = config or AmdConfig()
        self.rate = rate
        self._tone = ToneDetector(self.config, rate)
        self._audio: list[np.ndarray] = []  # everything since the answer (a few seconds)
        self._samples = 0
        self._onset: float | None = None  # the current utterance's first speech
        self._last_speech_end = 0.0
        self._silence_s = 0.0
        self._words_pending = False
        self._words_upto = 0.0  # audio time the last transcript covers
        self._requested_upto = 0.0  # ... and the one being made
        self._transcript = ""
        self._greeting_only = False
        self.decision: AmdDecision | None = None

    # -- time and speech --------------------------------------------------------------------------
    @property
    def now_s(self) -> float:
        return self._samples / self.rate

    @property
    def speech_s(self) -> float:
        """Span of the current utterance, first speech to last (pauses shorter than human_silence_s inside)."""
        return 0.0 if self._onset is None else self._last_speech_end - self._onset

    @property
    def transcript(self) -> str:
        return self._transcript

    def feed(self, samples: np.ndarray, speech_prob: float) -> AmdDecision | None:
        if self.decision is not None:
            return self.decision
        samples = np.asarray(samples, dtype=np.float32)
        self._audio.append(samples)
        self._samples += len(samples)
        # a tone the VAD takes for a voice is a sung or drawn-out vowel ("喂——"), not a beep
        if self._tone.feed(samples) and speech_prob < self.config.speech_threshold:
            return self._decide("machine", "beep")
        if speech_prob >= self.config.speech_threshold:
            if self._onset is None:
                self._onset = self.now_s - len(samples) / self.rate
            self._last_speech_end = self.now_s
            self._silence_s = 0.0
        else:
            self._silence_s += len(samples) / self.rate
        return self._evaluate()

    def _evaluate(self) -> AmdDecision | None:
        c = self.config
        if self.decision is not None:
            return self.decision
        if self._onset is None:
            if self.now_s >= c.max_wait_first_speech_s:
                return self._decide(c.silence_verdict, "silence")
        elif self._silence_s >= c.human_silence_s:
            if self.speech_s < c.min_speech_s:  # a click on the line: wait for real speech
                self._onset = None
                return self._evaluate()
            needs_words = self.speech_s >= c.words_min_speech_s and self._words_upto < self._last_speech_end
            if not needs_words or self._silence_s >= c.human_silence_s + c.words_wait_max_s:
                reason = "short_greeting" if self.speech_s <= c.human_max_greeting_s else "speech_then_pause"
                return self._decide("human", reason)
        else:
            limit = c.machine_min_speech_s + (c.greeting_extra_s if self._greeting_only else 0.0)
            if self.speech_s >= limit:
                return self._decide("machine", "long_greeting")
        if self.now_s >= c.max_decision_s:
            return self._decide(c.timeout_verdict, "timeout")
        return None

    # -- words ------------------------------------------------------------------------------------
    @property
    def wants_words(self) -> bool:
        """Would a transcript of the speech so far help now (and none is being made)?"""
        c = self.config
        if self.decision is not None or self._words_pending or self._onset is None:
            return False
        if self._silence_s == 0.0:  # speaking
            covered = max(0.0, self._words_upto - self._onset)
            first = self._words_upto <= self._onset
            return self.speech_s >= (c.words_after_speech_s if first else covered + c.words_every_s)
        return (self._silence_s >= c.words_pause_s and self.speech_s >= c.words_min_speech_s
                and self._words_upto < self._last_speech_end)

    def words_request(self) -> np.ndarray | None:
        """The audio to transcribe (the utterance so far, 16 kHz) when a transcript would help, else
        None. The request stays open until `words` is called."""
        if not self.wants_words:
            return None
        self._words_pending = True
        self._requested_upto = self.now_s
        start = int(max(0.0, self._onset - self.config.words_lead_s) * self.rate)
        return np.concatenate(self._audio)[start:]

    def words(self, text: str, language: str | None = None) -> AmdDecision | None:
        """The transcript of the audio last requested (or of any speech so far)."""
        if self.decision is not None:
            return self.decision
        self._words_pending = False
        self._words_upto = max(self._words_upto, self._requested_upto if self._requested_upto else self.now_s)
        self._transcript = text.strip()
        self._greeting_only = is_greeting_only(self._transcript)
        found = machine_phrase(self._transcript)
        if found is not None:
            log.debug("machine phrase %r in %r", found[1], self._transcript)
            return self._decide("machine", found[0])
        return self._evaluate()

    # -- the end ----------------------------------------------------------------------------------
    def finish(self) -> AmdDecision:
        """The audio ended undecided: the timeout verdict."""
        return self.decision or self._decide(self.config.timeout_verdict, "timeout")

    def _decide(self, verdict: Verdict, reason: str) -> AmdDecision:
        self.decision = AmdDecision(verdict, reason, round(self.now_s, 3), self._transcript)
        return self.decision


# --- the drivers --------------------------------------------------------------------------------
class _Rechunker:
    """Any-size frames at `rate` in, the VAD's fixed-size 16 kHz chunks out."""

    def __init__(self, size: int, rate: int):
        from ..audio.resample import StreamResampler

        self.size = size
        self._resampler = StreamResampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
        self._buf = np.zeros(0, np.float32)

    def chunks(self, frame: np.ndarray) -> list[np.ndarray]:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            frame = self._resampler.process(frame)
        self._buf = np.concatenate([self._buf, frame])
        n = len(self._buf) // self.size
        out = [self._buf[i * self.size : (i + 1) * self.size] for i in range(n)]
        self._buf = self._buf[n * self.size :]
        return out


async def detect(frames: AsyncIterator[np.ndarray], vad, asr, config: AmdConfig | None = None,
                 language: str | None = None, rate: int = SAMPLE_RATE) -> AmdDecision:
    """Human or machine, from the audio after the answer. `frames`: float32 audio at `rate`, any
    chunk size, as it arrives; `vad`: a VoiceActivityDetector of this call; `asr`: a
    SpeechRecognizer (`transcribe` runs in a worker thread while the audio keeps coming).

    Returns as soon as the audio or the words decide; a transcript still being made is then
    abandoned. The iterator is left open and positioned after the deciding frame, so the caller
    can go on reading it (`wait_for_greeting_end`). A pending transcript is looked at once per frame
    (every 20 ms on a call)."""
    config = config or AmdConfig()
    detector = AnsweringMachineDetector(config)
    rechunk = _Rechunker(vad.chunk_samples, rate)
    task: asyncio.Task | None = None

    def take_words() -> AmdDecision | None:
        nonlocal task
        done, task = task, None
        try:
            result = done.result()
            text = result if isinstance(result, str) else getattr(result, "text", "")
        except Exception:  # a failed decode is no evidence either way
            log.exception("AMD transcript failed")
            text = ""
        return detector.words(text, language)

    try:
        async for frame in frames:
            for chunk in rechunk.chunks(frame):
                if detector.feed(chunk, vad.speech_probability(chunk)) is not None:
                    return detector.decision
            if task is not None and task.done() and take_words() is not None:
                return detector.decision
            if task is None and (audio := detector.words_request()) is not None:
                task = asyncio.create_task(asyncio.to_thread(asr.transcribe, audio, language))
        while task is not None:  # the audio ended: the words still pending may decide
            await asyncio.wait({task})
            if take_words() is not None:
                return detector.decision
            if (audio := detector.words_request()) is not None:
                task = asyncio.create_task(asyncio.to_thread(asr.transcribe, audio, language))
        return detector.finish()
    finally:
        if task is not None and not task.done():
            task.cancel()  # the decode thread finishes on its own; its result is dropped


async def wait_for_greeting_end(frames: AsyncIterator[np.ndarray], vad, config: AmdConfig | None = None,
                                rate: int = SAMPLE_RATE) -> float:
    """For leaving a message on a machine: reads `frames` until the beep has ended, or until
    `greeting_end_silence_s` of silence (the greeting is over and no beep comes), or
    `greeting_end_max_s`. Returns the seconds waited."""
    config = config or AmdConfig()
    tone = ToneDetector(config)
    rechunk = _Rechunker(vad.chunk_samples, rate)
    waited = silence = after_beep = 0.0
    beeped = False
    async for frame in frames:
        for chunk in rechunk.chunks(frame):
            dt = len(chunk) / SAMPLE_RATE
            waited += dt
            prob = vad.speech_probability(chunk)
            if tone.feed(chunk) and prob < config.speech_threshold:  # a held vowel is not the beep
                beeped = True
                silence = after_beep = 0.0
            elif beeped:
                after_beep += dt
                if after_beep >= config.greeting_end_after_beep_s:
                    return round(waited, 3)
            # a machine's recording may not sound like speech to the VAD all along (music, a
            # synthetic voice): any sound well above the line's noise is still the greeting
            loud = float(np.sqrt(np.mean(chunk ** 2))) > config.greeting_end_sound_rms
            silence = 0.0 if (prob >= config.speech_threshold or tone.on or loud) else silence + dt
            if silence >= config.greeting_end_silence_s or waited >= config.greeting_end_max_s:
                return round(waited, 3)
    return round(waited, 3)
