"""Takeover, release, listen-in and the hub's live feed, on fake models in simulated time: the
real session, playout and SupervisedLeg; the supervisor's microphone is a tone handed to the leg.
The same on a real phone, a real console page and real models: tests/test_console_call.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voiceagent.config import Config
from voiceagent.engine import CallSession, SessionOptions
from voiceagent.events import SupervisorChanged
from voiceagent.ops.live import Busy, NotLive, OperatorHub
from voiceagent.ops.supervision import MixTrack, SupervisedLeg
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, FakeTTS, fake_runtime, reply

from telephony.audio import AudioFrame

RATE = 16000
LONG_ANSWER = ("Your parcel left our warehouse this morning. It is with the courier now. "
               "It should reach you tomorrow before noon. You will get a text message when it is close.")
SUPERVISOR_HZ = 1000.0


def tone(seconds: float, hz: float = SUPERVISOR_HZ, rate: int = 48000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def voiced(track: np.ndarray, start_s: float, end_s: float) -> bool:
    part = track[max(0, int(start_s * RATE)):max(0, int(end_s * RATE))]
    return part.size > 0 and float(np.abs(part).max()) > 0.02


def tone_share(track: np.ndarray, start_s: float, end_s: float, hz: float = SUPERVISOR_HZ) -> float:
    """How much of the sound in a stretch is the supervisor's tone (FakeTTS speaks other pitches)."""
    part = track[int(start_s * RATE):int(end_s * RATE)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(part)) ** 2
    freqs = np.fft.rfftfreq(len(part), 1 / RATE)
    near = spectrum[(freqs > hz - 30) & (freqs < hz + 30)].sum()
    return float(near / max(spectrum.sum(), 1e-12))


class Recorder:
    """What ops/recordings.CallRecorder is given, kept in lists."""

    def __init__(self):
        self.sides = {"caller": [], "agent": [], "supervisor": []}

    def caller(self, frame):
        self.sides["caller"].append(frame)

    def agent(self, frame):
        self.sides["agent"].append(frame)

    def supervisor(self, frame):
        self.sides["supervisor"].append(frame)


def test_a_takeover_silences_the_agent_at_once_puts_the_supervisor_on_and_release_gives_the_call_back():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(LONG_ANSWER, "logistics.track"), reply("Sure, I can help with the address.", "other")])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    during = script.say("Can you change my address please", at_s=question.end_s + 6.0)
    after = script.say("Thank you, one more thing about my address.", at_s=during.end_s + 9.0)
    script.silence(8.0)
    runtime = fake_runtime(asr=asr, tts=tts, dialog=dialog)
    file_leg = script.file_leg()
    recorder = Recorder()
    leg = SupervisedLeg(file_leg, recorder)
    events: list = []
    marks: dict = {}

    async def supervisor(session: CallSession):
        clock = leg.clock
        await clock.wait_until(question.end_s + 3.0)  # the agent is 2+ s into its long answer
        marks["taken"] = clock.now()
        leg.take_over(MixTrack())
        session.take_over("sup1")
        # the supervisor talks for 2 s, in 20 ms pieces as a browser's microphone sends them
        voice = tone(2.0)
        start = clock.now()
        for i in range(0, len(voice), 960):
            await clock.wait_until(start + i / 48000)
            await leg.send_supervisor(voice[i:i + 960], 48000)
        marks["supervisor_end"] = clock.now()
        await clock.wait_until(during.end_s + 3.0)
        marks["released"] = clock.now()
        leg.give_back()
        session.release([(start, marks["supervisor_end"], "I have changed the address for you.")])

    async def main():
        session = CallSession(runtime, leg, SessionOptions(greeting=False), observers=[events.append])
        side = asyncio.create_task(supervisor(session))
        try:
            return await asyncio.wait_for(session.run(), 60), session
        finally:
            side.cancel()

    record, session = asyncio.run(main())
    track = file_leg.agent_track()
    taken, released = marks["taken"], marks["released"]
    answer = next(t for t in record.turns if t.role == "agent" and t.kind == "reply")
    assert voiced(track, taken - 1.0, taken)  # the agent was speaking...
    assert answer.interrupted and answer.end_s <= taken + 0.1  # ... and stopped at once
    assert tone_share(track, taken + 0.2, marks["supervisor_end"] - 0.1) > 0.9  # then the caller heard the supervisor
    assert not voiced(track, marks["supervisor_end"] + 0.2, released)  # and no agent while the supervisor held it
    # the caller's turn during the takeover is kept, not answered by the agent
    callers = [t for t in record.turns if t.role == "caller"]
    assert [t.text for t in callers] == ["Where is my parcel?", during.text, after.text]
    assert callers[1].intent == "supervised"
    assert [h.text for h in dialog.heard] == [question.text, after.text]
    # released: the agent says it is back, and answers the next question with the supervisor's words in context
    agents_after = [t for t in record.turns if t.role == "agent" and t.start_s >= released]
    assert [t.kind for t in agents_after] == ["notice", "reply"]
    assert voiced(track, released, released + 1.5)
    assert ("agent", "I have changed the address for you.") in session.state.history
    assert ("caller", during.text) in session.state.history
    supervisor_turns = [t for t in record.turns if t.role == "agent" and t.kind == "supervisor"]
    assert [t.text for t in supervisor_turns] == ["I have changed the address for you."]
    assert record.supervision == [{"operator": "sup1", "from_s": pytest.approx(taken, abs=0.01),
                                   "to_s": pytest.approx(released, abs=0.01)}]
    assert [(e.active, e.operator) for e in events if isinstance(e, SupervisorChanged)] == [(True, "sup1"), (False, "sup1")]
    # the recorder had both sides, and the supervisor's voice on the agent's side
    assert recorder.sides["caller"] and recorder.sides["agent"]
    assert len(recorder.sides["supervisor"]) == pytest.approx(100, abs=2)  # 2 s in 20 ms frames


