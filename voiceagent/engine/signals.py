"""The events the call's stages send each other (the ones observers see too live in voiceagent/events.py).

Stages never call into each other to change what another one holds: the turn-taking stage does not
queue a reply, it says `TurnReady`; the timers do not speak, they say `PromptDue`; nobody ends the
call but the conductor, when a stage says `EndRequested`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..events import Event, FinalTranscript


@dataclass(frozen=True)
class TurnReady(Event):
    """A caller turn that the agent answers (noise, backchannels and let-through turns are not)."""

    final: FinalTranscript
    # the caller went on after their last turn, over its answer: `final` holds both parts, and the
    # answer to the first part is withdrawn (TurnTaking, rejoin_ms)
    continues: bool = False


@dataclass(frozen=True)
class FloorTaken(Event):
    """The caller took the turn over the agent: whatever reply is being thought of or said now is
    void (what was cut off, and what of it was heard, follows as `Interruption`s)."""


@dataclass(frozen=True)
class PromptDue(Event):
    """Something the agent says on its own: greeting, re-prompt, goodbye, an apology."""

    key: str  # the template (prompts/<lang>.toml)
    kind: str  # the agent turn's kind in the record: "greeting", "reprompt", "goodbye", "notice"
    trigger_s: float  # what it answers: the call's start, the silence deadline... (its latency counts from here)
    hangup: str | None = None  # end the call afterwards, for this reason


@dataclass(frozen=True)
class ReplyDone(Event):
    """The reply stage finished with one turn or prompt (said, cut off or given up): the caller's
    silence counts from `end_s`, when the last of it was heard."""

    end_s: float


@dataclass(frozen=True)
class EndRequested(Event):
    by: str  # "caller", "agent", "transfer", "error"
    reason: str | None = None
    error: str | None = None
