"""Checks that keep Whisper from answering for a caller who said nothing.

Pure functions on text or audio (no model), so they test in microseconds; voiceagent/asr.py applies them:
- an echo of the initial prompt ("以下是电商客服, 以下", "语：订单号、发") is nothing heard;
- a decoder loop at the tail ("我的电商商服服服服") keeps one copy of the unit;
- stock subtitles Whisper writes on non-speech ("谢谢观看", "Thank you for watching") are dropped
  where the audio gives no other sign of a voice;
- a turn that is only a tone (beep, DTMF, dial/ringback/busy tone) or steady noise is not decoded.
"""

from __future__ import annotations

import re

import numpy as np

from .textnorm import to_simplified

# -- the initial prompt's echo ---------------------------------------------------------------------
ECHO_SHARE = 0.6  # share of a decode's characters inside the prompt's 3-grams that makes it an echo
OPENING_CHARS = 4  # a decode that starts with the prompt's first characters ("以下是电...") echoes it
_LIST_MARKS = re.compile(r"[、：]")


def _chars(text: str) -> str:
    """CJK characters, letters and digits only (lowercased, Simplified)."""
    return "".join(re.findall(r"[\u4e00-\u9fff0-9a-z]", to_simplified(text).lower()))


def _echo_trigrams(prompt: str) -> set[str]:
    """3-grams a caller does not say but an echo does: all those of the prompt's sentence (before
    its first "："), and those of its word list that cross from one word into the next. A 3-gram
    inside one listed word ("人工客服", a product name) is a caller's word, not an echo."""
    intro, sep, listed = prompt.partition("：")
    if not sep:
        intro, listed = prompt, ""
    grams: set[str] = set()
    words = [_chars(w) for w in re.split(r"[、，,；;\s]+", listed)]
    words = [w for w in words if w]
    whole = _chars(intro) + "".join(words)
    inside: set[str] = set()
    for w in words:
        inside.update(w[i : i + 3] for i in range(len(w) - 2))
    for i in range(len(whole) - 2):
        gram = whole[i : i + 3]
        # the sentence's own 3-grams always count, even where a listed word repeats them
        if i < len(_chars(intro)) or gram not in inside:
            grams.add(gram)
    return grams


def echoes_prompt(text: str, prompt: str) -> bool:
    """The decode is made of the initial prompt's words, not the caller's: Whisper fed a short or
    unclear sound answers with the prompt itself. A caller saying one of its words ("退款",
    "人工客服") alone, or in a sentence of their own, is heard."""
    if not prompt:
        return False
    chars = _chars(text)
    if not chars:
        return False
    prompt_chars = _chars(prompt)
    if len(chars) >= 2 and chars.startswith(prompt_chars[: min(OPENING_CHARS, len(chars))]):
        return True
    # a list (、 or ：) whose every item is in the prompt
    if _LIST_MARKS.search(text):
        items = [p for p in re.split(r"[\s、：，。,.!?！？]+", to_simplified(text)) if p]
        if items and all(item in prompt for item in items):
            return True
    grams = _echo_trigrams(prompt)
    covered = [False] * len(chars)
    for i in range(len(chars) - 2):
        if chars[i : i + 3] in grams:
            covered[i : i + 3] = [True] * 3
    return sum(covered) >= 3 and sum(covered) >= ECHO_SHARE * len(chars)


def opens_like_prompt(text: str, prompt: str) -> bool:
    """The decode starts with the prompt's own opening words ("以下是电商客服…")."""
    chars, prompt_chars = _chars(text), _chars(prompt)
    return len(chars) >= 2 and bool(prompt_chars) and chars.startswith(prompt_chars[: min(OPENING_CHARS, len(chars))])


# -- decoder loops --------------------------------------------------------------------------------
LOOP_COPIES = 3  # a unit of 1-3 characters (or words) this many times at the tail is a loop; twice is speech