def test_a_listener_hears_the_caller_and_the_agent_mixed():
    track = MixTrack()
    caller = np.full(320, 0.1, np.float32)
    agent = np.full(160, 0.2, np.float32)  # 8 kHz: resampled to 16 kHz
    for i in range(5):
        track.push("caller", AudioFrame(caller, 16000, i * 0.02))
        track.push("agent", AudioFrame(agent, 8000, i * 0.02))

    async def third():  # (the resampler holds back a few ms at first)
        for _ in range(2):
            await track.recv()
        return await track.recv()

    frame = asyncio.run(third())
    pcm = frame.to_ndarray()[0].astype(np.float32) / 32767
    assert frame.sample_rate == 16000 and pcm.shape == (320,)
    assert np.median(pcm[40:280]) == pytest.approx(0.3, abs=0.03)  # both sides, summed
    # a side that runs ahead is trimmed: a listener never drifts seconds behind the call
    for _ in range(100):
        track.push("caller", AudioFrame(caller, 16000, 0.0))
    assert len(track._sides["caller"]) <= 8000


class _Session:
    """Enough of a CallSession for the hub: take_over/release and a finished flag."""

    def __init__(self):
        self.ctx = type("Ctx", (), {"finished": asyncio.Event(), "supervisor": None})()
        self.calls: list = []

    def take_over(self, operator):
        self.ctx.supervisor = operator
        self.calls.append(("take_over", operator))

    def release(self, said=()):
        self.ctx.supervisor = None
        self.calls.append(("release", list(said)))


