"""Whole-file transcription: the file is cut into speech segments by the same VAD/endpointing as a
call, and each segment is decoded on its own. Whisper on a long file with long silences skips
speech and hallucinates; per-segment decoding does neither, and memory stays flat for long files."""

from __future__ import annotations

import numpy as np

from .asr import Segment, SpeechRecognizer, Transcript
from .config import VadConfig
from .endpointing import Endpointer, TurnEnded
from .vad import create_vad

SAMPLE_RATE = 16000


def speech_segments(audio: np.ndarray, vad_config: VadConfig) -> list[TurnEnded]:
    endpointer = Endpointer(create_vad(vad_config), vad_config)
    events = []
    step = SAMPLE_RATE  # feed a second at a time
    for i in range(0, len(audio), step):
        events += endpointer.feed(audio[i : i + step])
    events += endpointer.flush()
    return [e for e in events if isinstance(e, TurnEnded)]


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
        offset = turn.start_s - (len(turn.audio) / SAMPLE_RATE - (turn.speech_end_s - turn.start_s) - 0.2)
        for s in result.segments:
            if s.text:
                segments.append(Segment(round(max(0.0, offset + s.start), 2), round(min(duration, offset + s.end), 2), s.text))
    joiner = "" if language in ("zh", "ja") else " "
    return Transcript(joiner.join(s.text for s in segments).strip(), language, round(prob, 3), duration, segments)