def collapse_repeated_tail(text: str) -> str:
    """'电商商服服服服' -> '电商商服'; 'no no no no' -> 'no'. A unit of 1-3 characters (CJK) or words
    repeated LOOP_COPIES or more times at the end is kept once. Twice ('对对', '好好') is speech;
    digits are never collapsed (an order number '888888')."""
    body = text.rstrip()
    end = len(body)
    while end and not (body[end - 1].isalnum() or "\u4e00" <= body[end - 1] <= "\u9fff"):
        end -= 1  # trailing punctuation stays where it is
    core, tail = body[:end], body[end:]
    for size in (1, 2, 3):  # CJK characters
        m = re.search(r"([\u4e00-\u9fff]{%d})\1{%d,}$" % (size, LOOP_COPIES - 1), core)
        if m:
            return core[: m.start()] + m.group(1) + tail
    words = core.split()
    for size in (1, 2, 3):
        unit = words[-size:]
        if len(unit) < size or any(w.strip(".,!?").isdigit() for w in unit):
            continue
        copies = 1
        while words[-(copies + 1) * size : len(words) - copies * size] == unit:
            copies += 1
        if copies >= LOOP_COPIES:
            return " ".join(words[: len(words) - (copies - 1) * size]) + tail
    return text


# -- stock subtitles on non-speech -----------------------------------------------------------------
# What Whisper writes on silence, music or noise (its training data's subtitle credits), normalised
# by _chars. Matched against the whole decode, never a part: "谢谢" alone is a caller's answer.
STOCK_PHRASES = (
    "谢谢观看", "谢谢收看", "感谢观看", "谢谢大家收看", "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "点赞订阅转发打赏", "明镜与点点栏目", "字幕志愿者", "中文字幕", "请订阅", "订阅我的频道",
    "thankyouforwatching", "thanksforwatching", "pleasesubscribe", "subscribe", "you",
)
_STOCK_PATTERNS = (
    re.compile(r"字幕(由|提供|制作|组)"),  # "字幕由Amara.org社区提供"
    re.compile(r"amaraorg"),
    re.compile(r"点赞.*订阅|订阅.*点赞"),
)


def is_stock_phrase(text: str) -> bool:
    """The decode is one of Whisper's stock subtitles for non-speech (not proof on its own: the
    caller asr.py drops it only where the audio is short or quiet or Whisper doubts a voice)."""
    chars = _chars(text)
    if not chars:
        return False
    return chars in STOCK_PHRASES or any(p.search(chars) for p in _STOCK_PATTERNS)


# -- tones and steady noise ------------------------------------------------------------------------
FRAME = 1024  # 64 ms at 16 kHz: 15.6 Hz bins tell DTMF's two tones apart
TONE_PURITY = 0.85  # share of the frame's 50-3800 Hz energy within ±2 bins of its two strongest peaks
# A voice's fundamental can hold that much of a frame too (in up to 2/3 of a Mandarin turn's frames),
# but its pitch glides: a tone frame also holds the previous frame's peak frequency within this
STEADY_HZ = 2.0
# share of the audible frames that are pure and steady for the turn to be a tone: a keyed DTMF number
# (0.12 s keys, gaps and key changes between) measured 0.46, the sample calls' and the phone set's
# caller turns at most 0.17
TONE_FRAMES = 0.35
AUDIBLE_DBFS = -55.0
NOISE_FLATNESS = 0.25  # spectral flatness (geometric / arithmetic mean power) of hiss, not of a voice
# a voice's syllables stand out of the line's floor: the 95th percentile frame level above the median;
# measured 5.9 dB and up on caller turns at 12 dB SNR, 2.5 dB at most on white/pink hiss
NOISE_PEAK_OVER_MEDIAN_DB = 3.5


