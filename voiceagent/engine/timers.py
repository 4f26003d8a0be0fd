"""The call's timers: silence (re-prompt, then goodbye) and the call's length.

Checked on the caller's audio timeline for every frame, and on the wall clock for legs that go
quiet. Activity (caller speech, keys, the agent's audio) restarts the silence timer; a timer that
fires asks for a prompt (`PromptDue`), it never speaks itself.
"""

from __future__ import annotations

from typing import Callable

from ..config import CallConfig
from ..events import Dtmf, Event, FinalTranscript, SpeechStarted
from .signals import PromptDue, ReplyDone, TurnReady


class CallTimers:
    def __init__(self, call: CallConfig, emit: Callable[[Event], None], busy: Callable[[], bool]):
        self._call = call
        self._emit = emit
        self._busy = busy  # someone is speaking, thinking or typing: silence does not count
        self._last_activity_s = 0.0
        self._reprompts = 0
        self._max_length_said = False

    def on_event(self, event: Event) -> None:
        if isinstance(event, SpeechStarted):
            self._active(event.start_s)
        elif isinstance(event, FinalTranscript):
            self._active(event.speech_end_s)
        elif isinstance(event, Dtmf):
            self._active(event.at_s)
        elif isinstance(event, ReplyDone):
            self._active(event.end_s)
        elif isinstance(event, TurnReady):
            self._reprompts = 0

    def _active(self, t: float) -> None:
        self._last_activity_s = max(self._last_activity_s, t)

    def check(self, t: float) -> None:
        if t >= self._call.max_call_s and not self._max_length_said:
            self._max_length_said = True
            self._emit(PromptDue(t, "max_length_goodbye", "goodbye", t, hangup="max_duration"))
            return
        if self._busy():
            return
        if t - self._last_activity_s >= self._call.reprompt_after_s:
            self._last_activity_s = t
            self._reprompts += 1
            if self._reprompts > self._call.max_reprompts:
                self._emit(PromptDue(t, "silence_goodbye", "goodbye", t, hangup="silence"))
            else:
                self._emit(PromptDue(t, "reprompt", "reprompt", t))
