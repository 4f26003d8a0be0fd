"""The agent's side of the audio: speech queued by the reply stage goes out to the leg in 20 ms frames,
paced on the call's clock, a little ahead of when each frame is due (`lead_ms`).

It can pause (the caller started speaking over the agent), resume (it was only "嗯"), or drop what
is queued (a real interruption); it knows what the caller actually heard of each reply, and counts
underruns: gaps inside a reply because the next piece of speech was not ready in time, or frames
handed over after they were due because the process was too busy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .audio import AudioFrame, resample, trim_leading_quiet
from .events import AudioOut, Event
from .legs import CallLeg

log = logging.getLogger(__name__)


@dataclass
class _Piece:
    samples: np.ndarray  # at the leg's rate
    text: str
    turn: int
    sent: int = 0  # samples handed to the leg
    start_s: float | None = None  # when its first frame is heard, on the call's timeline


@dataclass
class ReplyPlayback:
    """What happened to one reply's audio."""

    turn: int
    pieces: list[_Piece] = field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None  # the end of the last frame heard
    interrupted: bool = False
    complete: bool = False  # the reply stage has queued all of it
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def text(self) -> str:
        return _join([p.text for p in self.pieces])

    def heard_text(self, now: float, rate: int) -> str:
        """The reply as far as the caller heard it: whole pieces, then the words of the piece
        playing when it stopped, in proportion to its audio played."""
        out = []
        for p in self.pieces:
            if p.start_s is None:
                break
            heard = min(p.sent, max(0, int((now - p.start_s) * rate)))
            if heard >= len(p.samples):
                out.append(p.text)
                continue
            out.append(_prefix(p.text, heard / max(1, len(p.samples))))
            break
        return _join(out)


def _join(texts: list[str]) -> str:
    text = ""
    for t in texts:
        if not t:
            continue
        cjk = bool(re.match(r"[\u3000-\u9fff\uff00-\uffef]", t)) or bool(re.search(r"[\u3000-\u9fff\uff00-\uffef]$", text))
        text += t if (not text or cjk) else " " + t
    return text


def _prefix(text: str, fraction: float) -> str:
    if re.search(r"[\u4e00-\u9fff]", text):
        return text[: int(len(text) * fraction)]
    words = text.split()
    return " ".join(words[: int(len(words) * fraction)])


class Playout:
    def __init__(self, leg: CallLeg, emit: Callable[[Event], None], frame_ms: int = 20, lead_ms: int = 40):
        self.leg = leg
        self.emit = emit
        self.rate = leg.sample_rate
        self.frame = self.rate * frame_ms // 1000
        self.frame_s = frame_ms / 1000
        self.lead_s = lead_ms / 1000
        self._queue: deque[_Piece] = deque()
        self._replies: dict[int, ReplyPlayback] = {}
        self._paused = False
        self._wake = asyncio.Event()
        self._next_due: float | None = None
        self._last_end = 0.0
        self.underruns = 0  # gaps inside a reply: the next piece was not ready in time
        self.late_frames = 0  # frames handed over after they were due
        self.closed = False
        self.error: Exception | None = None

    # -- the reply stage's side ---------------------------------------------------------------
    def begin_reply(self, turn: int) -> ReplyPlayback:
        playback = ReplyPlayback(turn)
        self._replies[turn] = playback
        return playback

    def enqueue(self, turn: int, samples: np.ndarray, sample_rate: int, text: str) -> None:
        playback = self._replies[turn]
        if playback.interrupted or self.closed:
            return
        audio = resample(samples, sample_rate, self.rate).astype(np.float32, copy=False)
        if not playback.pieces:  # the reply's first sound goes out at once; pauses between pieces stay
            audio = trim_leading_quiet(audio, self.rate)
        piece = _Piece(audio, text, turn)
        playback.pieces.append(piece)
        self._queue.append(piece)
        self._wake.set()

    def end_reply(self, turn: int) -> None:
        """All of the reply is queued."""
        playback = self._replies[turn]
        playback.complete = True
        self._settle(playback)

    # -- turn-taking --------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Agent audio is playing, paused, or queued."""
        return bool(self._queue)

    def pause(self) -> None:
        """Stop sending; what was handed over but not yet heard is taken back to play on resume."""
        if self._paused:
            return
        self._paused = True
        self._take_back()

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._next_due = None
        self._wake.set()

    def drop(self) -> list[ReplyPlayback]:
        """Barge-in: stop now and forget what is queued. Returns the replies cut short."""
        now = self.leg.clock.now()
        self._take_back()
        cut = []
        for playback in self._replies.values():
            if not playback.done.is_set():
                playback.interrupted = True
                playback.end_s = min(playback.end_s, now) if playback.end_s is not None else None
                cut.append(playback)
        self._queue.clear()
        self._paused = False
        self._next_due = None
        for playback in cut:
            playback.done.set()
        return cut

    def _take_back(self) -> None:
        now = self.leg.clock.now()
        try:
            self.leg.clear_output()
        except Exception:  # a leg that cannot take audio back plays out what it was given
            log.debug("leg cannot clear output", exc_info=True)
            return
        for piece in self._queue:
            if piece.start_s is None or piece.sent == 0:
                continue
            heard = max(0, int((now - piece.start_s) * self.rate))
            if heard < piece.sent:
                piece.sent = heard - heard % self.frame if heard < len(piece.samples) else heard
                playback = self._replies[piece.turn]
                playback.end_s = min(playback.end_s or now, now)
        self._last_end = min(self._last_end, now)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        for playback in self._replies.values():
            playback.done.set()
        self._wake.set()

    # -- the pacing loop ----------------------------------------------------------------------
    async def run(self) -> None:
        clock = self.leg.clock
        while not self.closed:
            if self._paused or not self._queue:
                self._next_due = None
                self._wake.clear()
                await self._wake.wait()
                continue
            piece = self._queue[0]
            if self._next_due is None:
                self._next_due = max(clock.now(), self._last_end)
                playback = self._replies[piece.turn]
                if piece.sent == 0 and playback.pieces and piece is not playback.pieces[0] and \
                        playback.end_s is not None and self._next_due - playback.end_s > self.frame_s:
                    self.underruns += 1  # silence inside a reply: this piece came too late
            due = self._next_due
            await clock.wait_until(due - self.lead_s)
            if self._paused or not self._queue or self._queue[0] is not piece:
                continue  # paused or dropped while waiting
            if clock.now() > due + self.frame_s:
                self.late_frames += 1
            chunk = piece.samples[piece.sent : piece.sent + self.frame]
            if len(chunk) < self.frame:
                chunk = np.pad(chunk, (0, self.frame - len(chunk)))
            try:
                await self.leg.send(AudioFrame(chunk, self.rate, due))
            except Exception as exc:  # the far end is gone: nothing more can be played
                self.error = exc
                self.close()
                return
            playback = self._replies[piece.turn]
            piece.start_s = due - piece.sent / self.rate  # where the piece started, pauses left out
            if playback.start_s is None:
                playback.start_s = due
                self.emit(AudioOut(clock.now(), due, piece.turn))
            real = min(self.frame, len(piece.samples) - piece.sent)
            piece.sent += self.frame
            self._next_due = due + self.frame_s
            self._last_end = self._next_due
            playback.end_s = due + real / self.rate
            if piece.sent >= len(piece.samples):
                self._queue.popleft()
                self._settle(playback)

    def _settle(self, playback: ReplyPlayback) -> None:
        if playback.complete and all(p.sent >= len(p.samples) for p in playback.pieces):
            playback.done.set()
