"""Per-turn latency, observed from the events a call's stages emit.

For a reply the stages run one after another on the critical path, so the figures add up:
endpoint (the caller stopped speaking -> end of turn decided), asr (decoding left after that: most
of it ran while they spoke), llm_first_token (the dialog engine's first token, or its whole turn
when a template answered), tts_first_audio (first reply text -> first audio ready) and
voice_to_voice: the caller's actual end of speech to the first sample of the reply on the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import AudioOut, Event, FinalTranscript, IntentRecognized, ReplyText

ORDER = ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice", "dialog")


@dataclass
class _Turn:
    trigger_s: float  # the caller's end of speech (or what else the agent answered)
    endpoint_ms: float = 0.0
    asr_ms: float = 0.0
    dialog_ms: float = 0.0
    llm_ms: float | None = None
    text_at: float | None = None  # first reply text ready (call clock)
    audio_at: float | None = None  # first audio handed to the leg (call clock)
    audio_start_s: float | None = None  # where that audio is heard on the timeline


class LatencyObserver:
    def __init__(self) -> None:
        self._turns: dict[int, _Turn] = {}

    def begin(self, turn: int, final: FinalTranscript | None = None, trigger_s: float = 0.0) -> None:
        """Turn `turn` answers `final` (a caller turn) or something at `trigger_s` (a prompt)."""
        if final is None:
            self._turns[turn] = _Turn(trigger_s)
        else:
            self._turns[turn] = _Turn(final.speech_end_s, max(0.0, final.decided_s - final.speech_end_s) * 1000,
                                      final.asr_ms)

    def on_event(self, event: Event) -> None:
        if isinstance(event, IntentRecognized) and event.turn in self._turns:
            t = self._turns[event.turn]
            t.dialog_ms, t.llm_ms = event.dialog_ms, event.llm_first_token_ms
        elif isinstance(event, ReplyText) and event.turn in self._turns:
            t = self._turns[event.turn]
            t.text_at = event.at_s if t.text_at is None else t.text_at
        elif isinstance(event, AudioOut) and event.turn in self._turns:
            t = self._turns[event.turn]
            if t.audio_at is None:
                t.audio_at, t.audio_start_s = event.at_s, event.start_s

    def latency(self, turn: int) -> dict[str, float]:
        t = self._turns.get(turn)
        if t is None:
            return {k: 0.0 for k in ORDER}
        tts = (t.audio_at - t.text_at) * 1000 if t.audio_at is not None and t.text_at is not None else 0.0
        v2v = (t.audio_start_s - t.trigger_s) * 1000 if t.audio_start_s is not None else 0.0
        values = {"endpoint": t.endpoint_ms, "asr": t.asr_ms,
                  "llm_first_token": t.llm_ms if t.llm_ms is not None else t.dialog_ms,
                  "tts_first_audio": tts, "voice_to_voice": v2v, "dialog": t.dialog_ms}
        return {k: round(max(0.0, values[k]), 1) for k in ORDER}
