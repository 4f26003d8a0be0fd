"""The live turn detector on real speech and the real VAD, with a stand-in recogniser: when a caller is
heard (barge-in), when a pause is seen, and one final transcript per turn, from the shared segmenter."""

import asyncio

import pytest

from voiceagent.asr import Segment, Transcript
from voiceagent.audio import load_audio
from voiceagent.config import CallConfig, VadConfig
from voiceagent.events import FinalTranscript, SpeechStarted, SpeechStopped
from voiceagent.segmenter import PAUSE_MS
from voiceagent.turn_detector import TurnDetector
from voiceagent.vad import create_vad

from .conftest import SAMPLES

FRAME = 320  # 20 ms, as a phone leg delivers


class _SentenceRecognizer:
    """Hears every stretch of audio as one finished sentence (the timing under test is the VAD's)."""

    def transcribe(self, audio, language=None, urgent=True, check_switch=False):
        return Transcript("Where is my parcel.", "en", 1.0, len(audio) / 16000, [Segment(0.0, 1.0, "Where is my parcel.")])


class _AudioClock:
    """The call's timeline is the audio fed so far (as a simulated call's is)."""

    realtime = False
    t = 0.0

    def now(self):
        return self.t

    async def run_in_thread(self, fn, *args):
        return fn(*args)


# The recording's first turn pauses 0.29 s after its first words; the stand-in hears every stretch as a
# finished sentence, so the default short window (250 ms: a sure "finished", tests/test_turn_end.py)
# would end the turn there. The detector's timing is what is under test here, on a 500 ms window.
VAD = VadConfig(complete_silence_ms=500)


async def _hear(name: str):
    audio = load_audio(SAMPLES / name).samples
    clock, events = _AudioClock(), []
    detector = TurnDetector(create_vad(VAD), _SentenceRecognizer(), VAD, CallConfig(),
                            events.append, clock, language=lambda: "en")
    for i in range(0, len(audio), FRAME):
        clock.t = (i + FRAME) / 16000
        await detector.feed(audio[i : i + FRAME])
        await asyncio.sleep(0)  # let the decodes run, as the call's loop would between frames
    await detector.flush()
    detector.close()
    return events


def test_each_turn_is_heard_at_once_paused_on_and_ended_once():
    events = asyncio.run(_hear("en_multi_turn_8k.wav"))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(started) == len(finals) == 2
    frame_s, chunk_s = FRAME / 16000, 512 / 16000
    for start, final in zip(started, finals):
        assert start.start_s == final.start_s
        # barge-in: the caller is heard barge_in_ms after they start (to a chunk and a frame)
        assert CallConfig().barge_in_ms / 1000 <= start.at_s - start.start_s <= CallConfig().barge_in_ms / 1000 + chunk_s + frame_s
        stops = [e for e in events if isinstance(e, SpeechStopped) and start.at_s < e.at_s <= final.at_s]
        assert stops and stops[-1].speech_end_s == final.speech_end_s
        assert PAUSE_MS / 1000 <= stops[-1].at_s - final.speech_end_s <= PAUSE_MS / 1000 + chunk_s + frame_s
        # a finished sentence ends the turn one complete-silence window after the speech
        assert final.decided_s - final.speech_end_s == pytest.approx(VAD.complete_silence_ms / 1000, abs=0.06)
        assert final.text == "Where is my parcel."
    assert finals[0].speech_end_s < started[1].start_s
