"""Who answered a campaign call: answering-machine detection on the first seconds after answer,
before the agent says a word (campaigns/amd.py decides from the audio and the words).

A person ("喂？") gets the agent, on a leg that goes on reading the same audio stream. A machine
(a voicemail greeting, a beep, a carrier announcement) is hung up on, or, with `on_machine =
"message"`, hears the script's message after its greeting ends (the beep), and is then hung up on.

    answered leg ─► SharedAudio ─► amd.detect ─► human: ScreenedLeg ─► the call
                                             └─► machine: [message after the beep] ─► hang up
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import numpy as np

from ..audio import AudioFrame
from ..audio.resample import resample
from ..legs import CallLeg, LegWrapper
from . import amd

log = logging.getLogger(__name__)


class SharedAudio:
    """One reading of a leg's stream, passed from the detector to the call: nothing read twice,
    nothing lost between them (key presses during the detection are dropped)."""

    def __init__(self, leg: CallLeg):
        self.leg = leg
        self._items = leg.receive().__aiter__()
        self.ended = False  # the far end hung up

    async def next(self):
        try:
            return await self._items.__anext__()
        except StopAsyncIteration:
            self.ended = True
            raise

    async def audio(self) -> AsyncIterator[np.ndarray]:
        """The caller's audio at the leg's rate, frame by frame, until they hang up (the detector
        resamples the stream for its VAD, amd._Rechunker)."""
        rate = self.leg.sample_rate
        while True:
            try:
                item = await self.next()
            except StopAsyncIteration:
                return
            if isinstance(item, AudioFrame):
                samples = item.samples if item.sample_rate == rate else resample(item.samples, item.sample_rate, rate)
                yield samples.astype(np.float32, copy=False)


class ScreenedLeg(LegWrapper):
    """The answered leg, for the call that follows the detection: everything as the leg does it, the
    caller's stream read on from where the detector stopped."""

    def __init__(self, leg: CallLeg, shared: SharedAudio):
        super().__init__(leg)
        self._shared = shared

    async def receive(self):
        while True:
            try:
                yield await self._shared.next()
            except StopAsyncIteration:
                return


def screener(runtime, marketing_call, on_machine: str = "hangup", config: amd.AmdConfig | None = None,
             message: str | None = None):
    """SessionOptions.screen for a campaign call: (leg) -> (leg to talk on, None) or (None, reason)."""
    config = config or amd.AmdConfig()

    async def screen(leg: CallLeg):
        shared = SharedAudio(leg)
        try:  # on the wall clock too: a line that sends no audio must not hold the call
            decision = await asyncio.wait_for(
                amd.detect(shared.audio(), runtime.new_vad(), runtime.asr, config, language=marketing_call.language,
                           rate=leg.sample_rate),
                config.max_decision_s + 3.0)
        except asyncio.TimeoutError:
            decision = amd.AmdDecision("human", "no_audio", config.max_decision_s + 3.0)
        verdict = decision.verdict
        if shared.ended and decision.reason in ("silence", "timeout"):
            verdict = "gone"  # hung up before a word: not a conversation, tried again later
        marketing_call.amd = {"verdict": verdict, "reason": decision.reason, "at_s": round(decision.at_s, 3),
                              "transcript": decision.transcript}
        log.info("campaign %s: answered by a %s (%s, %.2f s)", marketing_call.campaign, verdict,
                 decision.reason, decision.at_s)
        if verdict == "gone":
            return None, "hung up during detection"
        if verdict == "human":
            return ScreenedLeg(leg, shared), None
        if on_machine == "message" and message:
            waited = await amd.wait_for_greeting_end(shared.audio(), runtime.new_vad(), config, rate=leg.sample_rate)
            said = await speak(leg, runtime, message, marketing_call.language)
            marketing_call.amd.update(message_after_s=round(waited, 2), message_s=round(said, 2))
        try:
            await leg.hangup()
        except Exception:
            log.exception("hanging up on a machine failed")
        return None, f"machine: {decision.reason}"

    return screen


async def speak(leg: CallLeg, runtime, text: str, language: str) -> float:
    """Say `text` on the leg (a voicemail message), paced in 20 ms frames; returns its length in s."""
    voice = runtime.tts.voice(language)
    chunks = await asyncio.to_thread(lambda: list(voice.synthesize(text)))
    if not chunks:
        return 0.0
    audio = np.concatenate([resample(c.samples, c.sample_rate, leg.sample_rate) for c in chunks]).astype(np.float32)
    frame = leg.sample_rate // 50
    clock = leg.clock
    start = clock.now() + 0.06
    for i in range(0, len(audio), frame):
        chunk = audio[i:i + frame]
        if len(chunk) < frame:
            chunk = np.pad(chunk, (0, frame - len(chunk)))
        due = start + i / leg.sample_rate
        await clock.wait_until(due - 0.04)
        try:
            await leg.send(AudioFrame(chunk, leg.sample_rate, due))
        except Exception:
            break  # the machine hung up first
    await clock.wait_until(start + len(audio) / leg.sample_rate + 0.3)
    return len(audio) / leg.sample_rate
