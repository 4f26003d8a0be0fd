"""Keys the caller presses: digits gather into one turn, sent on "#" or after `dtmf_timeout_s`
without another key; "*" clears. The turn goes out as a FinalTranscript with source "dtmf", so
the rest of the engine treats it as words."""

from __future__ import annotations

from typing import Callable

from ..events import Dtmf, Event, FinalTranscript
from ..legs import DtmfDigit


class DtmfKeys:
    def __init__(self, emit: Callable[[Event], None], now: Callable[[], float], language: Callable[[], str],
                 timeout_s: float):
        self._emit = emit
        self._now = now
        self._language = language
        self._timeout_s = timeout_s
        self._digits = ""
        self._first_s = self._last_s = 0.0

    @property
    def pending(self) -> bool:
        return bool(self._digits)

    def on_key(self, key: DtmfDigit) -> None:
        digit = key.digit.upper()
        self._emit(Dtmf(key.at_s, digit))  # (typing over the agent stops it: turn-taking hears this)
        if digit == "*":
            self._digits = ""
        elif digit == "#":
            self.submit()
        elif digit in "0123456789ABCD":
            if not self._digits:
                self._first_s = key.at_s
            self._digits += digit
            self._last_s = key.at_s

    def check(self, t: float) -> None:
        if self._digits and t - self._last_s >= self._timeout_s:
            self.submit()

    def submit(self) -> None:
        if not self._digits:
            return
        digits, self._digits = self._digits, ""
        now = self._now()
        self._emit(FinalTranscript(now, digits, self._language(), 1.0, self._first_s, self._last_s, now, 0.0,
                                   source="dtmf"))
