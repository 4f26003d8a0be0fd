"""Who has the floor: barge-in and backchannels.

When the caller starts speaking while the agent talks (or is about to), the agent pauses at once.
Then the words decide: a backchannel ("嗯", "ok") lets the agent carry on; anything longer than
`backchannel_max_ms`, or a short turn that says stop, interrupts: the queued audio is dropped and
what the caller actually heard of it is noted. A syllable too short to be a turn holds the pause a
moment (`barge_in_hold_ms`) in case more follows. Keys pressed over the agent interrupt it too.

Caller turns that deserve an answer go out as `TurnReady`; the rest (noise, "ok" while the agent
is still thinking, a backchannel let through) end here.

A caller who goes on within `rejoin_ms` of the end of their turn, over the agent's answer to it, was
not done (a breath between two sentences outlasted the end-of-turn window): the answer is cut, and
the next turn goes out holding both parts (`TurnReady.continues`), answered as one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import CallConfig
from ..events import (Dtmf, Event, FinalTranscript, Interruption, PartialTranscript, PlaybackPaused,
                      PlaybackResumed, SpeechDiscarded, SpeechStarted)
from ..playout import Playout
from ..turn_completion import is_backchannel, is_interruption
from ..turn_detector import TurnDetector
from .signals import FloorTaken, TurnReady


@dataclass
class _BargeIn:
    speech_start_s: float
    hold_until_s: float | None = None  # after a syllable too short to be a turn: resume then unless more


class TurnTaking:
    def __init__(self, call: CallConfig, playout: Playout, detector: TurnDetector, emit: Callable[[Event], None],
                 now: Callable[[], float], timeline_s: Callable[[], float], replying: Callable[[], bool]):
        self._call = call
        self._playout = playout
        self._detector = detector
        self._emit = emit
        self._now = now
        self._timeline_s = timeline_s
        self._replying = replying  # the reply stage has a turn in hand or queued
        self._barge: _BargeIn | None = None
        self.barge_ins = 0
        self.backchannels = 0
        self.stop_ms: list[float] = []  # caller speech start -> agent audio stopped
        self._last_turn: FinalTranscript | None = None  # the last turn handed to the replies
        self._cut_after_s = -1.0  # when the caller last cut the agent off
        self.rejoins = 0

    def on_event(self, event: Event) -> None:
        if isinstance(event, SpeechStarted):
            busy = self._playout.active or self._replying()
            if self._call.barge_in and busy and self._barge is None:
                self._playout.pause()
                self._barge = _BargeIn(event.start_s)
                self._emit(PlaybackPaused(event.at_s))
        elif isinstance(event, PartialTranscript):
            # "嗯" and a pause: carry on speaking. (Anything else waits for the caller's turn to end, or
            # to run past a backchannel's length: partials of a few syllables are too unreliable.)
            if self._barge is not None and is_backchannel(event.text) and \
                    self._detector.speech_end_s < self._timeline_s() - 0.09:
                self._let_through()
        elif isinstance(event, SpeechDiscarded):
            # Too short to be a turn, but it may be the first syllable of one ("你" of "你好"): stay
            # paused a moment; `after_audio` resumes the agent if nothing follows.
            if self._barge is not None:
                self._barge.hold_until_s = self._timeline_s() + self._call.barge_in_hold_ms / 1000
        elif isinstance(event, FinalTranscript):
            self._on_final(event)
        elif isinstance(event, Dtmf) and self._playout.active:  # typing over the agent: they know what they want
            self._barge = _BargeIn(event.at_s)
            self.interrupt()

    def _on_final(self, final: FinalTranscript) -> None:
        text = final.text.strip()
        if self._rejoins(final, text):
            if self._barge is not None:
                self.interrupt()
            final = _joined(self._last_turn, final)
            self.rejoins += 1
            self._last_turn = final
            self._emit(TurnReady(final.at_s, final, continues=True))
            return
        if self._barge is not None:
            # Still paused, so the turn was shorter than backchannel_max_ms (longer ones have
            # interrupted already): it stops the agent only if it says so.
            if final.source == "voice" and not is_interruption(text):
                self._let_through(discard=False)
                return
            self.interrupt()
        elif not text or (is_backchannel(text) and final.source == "voice" and self._replying()):
            return  # noise, or "ok" while the agent is still thinking
        self._last_turn = final
        self._emit(TurnReady(final.at_s, final))

    def _rejoins(self, final: FinalTranscript, text: str) -> bool:
        """`final` goes on with the last turn: spoken soon after it, over its answer (paused by this
        speech, or already cut by it), and more than a backchannel."""
        last = self._last_turn
        if last is None or final.source != "voice" or last.source != "voice" or not text or is_backchannel(text):
            return False
        if final.start_s - last.speech_end_s > self._call.rejoin_ms / 1000:
            return False
        return self._barge is not None or self._cut_after_s >= last.at_s

    def after_audio(self) -> None:
        """After each frame of caller audio: is a paused agent interrupted, or free to go on?"""
        barge = self._barge
        if barge is None:
            return
        if self._detector.voiced_total >= self._call.backchannel_max_ms * 16:
            self.interrupt()  # too long for "嗯": the caller is taking the turn
        elif barge.hold_until_s is not None and not self._detector.in_speech and \
                self._timeline_s() >= barge.hold_until_s:
            self._let_through(discard=False)  # a click or a lone syllable after all

    def interrupt(self, by_caller: bool = True) -> None:
        """The agent stops now: what it is saying is cut, what it is thinking of is not said. By the
        caller (a barge-in, counted) or, `by_caller=False`, by a supervisor taking the call."""
        barge, self._barge = self._barge, None
        if by_caller:
            self._cut_after_s = self._now()  # the answer to the last turn was cut by the caller
        self._emit(FloorTaken(self._now()))  # a reply still being thought of is not said either
        cut = self._playout.drop()
        now = self._now()
        for playback in cut:
            heard = playback.heard_text(now, self._playout.rate)
            stopped = playback.end_s if playback.end_s is not None else now
            self._emit(Interruption(now, barge.speech_start_s if barge else now, stopped, heard, turn=playback.turn))
            if by_caller and barge is not None and playback.start_s is not None:
                self.stop_ms.append(round(max(0.0, stopped - barge.speech_start_s) * 1000, 1))
        self.barge_ins += by_caller

    def _let_through(self, discard: bool = True) -> None:
        self._barge = None
        self.backchannels += 1
        if discard:
            self._detector.discard_turn()
        self._playout.resume()
        self._emit(PlaybackResumed(self._now()))

    def stats(self) -> dict:
        return {"barge_ins": self.barge_ins, "backchannels": self.backchannels}


def _joined(first: FinalTranscript, then: FinalTranscript) -> FinalTranscript:
    """One turn of two parts: the words joined, from the first's start to the second's end."""
    joiner = "" if (then.language or first.language) in ("zh", "ja") else " "
    audio = then.audio
    if first.audio is not None and then.audio is not None:
        gap = max(0, int(round((then.start_s - first.speech_end_s) * 16000)))  # the pause, as silence
        audio = np.concatenate([first.audio, np.zeros(gap, np.float32), then.audio])
    return dataclasses.replace(then, text=(first.text.strip() + joiner + then.text.strip()).strip(),
                               start_s=first.start_s, audio=audio,
                               asr_ms=then.asr_ms, language=then.language or first.language)