def _frames(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectra of the audible frames (50-3800 Hz), their levels in dBFS, and all frames' levels."""
    hop = FRAME // 2
    n = 1 + max(0, (len(audio) - FRAME) // hop)
    padded = np.zeros(max(len(audio), FRAME), np.float32)
    padded[: len(audio)] = audio
    idx = np.arange(FRAME)[None, :] + hop * np.arange(n)[:, None]
    frames = padded[idx]
    levels = 10 * np.log10(np.maximum(np.mean(np.square(frames), axis=1), 1e-12))
    freqs = np.fft.rfftfreq(FRAME, 1.0 / rate)
    band = (freqs >= 50) & (freqs <= 3800)
    audible = levels >= AUDIBLE_DBFS  # only these are transformed
    spectra = np.fft.rfft(frames[audible] * np.hanning(FRAME).astype(np.float32), axis=1)[:, band]
    return np.square(spectra.real) + np.square(spectra.imag), levels[audible], levels


def _purity(power: np.ndarray) -> np.ndarray:
    """Per frame: share of the energy within ±2 bins of its two strongest peaks."""
    total = power.sum(axis=1) + 1e-20
    p = power.copy()
    held = np.zeros(len(p))
    rows = np.arange(len(p))
    for _ in range(2):
        k = np.argmax(p, axis=1)
        for d in range(-2, 3):
            j = np.clip(k + d, 0, p.shape[1] - 1)
            held += p[rows, j]
            p[rows, j] = 0
    return held / total


def _peak_hz(power: np.ndarray, rate: int) -> np.ndarray:
    """Per frame: the strongest peak's frequency, interpolated between bins (parabola on log power)."""
    k = np.clip(np.argmax(power, axis=1), 1, power.shape[1] - 2)
    rows = np.arange(len(power))
    a, b, c = (np.log(power[rows, k + d] + 1e-20) for d in (-1, 0, 1))
    offset = 0.5 * (a - c) / np.where(np.abs(a - 2 * b + c) < 1e-12, 1e-12, a - 2 * b + c)
    first = int(np.argmax(np.fft.rfftfreq(FRAME, 1.0 / rate) >= 50))  # the band's first bin
    return (first + k + np.clip(offset, -1, 1)) * rate / FRAME


def is_tone(audio: np.ndarray, rate: int = 16000) -> bool:
    """Only tones are heard: a beep, a DTMF digit, a dial, ringback or busy tone: one or two
    frequencies holding nearly all the energy, frame after frame at the same pitch. A voice may be
    as pure for a frame, but its pitch glides."""
    return _tone(*_frames(audio, rate)[:2], rate)


def _tone(power: np.ndarray, levels: np.ndarray, rate: int) -> bool:
    if len(power) < 2:
        return False
    pure = _purity(power) >= TONE_PURITY
    hz = _peak_hz(power, rate)
    steady = pure & np.r_[False, pure[:-1]] & (np.abs(np.diff(hz, prepend=hz[0])) < STEADY_HZ)
    return float(np.mean(steady)) >= TONE_FRAMES


def is_steady_noise(audio: np.ndarray, rate: int = 16000) -> bool:
    """Hiss or hum with no voice in it: a flat spectrum at a steady level in every audible frame."""
    return _steady_noise(*_frames(audio, rate)[:2])


def _steady_noise(power: np.ndarray, levels: np.ndarray) -> bool:
    if len(power) < 3:
        return False
    flatness = np.exp(np.mean(np.log(power + 1e-20), axis=1)) / (np.mean(power, axis=1) + 1e-20)
    spread = float(np.percentile(levels, 95) - np.median(levels))
    return float(np.median(flatness)) >= NOISE_FLATNESS and spread <= NOISE_PEAK_OVER_MEDIAN_DB


def non_speech(audio: np.ndarray, rate: int = 16000) -> str | None:
    """Why the audio holds no speech ("tone", "noise"), or None where it may. ~2 ms a second of audio."""
    power, levels, _ = _frames(audio, rate)
    if _tone(power, levels, rate):
        return "tone"
    if _steady_noise(power, levels):
        return "noise"
    return None
