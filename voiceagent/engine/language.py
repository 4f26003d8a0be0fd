"""The call's language: one owner.

A call's language is pinned by the channel ("zh"/"en"), or heard: guessed on the first turns and
steadied (one short turn in another language does not switch it; dialog/state's LanguageTracker
decides). Until the caller is heard, the agent greets in the language the channel suggests (a
page's language) or the configured default. The recogniser asks `for_asr()`, the replies
`for_reply()`, and the record takes `current()` at the end: nothing else keeps its own copy.
The dialog's `state.language` is the dialog's own note of the language it last answered in.
"""

from __future__ import annotations

from ..dialog.engine import DialogState
from ..events import FinalTranscript

LANGUAGES = ("zh", "en")


class CallLanguage:
    def __init__(self, requested: str, state: DialogState):
        self.pinned = requested if requested in LANGUAGES else None
        self.heard: str | None = self.pinned  # None until the caller's speech says
        self._state = state
        self._turn: str | None = None  # the language the last caller turn was heard in
        self._dialog_answered = False  # the dialog has answered a turn: its state.language is real

    def for_asr(self) -> str | None:
        """The language to decode in (None: detect it)."""
        return self.heard

    def observe(self, final: FinalTranscript) -> str:
        """A caller turn: steady the call's language with it; returns the turn's own language."""
        if final.source == "voice" and self.pinned is None:
            steady = self._state.languages.observe_language(final.language, final.language_probability,
                                                            final.speech_end_s - final.start_s)
            if steady is not None:
                self.heard = steady
        self._turn = final.language if final.language in LANGUAGES else self._turn
        return final.language or self.heard or self._state.language

    def dialog_answered(self) -> None:
        self._dialog_answered = True

    def current(self) -> str:
        """The caller's language as far as it is known (for a turn typed on the keypad)."""
        return self.heard or self._state.language

    def for_reply(self) -> str:
        """What the agent speaks: the language the dialog last answered in; before its first answer
        (an apology for a failed first turn), the language the caller was just heard in."""
        if not self._dialog_answered and self._turn is not None:
            return self._turn
        return self._state.language if self._state.language in LANGUAGES else (self.heard or "zh")