def test_the_hub_feeds_consoles_refuses_a_second_supervisor_and_forgets_ended_calls():
    from aiortc import RTCPeerConnection

    from voiceagent.record import CallRecord

    async def main():
        hub = OperatorHub(Config())
        watcher = hub.subscribe()
        file_leg = CallerScript(FakeASR("en")).silence(1.0).file_leg()
        live = hub.begin("c1", "sip", file_leg, "C1001", "zh")
        live.session = _Session()
        assert hub.live_calls()[0]["call_id"] == "c1" and hub.live_calls()[0]["channel"] == "sip"
        feed = hub.subscribe("c1")
        assert (await feed.get())["type"] == "snapshot"

        async def offer(direction: str) -> tuple[RTCPeerConnection, str]:
            pc = RTCPeerConnection()
            pc.addTransceiver("audio", direction=direction)
            await pc.setLocalDescription(await pc.createOffer())
            return pc, pc.localDescription.sdp

        pc1, sdp1 = await offer("sendrecv")
        pc2, sdp2 = await offer("sendrecv")
        pc3, sdp3 = await offer("recvonly")
        answer = await hub.take_over("c1", sdp1, "sup1")
        assert "a=sendrecv" in answer and live.session.calls == [("take_over", "sup1")] and live.leg.taken_over
        with pytest.raises(Busy):
            await hub.take_over("c1", sdp2, "sup2")
        _, listen_answer = await hub.listen("c1", sdp3, "agent1")
        assert "a=sendonly" in listen_answer and len(live.leg.listeners) == 1
        await hub.release("c1", "sup1")
        assert live.session.calls[-1][0] == "release" and not live.leg.taken_over
        with pytest.raises(NotLive):
            await hub.release("c1", "sup1")  # not taken over any more
        record = CallRecord("c1", "zh")
        await hub.end(live, record)
        with pytest.raises(NotLive):
            await hub.take_over("c1", sdp2, "sup2")
        assert hub.live_calls() == [] and not live.leg.listeners
        seen = []
        while not watcher.empty():
            seen.append(watcher.get_nowait()["type"])
        assert seen[0] == "call_started" and "call_ended" in seen
        kinds = []
        while not feed.empty():
            item = feed.get_nowait()
            kinds.append(item and item["type"])
        assert kinds[-2:] == ["ended", None]  # the console's stream is told, then closed
        for pc in (pc1, pc2, pc3):
            await pc.close()

    asyncio.run(main())


def test_a_takeover_that_races_the_calls_end_or_a_second_supervisor_leaves_no_one_holding_it():
    from aiortc import RTCPeerConnection

    async def offer() -> tuple[RTCPeerConnection, str]:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc, pc.localDescription.sdp

    async def main():
        hub = OperatorHub(Config())
        leg = CallerScript(FakeASR("en")).silence(1.0).file_leg()
        live = hub.begin("c2", "audiosocket", leg, None, "en")
        live.session = _Session()
        pcs = [await offer() for _ in range(3)]
        # the call ends while the supervisor's browser is still being answered
        connecting = asyncio.ensure_future(hub.take_over("c2", pcs[0][1], "sup1"))
        await asyncio.sleep(0)
        assert live.leg.taken_over and live.session.ctx.supervisor == "sup1"
        await hub.end(live)
        with pytest.raises(NotLive):
            await connecting
        assert live.takeover is None and not live.peers
        # on a live call: a second supervisor is refused while the first connects, and after the
        # first releases, takes it; the first's late failure does not undo the second's takeover
        live2 = hub.begin("c3", "webrtc", CallerScript(FakeASR("en")).silence(1.0).file_leg(), None, "en")
        live2.session = _Session()
        first = asyncio.ensure_future(hub.take_over("c3", pcs[1][1], "sup1"))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await hub.take_over("c3", pcs[2][1], "sup2")
        await first
        await hub.release("c3", "sup1")
        await hub.take_over("c3", pcs[2][1], "sup2")
        assert live2.session.ctx.supervisor == "sup2" and live2.leg.taken_over
        with pytest.raises(Busy):
            await hub.take_over("c3", pcs[1][1], "sup1")
        assert live2.session.ctx.supervisor == "sup2" and live2.leg.taken_over  # untouched by the refusal
        await hub.end(live2)
        for pc, _ in pcs:
            await pc.close()

    asyncio.run(main())


def test_after_the_callers_goodbye_a_key_press_rates_the_call():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply("Thank you for calling. Goodbye.", "chitchat.goodbye")])
    script = CallerScript(asr)
    bye = script.say("Thanks, that's all.", at_s=0.5)
    # the goodbye (~2 s) and the rating question (~5 s) said, then the caller presses 4
    script.press("4", at_s=bye.end_s + 9.0)
    script.silence(4.0)
    runtime = fake_runtime(asr=asr, tts=tts, dialog=dialog)

    async def main():
        session = CallSession(runtime, script.file_leg(), SessionOptions(greeting=False, ask_rating=True))
        return await asyncio.wait_for(session.run(), 60)

    record = asyncio.run(main())
    agents = [t for t in record.turns if t.role == "agent"]
    from voiceagent.dialog import templates

    assert [t.text for t in agents][1] == templates.render("en", "rating_request", worst=1, best=5)
    assert record.rating == 4
    assert agents[-1].text == templates.render("en", "rating_thanks") and record.outcome.ended_by == "agent"
    # the key was a score, not a turn for the dialog
    assert [h.text for h in dialog.heard] == [bye.text]
