"""Whole-file transcription: the file is cut into speech segments by the same segmenter as a call
(segmenter.py; a fixed silence window ends each), and each segment is decoded on its own. Whisper on a long file with long silences skips
speech and hallucinates; per-segment decoding does neither, and memory stays flat for long files."""

from __future__ import annotations

from itertools import chain

import numpy as np

from .asr import Segment, SpeechRecognizer, Transcript
from .config import VadConfig
from .segmenter import Segmenter, SpeechSegment
from .vad import create_vad

SAMPLE_RATE = 16000


def speech_segments(audio: np.ndarray, vad_config: VadConfig) -> list[SpeechSegment]:
    """The file's stretches of speech; each ends after `min_silence_ms` of silence, or with the file."""
    segmenter = Segmenter(create_vad(vad_config), vad_config, end_silence_ms=vad_config.min_silence_ms, warm_up=True)
    segments = [heard.ended for heard in chain(segmenter.feed(audio), segmenter.flush()) if heard.ended is not None]
    if segmenter.confirmed:  # speech running to the end of the file
        segments.append(segmenter.end_turn())
    return segments


def transcribe_file(asr: SpeechRecognizer, audio: np.ndarray, vad_config: VadConfig, language: str | None) -> Transcript:
    turns = speech_segments(audio, vad_config)
    duration = round(len(audio) / SAMPLE_RATE, 3)
    if not turns:
        return Transcript("", language or "", 0.0, duration, [])
    prob = 1.0
    if language is None:  # detect once, on the longest stretch of speech, then keep it
        longest = max(turns, key=lambda t: len(t.audio))
        language, prob = asr.detect_language(longest.audio)
    segments: list[Segment] = []
    for turn in turns:
        result = asr.transcribe(turn.audio, language)
        offset = turn.audio_start_s
        for s in result.segments:
            if s.text:
                segments.append(Segment(round(max(0.0, offset + s.start), 2), round(min(duration, offset + s.end), 2), s.text))
    joiner = "" if language in ("zh", "ja") else " "
    return Transcript(joiner.join(s.text for s in segments).strip(), language, round(prob, 3), duration, segments)
