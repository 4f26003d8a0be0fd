"""The typed events a call's stages pass to each other (and to the observers watching them).

Times named `*_s` are positions on the call's own timeline (seconds from the call's start, the leg's
clock); `at_s` is when the event happened on it. A live call is a stream of these in both
directions: audio in (the legs' AudioFrames), speech started/stopped, partial and final transcripts, the intent, reply text
chunks, audio out, interruptions, DTMF, transfer and hangup.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    at_s: float


@dataclass(frozen=True)
class SpeechStarted(Event):
    start_s: float  # the first voiced chunk


@dataclass(frozen=True)
class SpeechStopped(Event):
    """The caller paused: voiced audio ended at `speech_end_s`. Not yet the end of their turn."""

    speech_end_s: float


@dataclass(frozen=True)
class SpeechDiscarded(Event):
    """What started as speech was too short to be a turn (a click, a cough)."""

    start_s: float


@dataclass(frozen=True)
class PartialTranscript(Event):
    text: str
    language: str


@dataclass(frozen=True)
class FinalTranscript(Event):
    """The caller's turn, decided by the endpointer: the words and when they were said."""

    text: str
    language: str
    language_probability: float
    start_s: float
    speech_end_s: float  # when the caller stopped speaking (voice-to-voice is measured from here)
    decided_s: float  # when the end of the turn was decided (its silence window closed)
    asr_ms: float  # decoding left after the end of turn was decided (the rest ran while they spoke)
    source: str = "voice"  # "voice" or "dtmf"
    # the turn's audio (16 kHz, from its start to the end of speech): how it sounded, for perception
    audio: object = field(default=None, repr=False, compare=False)
    language_scores: dict = field(default_factory=dict, compare=False)  # the detector's, when it ran


@dataclass(frozen=True)
class Dtmf(Event):
    digit: str  # 0-9 * # A-D


@dataclass(frozen=True)
class IntentRecognized(Event):
    """The dialog engine's reading of a turn, and what it cost."""

    turn: int
    intent: str
    confidence: float
    slots: dict[str, str] = field(default_factory=dict)
    dialog_ms: float = 0.0
    llm_first_token_ms: float | None = None  # None: no LLM in this reply


@dataclass(frozen=True)
class ReplyText(Event):
    """A piece of the agent's reply (a sentence or clause), ready for synthesis."""

    text: str
    turn: int


@dataclass(frozen=True)
class AudioOut(Event):
    """The first frame of a piece of the agent's reply was handed to the leg."""

    start_s: float
    turn: int


@dataclass(frozen=True)
class PlaybackPaused(Event):
    pass


@dataclass(frozen=True)
class PlaybackResumed(Event):
    pass


@dataclass(frozen=True)
class Interruption(Event):
    """The caller barged in: the agent's audio stopped at `stopped_s`, queued audio dropped."""

    speech_start_s: float
    stopped_s: float
    heard_text: str
    turn: int = 0  # the agent turn cut off


@dataclass(frozen=True)
class TransferRequested(Event):
    target: str
    reason: str | None


@dataclass(frozen=True)
class Hangup(Event):
    by: str  # "caller", "agent", "transfer", "error"
    reason: str | None = None


@dataclass(frozen=True)
class StageFailed(Event):
    stage: str  # "asr", "dialog", "tts", "leg"
    error: str


@dataclass(frozen=True)
class CallerTurnNoted(Event):
    """A caller turn as the record keeps it (record.CallerTurn: words, intent, emotion, anger): what
    the console, the alerts and the metrics watch."""

    turn: object = field(repr=False)


@dataclass(frozen=True)
class AgentTurnDone(Event):
    """An agent turn said (record.AgentTurn, its latencies measured), or cut off by the caller."""

    turn: object = field(repr=False)


@dataclass(frozen=True)
class SupervisorChanged(Event):
    """A supervisor took the call over (`active`) or gave it back to the agent."""

    active: bool
    operator: str = ""
