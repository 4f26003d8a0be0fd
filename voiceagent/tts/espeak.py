"""espeak-ng voices. Mandarin goes through the cmn-latn-pinyin voice fed tone-numbered pinyin
(plain `-v cmn` spells Chinese characters out as Latin letters on Debian's build)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from typing import Iterator

import numpy as np
import soundfile as sf
from pypinyin import Style, lazy_pinyin

from ..errors import ModelMissing
from ..textnorm import digits_to_zh
from .sentences import split_sentences
from .voice import SpeechChunk

# Latin letters read the way Chinese speakers say them (order numbers like "SF123", sizes "XL").
_LETTERS = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi4", "F": "ai2 fu1", "G": "ji4", "H": "ai4 qi1",
    "I": "ai4", "J": "zhei4", "K": "kai4", "L": "ai2 le5", "M": "ai2 mu5", "N": "en1", "O": "ou1", "P": "pi4",
    "Q": "kiu1", "R": "a1", "S": "ai2 si1", "T": "ti4", "U": "you1", "V": "wei1", "W": "da2 bu5 liu5",
    "X": "ai2 ke4 si1", "Y": "wai4", "Z": "zei4",
}
_PUNCT = {"，": ",", "。": ".", "！": "!", "？": "?", "；": ";", "：": ",", "、": ",", "（": ",", "）": ","}


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ModelMissing("espeak-ng is not installed; install it with: apt-get install espeak-ng")
    return exe


def _run(exe: str, voice: str, text: str, speed: float, word_gap: int = 0) -> tuple[np.ndarray, int]:
    wpm = str(int(140 * speed))
    proc = subprocess.run([exe, "-v", voice, "-s", wpm, "-g", str(word_gap), "--stdout", text],
                          capture_output=True, timeout=30, check=True)
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return (data if data.ndim == 1 else data.mean(axis=1)), rate


def chinese_to_pinyin(text: str) -> str:
    """Chinese text to tone-numbered pinyin for espeak-ng's cmn-latn-pinyin voice."""
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: _number_to_zh(m.group(0)), text)
    out: list[str] = []
    for token in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda s: list(s)):
        token = token.strip()
        if not token:
            continue
        if token in _PUNCT:
            out.append(_PUNCT[token])
        elif token.isascii() and token.isalpha() and not re.search(r"\d", token) and token.upper() == token:
            out.extend(_LETTERS.get(c, "") for c in token)
        elif token.isascii() and token.isalpha():
            out.extend(_LETTERS.get(c.upper(), "") for c in token)
        else:
            out.append(token)
    return " ".join(t for t in out if t)


def _number_to_zh(num: str) -> str:
    """Long numbers (ids, phones) digit by digit; short ones as amounts."""
    if "." in num:
        whole, frac = num.split(".", 1)
        return _cardinal(int(whole)) + "点" + digits_to_zh(frac, as_id=False)
    if len(num) >= 5 or num.startswith("0"):
        return digits_to_zh(num)
    return _cardinal(int(num))


def _cardinal(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    units = [(1000, "千"), (100, "百"), (10, "十")]
    out, zero = "", False
    for value, name in units:
        q, n = divmod(n, value)
        if q:
            if zero:
                out += "零"
            out += ("" if (value == 10 and q == 1 and not out) else digits[q]) + name
            zero = False
        elif out:
            zero = True
    if n:
        out += ("零" if zero else "") + digits[n]
    return out


class EspeakPinyinVoice:
    sample_rate = 22050

    def __init__(self, speed: float = 1.0):
        self._exe = _espeak()
        self.speed = speed * 0.9  # a little slower than espeak's default reads clearer on the phone
        self.name = "espeak-ng:cmn-latn-pinyin"

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            pinyin = chinese_to_pinyin(sentence)
            if not pinyin.strip(" ,.!?;"):
                continue
            audio, rate = _run(self._exe, "cmn-latn-pinyin", pinyin, self.speed, word_gap=4)
            self.sample_rate = rate
            yield SpeechChunk(audio.astype(np.float32), rate, sentence)


class EspeakVoice:
    sample_rate = 22050

    def __init__(self, voice: str, speed: float = 1.0):
        self._exe = _espeak()
        self.voice = voice
        self.speed = speed
        self.name = f"espeak-ng:{voice}"

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            audio, rate = _run(self._exe, self.voice, sentence, self.speed)
            self.sample_rate = rate
            yield SpeechChunk(audio.astype(np.float32), rate, sentence)
