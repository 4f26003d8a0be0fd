"""The call engine's behaviour on fake models, in milliseconds: turn-taking (replies, barge-in,
backchannels), DTMF turns, timers, transfers and failures.

The real session, turn detector, playout and legs run on simulated time; only the models are fakes
(voiceagent/testing/fakes.py): the caller speaks tones FakeASR reads back into scripted words, and
FakeTTS speaks 60 ms of tone per character, so the leg's track shows where the agent spoke and what
was cut. The tests use the session's public API only (runtime, leg, options, observers, the
record), so they hold across the engine's refactoring. The same behaviours on the real models are
in test_realtime.py and test_escalation.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from voiceagent.config import Config
from voiceagent.dialog import templates
from voiceagent.legs import FileLeg, MemoryLeg
from voiceagent.engine import CallSession, SessionOptions
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, FakeLLM, FakeTTS, fake_runtime, reply, tone

RATE = 16000
LONG_ANSWER = ("Your parcel left our warehouse this morning. It is with the courier now. "
               "It should reach you tomorrow before noon. You will get a text message when it is close.")


@dataclass
class Call:
    record: object
    leg: object
    events: list = field(default_factory=list)

    def of(self, kind: str) -> list:
        return [e for e in self.events if type(e).__name__ == kind]

    @property
    def callers(self) -> list:
        return [t for t in self.record.turns if t.role == "caller"]

    def agents(self, kind: str | None = "reply") -> list:
        return [t for t in self.record.turns if t.role == "agent" and (kind is None or t.kind == kind)]

    @property
    def track(self) -> np.ndarray:
        return self.leg.agent_track()


def run_call(runtime, leg, options: SessionOptions | None = None, on_handoff=None, far_end=None) -> Call:
    """One call to its end; `far_end(leg)`: a coroutine run beside it (the caller's side acting)."""
    events: list = []

    async def main():
        session = CallSession(runtime, leg, options or SessionOptions(greeting=False), observers=[events.append],
                              on_handoff=on_handoff)
        side = asyncio.create_task(far_end(leg)) if far_end is not None else None
        try:
            return await asyncio.wait_for(session.run(), 30)
        finally:
            if side is not None:
                side.cancel()

    return Call(asyncio.run(main()), leg, events)


def voiced(track: np.ndarray, start_s: float, end_s: float) -> bool:
    part = track[max(0, int(start_s * RATE)) : max(0, int(end_s * RATE))]
    return part.size > 0 and float(np.abs(part).max()) > 0.02


def before(turn) -> float:
    """Just before a turn's start (its start_s is rounded to the millisecond)."""
    return turn.start_s - 0.005


def spoken_s(track: np.ndarray, start_s: float = 0.0, end_s: float | None = None) -> float:
    """Seconds of agent speech on the track (10 ms windows with sound in them)."""
    part = track[int(start_s * RATE) : None if end_s is None else int(end_s * RATE)]
    windows = part[: len(part) // 160 * 160].reshape(-1, 160)
    return float((np.abs(windows).max(axis=1) > 0.02).sum()) * 0.01


def onset_s(track: np.ndarray, after_s: float = 0.0) -> float:
    loud = np.flatnonzero(np.abs(track[int(after_s * RATE) :]) > 0.02)
    return after_s + loud[0] / RATE if len(loud) else float("inf")


# -- replies ------------------------------------------------------------------------------------

def test_a_turn_is_answered_once_the_caller_has_stopped():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"Where is my parcel?": reply("It left the warehouse today.", "logistics.track",
                                                      slots={"order_id": "38512074"})})
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    script.silence(4.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    (caller,), (agent,) = call.callers, call.agents()
    assert caller.text == "Where is my parcel?" and caller.intent == "logistics.track"
    assert caller.start_s == pytest.approx(question.start_s, abs=0.04)
    assert caller.end_s == pytest.approx(question.end_s, abs=0.04)
    assert agent.text == "It left the warehouse today." and not agent.interrupted
    assert call.record.slots == {"order_id": "38512074"} and call.record.language == "en"
    # heard after the caller stopped, once the end-of-turn silence window passed, never over them
    track = call.track
    window_s = Config().vad.complete_silence_ms / 1000  # "Where is my parcel?" reads as finished
    assert not voiced(track, 0.0, question.end_s + window_s)
    assert question.end_s + window_s <= onset_s(track) <= question.end_s + window_s + 0.6
    assert onset_s(track) == pytest.approx(agent.start_s, abs=0.02)
    assert agent.end_s - agent.start_s == pytest.approx(tts.duration_s(agent.text), abs=0.04)
    assert spoken_s(track) == pytest.approx(tts.duration_s(agent.text), abs=0.05)
    assert agent.latency_ms["voice_to_voice"] == pytest.approx((agent.start_s - caller.end_s) * 1000, abs=2)
    assert [h.text for h in dialog.heard] == ["Where is my parcel?"]
    assert call.record.outcome.ended_by == "caller" and call.record.outcome.resolved


def test_a_streamed_reply_is_said_piece_by_piece_and_recorded_whole():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(pieces=["Hello there!", "Nice to hear from you."], intent="chitchat.greeting",
                               source="llm")])
    script = CallerScript(asr)
    script.say("Hi, how are you?", at_s=0.3)
    script.silence(5.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())
    (agent,) = call.agents()
    assert agent.text == "Hello there! Nice to hear from you." and agent.reply_source == "llm"
    assert [e.text for e in call.of("ReplyText")] == ["Hello there!", "Nice to hear from you."]
    assert spoken_s(call.track) == pytest.approx(tts.duration_s(agent.text), abs=0.05)


# -- turn-taking --------------------------------------------------------------------------------

def test_barge_in_stops_the_agent_at_once_and_the_record_keeps_what_was_heard():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(LONG_ANSWER, "logistics.track"), reply("Sure, what is it?", "other")])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    # the answer starts ~0.5 s after the question and lasts ~8 s: cut it 3 s in
    barge = script.say("Wait, I have another question about it.", at_s=question.end_s + 3.5)
    script.silence(6.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    first, second = call.agents()
    track = call.track
    assert voiced(track, barge.start_s - 1.0, barge.start_s)  # the agent was speaking
    assert not voiced(track, barge.start_s + 0.2, before(second))  # ... and stopped within 200 ms
    assert call.record.stats["barge_ins"] == 1 and call.record.stats["barge_in_stop_ms"] <= 200
    assert first.interrupted and first.end_s <= barge.start_s + 0.2
    # what the caller heard: about as many characters as the agent's time on the air allows
    heard = first.heard_text
    assert heard and LONG_ANSWER.startswith(heard) and len(heard) < len(LONG_ANSWER)
    on_air = barge.start_s - first.start_s
    assert abs(len(heard.replace(" ", "")) * 0.06 - on_air) <= 0.6, (heard, on_air)
    (interruption,) = call.of("Interruption")
    assert interruption.heard_text == heard and interruption.speech_start_s == pytest.approx(barge.start_s, abs=0.04)
    # the interruption is a turn of its own, answered in full
    assert [t.text for t in call.callers] == ["Where is my parcel?", "Wait, I have another question about it."]
    assert second.text == "Sure, what is it?" and not second.interrupted and second.start_s > barge.end_s


def test_a_short_stop_word_over_the_agent_stops_it():
    # "wait" is shorter than a backchannel can be, but it says stop
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(LONG_ANSWER, "logistics.track"), reply("Yes?", "other")])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    wait = script.say("Wait.", at_s=question.end_s + 3.0, seconds=0.35)
    script.silence(5.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())
    first, second = call.agents()
    assert first.interrupted and not voiced(call.track, wait.start_s + 0.2, before(second))
    assert [t.text for t in call.callers][-1] == "Wait." and second.text == "Yes?"


@pytest.mark.parametrize("language, words", [("en", "ok"), ("zh", "嗯"), ("en", None)],
                         ids=["ok", "嗯", "cough"])
def test_a_backchannel_or_a_cough_over_the_agent_does_not_stop_it(language, words):
    asr, tts = FakeASR(language), FakeTTS()
    answer = LONG_ANSWER if language == "en" else "您的包裹今天上午已经从仓库发出，现在在快递员手上，预计明天中午前送到，快到的时候会有短信通知您。"
    dialog = FakeDialog([reply(answer, "logistics.track")])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?" if language == "en" else "我的快递到哪了？", at_s=0.5)
    at = question.end_s + 1.5  # the agent is mid-answer
    over = script.sound(tone(0.3, 3900.0), at) if words is None else script.say(words, at, seconds=0.3)
    script.silence(12.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    (agent,) = call.agents()
    assert not agent.interrupted and len(call.callers) == 1  # not a turn
    assert call.record.stats["barge_ins"] == 0 and call.record.stats["backchannels"] >= 1
    track = call.track
    assert voiced(track, over.end_s + 0.8, agent.end_s)  # it carried on after
    assert spoken_s(track, 0.0, agent.end_s + 0.05) == pytest.approx(tts.duration_s(answer), abs=0.06)  # all of it heard
    assert len(dialog.heard) == 1


def test_the_fake_llm_streams_its_script_and_can_fail():
    llm = FakeLLM(["Hello there, friend.", ["Hi", "!"], RuntimeError("llm down")], default="OK.")
    assert "".join(llm.stream([{"role": "user", "content": "hi"}])) == "Hello there, friend."
    assert list(llm.stream([])) == ["Hi", "!"]
    with pytest.raises(RuntimeError, match="llm down"):
        list(llm.stream([]))
    assert list(llm.stream([])) == ["OK."] and llm.prompts[0] == [{"role": "user", "content": "hi"}]


# -- DTMF ---------------------------------------------------------------------------------------

def test_keyed_digits_then_hash_are_one_turn():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"20241108": reply("Order 20241108 is on its way.", "order.status",
                                           slots={"order_id": "20241108"})})
    script = CallerScript(asr)
    script.silence(0.5)
    times = script.press("20241108#", every_s=0.3)
    script.silence(5.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    finals = call.of("FinalTranscript")
    assert [(f.text, f.source) for f in finals] == [("20241108", "dtmf")]
    assert finals[0].at_s == pytest.approx(times[-1], abs=0.05)  # at the "#", not after a timeout
    assert [e.digit for e in call.of("Dtmf")] == list("20241108#")
    (caller,), (agent,) = call.callers, call.agents()
    assert caller.text == "20241108" and caller.slots == {"order_id": "20241108"}
    assert agent.text == "Order 20241108 is on its way." and agent.start_s >= times[-1]
    assert not asr.calls  # keys are not speech


def test_keyed_digits_without_hash_are_a_turn_after_the_dtmf_timeout():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"1234": "Thank you."})
    script = CallerScript(asr)
    times = script.press("1234", at_s=0.5, every_s=0.4)
    script.silence(6.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog, dtmf_timeout_s=2.0), script.file_leg())
    (final,) = call.of("FinalTranscript")
    assert final.text == "1234" and final.source == "dtmf"
    assert final.at_s == pytest.approx(times[-1] + 2.0, abs=0.1)
    assert [t.text for t in call.agents()] == ["Thank you."]


def test_star_clears_the_digits_keyed_so_far():
    asr = FakeASR("en")
    dialog = FakeDialog({"77": "Got it."})
    script = CallerScript(asr)
    script.press("12*77#", at_s=0.5)
    script.silence(4.0)
    call = run_call(fake_runtime(asr=asr, dialog=dialog), script.file_leg())
    assert [f.text for f in call.of("FinalTranscript")] == ["77"]


def test_keys_pressed_over_the_agent_stop_it():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(LONG_ANSWER), "Thanks."])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    times = script.press("1#", at_s=question.end_s + 3.0)
    script.silence(4.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())
    first, second = call.agents()
    assert first.interrupted and not voiced(call.track, times[0] + 0.1, before(second))
    assert call.callers[-1].text == "1" and second.text == "Thanks."


# -- timers -------------------------------------------------------------------------------------

def test_silence_is_reprompted_then_the_agent_says_goodbye_and_hangs_up():
    asr, tts = FakeASR("en"), FakeTTS(ms_per_char=20)
    script = CallerScript(asr).silence(60.0)
    runtime = fake_runtime(asr=asr, tts=tts, reprompt_after_s=3.0, max_reprompts=2)
    call = run_call(runtime, script.file_leg(), SessionOptions(greeting=True, language="en"))

    said = call.agents(None)
    assert [t.kind for t in said] == ["greeting", "reprompt", "reprompt", "goodbye"]
    assert [t.text for t in said] == [templates.render("en", k)
                                      for k in ("greeting", "reprompt", "reprompt", "silence_goodbye")]
    for before, after in zip(said, said[1:]):
        assert after.start_s - before.end_s == pytest.approx(3.0, abs=0.1)  # after 3 s of silence each
    outcome = call.record.outcome
    assert outcome.ended_by == "agent" and outcome.end_reason == "silence" and call.leg.hung_up
    assert call.record.duration_s == pytest.approx(said[-1].end_s, abs=0.1)  # not the whole minute
    assert call.of("Hangup")[-1].reason == "silence"


def test_a_caller_who_speaks_again_resets_the_reprompts():
    asr, tts = FakeASR("en"), FakeTTS(ms_per_char=20)  # short prompts: the caller answers after one
    dialog = FakeDialog(default="Okay.")
    script = CallerScript(asr)
    script.say("I am here.", at_s=5.0)  # after the first re-prompt (at 3 s, ~1.3 s long)
    script.silence(20.0)  # after the answer: two more and the goodbye
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog, reprompt_after_s=3.0, max_reprompts=2),
                    script.file_leg(), SessionOptions(greeting=False, language="en"))
    assert [t.kind for t in call.agents(None)] == ["reprompt", "reply", "reprompt", "reprompt", "goodbye"]
    assert call.record.outcome.end_reason == "silence"


def test_the_call_ends_politely_at_its_maximum_length():
    asr, tts = FakeASR("en"), FakeTTS(ms_per_char=20)  # a greeting of ~1 s
    dialog = FakeDialog(default="Okay.")
    script = CallerScript(asr)
    for at in (2.0, 4.0, 6.0):  # a chatty caller: never silent long enough for a re-prompt
        script.say("Tell me more.", at_s=at)
    script.silence(20.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog, max_call_s=8.0), script.file_leg(),
                    SessionOptions(greeting=True, language="en"))
    said = call.agents(None)
    assert said[0].kind == "greeting" and said[0].start_s < 0.1
    assert said[-1].kind == "goodbye" and said[-1].text == templates.render("en", "max_length_goodbye")
    assert said[-1].start_s >= 8.0 - 0.05
    assert call.record.outcome.end_reason == "max_duration" and call.record.outcome.ended_by == "agent"
    assert call.leg.hung_up and call.record.duration_s < 8.0 + 8.0


# -- transfer -----------------------------------------------------------------------------------

class _TimedTransferLeg(FileLeg):
    """A FileLeg that notes when the session asked for the transfer."""

    transfer_at_s: float | None = None

    async def transfer(self, target, summary=None):
        self.transfer_at_s = self.clock.now()
        return await super().transfer(target, summary)


def _handoff_call(transfer_ok: bool = True, status: str = "busy", options: SessionOptions | None = None,
                  then: str | None = None, ticket_error: Exception | None = None):
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"I want to talk to a person.": reply("Let me put you through to a colleague.", "handoff.human",
                                                              handoff=True, handoff_reason="caller_request"),
                         "When will they call?": reply("Soon, within the hour.", "other")},
                        ticket_error=ticket_error)
    script = CallerScript(asr)
    script.say("I want to talk to a person.", at_s=0.5)
    script.silence(6.0)
    if then:  # after the bridge and the ~11 s callback notice
        script.say(then, at_s=20.0)
        script.silence(4.0)
    leg = _TimedTransferLeg(script.audio, RATE, realtime=False)
    leg.transfer_ok, leg.transfer_status = transfer_ok, status
    handed: list = []
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), leg, options,
                    on_handoff=lambda summary: handed.append((dict(summary), list(leg.transfers))))
    return call, handed, dialog


def test_a_handoff_says_the_bridge_stores_the_summary_then_transfers():
    call, handed, _ = _handoff_call()
    leg, outcome = call.leg, call.record.outcome
    assert leg.transfers == ["human-queue"]
    summary = leg.handoffs[0]
    assert summary["call_id"] == call.record.call_id and summary["target"] == "human-queue"
    assert summary["reason"] == "caller_request"
    # stored (on_handoff) before the transfer was asked for: the human's screen reads it as it rings
    assert handed == [(summary, [])]
    (bridge,) = call.agents()
    assert bridge.text == "Let me put you through to a colleague." and bridge.handoff
    # the bridge sentence was heard whole first (its last frame goes to the leg a playout lead ahead)
    assert leg.transfer_at_s >= bridge.end_s - 0.1
    assert spoken_s(call.track) == pytest.approx(FakeTTS().duration_s(bridge.text), abs=0.05)
    assert outcome.handoff and outcome.transfer_ok and outcome.transfer_status == "completed"
    assert outcome.ended_by == "transfer" and outcome.handoff_reason == "caller_request" and not outcome.resolved
    assert call.record.handoff == summary
    assert [(e.target, e.reason) for e in call.of("TransferRequested")] == [("human-queue", "caller_request")]


def test_the_transport_s_handoff_target_is_used():
    call, _, _ = _handoff_call(options=SessionOptions(greeting=False, handoff_target="sip:desk@pbx"))
    assert call.leg.transfers == ["sip:desk@pbx"] and call.record.outcome.handoff_target == "sip:desk@pbx"


def test_a_failed_transfer_books_a_callback_and_keeps_the_caller():
    call, handed, dialog = _handoff_call(transfer_ok=False, status="no_answer", then="When will they call?")
    outcome = call.record.outcome
    assert call.leg.transfers == ["human-queue"] and len(handed) == 1
    assert outcome.handoff and outcome.transfer_ok is False and outcome.transfer_status == "no_answer"
    assert outcome.callback_ticket == "CB-FAKE-1" and dialog.callbacks[0]["call_id"] == call.record.call_id
    bridge, notice, answer = call.agents(None)
    assert notice.kind == "notice" and notice.text == templates.render("en", "transfer_failed", ticket_id="CB-FAKE-1")
    assert notice.end_s - notice.start_s == pytest.approx(FakeTTS().duration_s(notice.text), abs=0.05)  # said whole
    # the caller is still with the agent: the next question is answered
    assert answer.kind == "reply" and answer.text == "Soon, within the hour." and answer.start_s > notice.end_s
    assert outcome.ended_by == "caller" and not outcome.resolved


def test_a_failed_transfer_without_a_ticket_system_still_tells_the_caller():
    call, _, _ = _handoff_call(transfer_ok=False, ticket_error=RuntimeError("tickets down"))
    notice = call.agents(None)[-1]
    assert notice.kind == "notice" and notice.text == templates.render("en", "transfer_failed_no_ticket")
    assert call.record.outcome.callback_ticket is None and call.record.outcome.ended_by == "caller"


# -- failures -----------------------------------------------------------------------------------

def test_a_turn_the_recogniser_fails_on_gets_an_apology_and_the_call_goes_on():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog({"Where is my parcel?": "It is on its way."})
    script = CallerScript(asr)
    script.say("Where is my parcel?", at_s=0.5, fails=True)
    script.silence(4.0)
    script.say("Where is my parcel?")
    script.silence(4.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg(),
                    SessionOptions(greeting=False, language="en"))
    said = call.agents(None)
    assert [t.kind for t in said] == ["notice", "reply"]
    assert said[0].text == templates.render("en", "not_heard") and said[1].text == "It is on its way."
    assert any(e.startswith("asr:") and "fake ASR failure" in e for e in call.record.errors)
    assert call.record.stats["stage_failures"] == 1 and call.record.outcome.ended_by == "caller"
    assert [c.text for c in call.callers] == ["Where is my parcel?"]


def test_failures_in_a_row_end_the_call_with_an_error():
    asr = FakeASR("en", fail=True)
    script = CallerScript(asr)
    for at in (0.5, 5.0, 10.0):
        script.say("Hello?", at_s=at)
    script.silence(5.0)
    call = run_call(fake_runtime(asr=asr, max_stage_errors=2), script.file_leg())
    outcome = call.record.outcome
    assert [t.kind for t in call.agents(None)] == ["notice"]  # the first failure apologised, the second ended it
    assert outcome.ended_by == "error" and outcome.end_reason == "stage_errors" and "fake ASR failure" in outcome.error
    assert call.record.duration_s < 10.0  # the third turn was never waited for
    assert not call.callers


def test_a_voice_that_fails_on_a_reply_gets_an_apology_and_the_call_goes_on():
    asr = FakeASR("en")
    tts = FakeTTS(fail_on=lambda text: "warehouse" in text)
    dialog = FakeDialog(["It left the warehouse today.", "You are welcome."])
    script = CallerScript(asr)
    script.say("Where is my parcel?", at_s=0.5)
    script.silence(5.0)
    script.say("Thank you.")
    script.silence(4.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())
    assert [t.kind for t in call.agents(None)] == ["notice", "reply"]
    assert call.agents(None)[0].text == templates.render("en", "system_error")
    assert call.agents()[0].text == "You are welcome."
    assert any(e.startswith("tts:") for e in call.record.errors) and call.record.outcome.ended_by == "caller"
    assert len(call.callers) == 2


def test_a_voice_that_fails_mid_reply_still_plays_what_it_made():
    asr = FakeASR("en")
    tts = FakeTTS(fail_on=lambda text: text.startswith("It is with"))
    dialog = FakeDialog([LONG_ANSWER])
    script = CallerScript(asr)
    script.say("Where is my parcel?", at_s=0.5)
    script.silence(10.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())
    (agent,) = call.agents(None)
    first_sentence = "Your parcel left our warehouse this morning."
    assert spoken_s(call.track) == pytest.approx(tts.duration_s(first_sentence), abs=0.05)
    assert agent.kind == "reply" and not agent.interrupted
    assert any(e.startswith("tts:") for e in call.record.errors) and call.record.outcome.ended_by == "caller"


def _failing_dialog_call(options: SessionOptions) -> Call:
    asr = FakeASR("en")
    dialog = FakeDialog([RuntimeError("shop database locked"), "Here it is."])
    script = CallerScript(asr)
    script.say("Where is my order?", at_s=0.5)
    script.silence(5.0)
    script.say("Where is my order?")
    script.silence(4.0)
    return run_call(fake_runtime(asr=asr, dialog=dialog), script.file_leg(), options)


def test_a_failing_dialog_gets_an_apology_and_the_call_goes_on():
    call = _failing_dialog_call(SessionOptions(greeting=False, language="en"))
    said = call.agents(None)
    assert [t.kind for t in said] == ["notice", "reply"] and said[0].text == templates.render("en", "system_error")
    assert said[1].text == "Here it is."
    assert any("shop database locked" in e for e in call.record.errors)
    assert call.record.outcome.ended_by == "caller" and call.record.stats["stage_failures"] == 1


def test_the_apology_for_a_failing_dialog_is_in_the_language_the_turn_was_heard_in():
    # An "auto" call: the turn was heard in English, but the dialog failed before it noted a language.
    call = _failing_dialog_call(SessionOptions(greeting=False))
    assert call.agents(None)[0].text == templates.render("en", "system_error")


def test_a_leg_that_vanishes_mid_reply_ends_the_call_and_keeps_the_record():
    asr, tts = FakeASR("en"), FakeTTS()
    dialog = FakeDialog([reply(LONG_ANSWER, "logistics.track", slots={"order_id": "38512074"})])
    script = CallerScript(asr)
    question = script.say("Where is my parcel?", at_s=0.5)
    script.silence(20.0)
    leg = MemoryLeg(RATE, realtime=False)
    for frame in script.frames():
        leg.push(frame)
    gone_at = question.end_s + 3.0

    async def far_end(leg):
        await leg.clock.wait_until(gone_at)
        leg.vanish()

    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), leg, far_end=far_end)
    outcome = call.record.outcome
    assert outcome.ended_by == "caller" and outcome.end_reason == "leg_lost"
    (caller,), (agent,) = call.callers, call.agents()
    assert caller.text == "Where is my parcel?" and call.record.slots == {"order_id": "38512074"}
    assert agent.text == LONG_ANSWER and agent.end_s == pytest.approx(gone_at, abs=0.1)  # cut where the line died
    assert call.record.duration_s < gone_at + 1.0


def test_a_caller_who_goes_on_after_a_breath_is_answered_once_for_both_sentences():
    """"What size should I get?" (finished: the short window ends the turn) then, 0.4 s later, "I
    usually wear a size nine." over the answer being made: the first answer is withdrawn, the two
    sentences are one caller turn, answered once; the conversation is as if the first answer had
    never been given. A caller who speaks again after the answer was heard out is a new turn."""
    asr, tts = FakeASR("en"), FakeTTS()

    def first(text, state, language):
        state.awaiting = "size"  # what answering the first part alone would have changed
        return reply("Which size do you usually wear?", "product.size")

    seen_awaiting = []

    def joined(text, state, language):
        seen_awaiting.append(state.awaiting)
        return reply("Size nine fits you.", "product.size")

    dialog = FakeDialog({
        "What size should I get?": first,
        "What size should I get? I usually wear a size nine.": joined,
        "Thanks.": reply("You're welcome.", "chitchat.thanks"),
    })
    script = CallerScript(asr)
    script.say("What size should I get?", at_s=0.5)
    script.silence(0.4)
    second = script.say("I usually wear a size nine.")
    script.silence(3.0)
    thanks = script.say("Thanks.")
    script.silence(2.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    callers = call.callers
    assert [c.text for c in callers] == ["What size should I get? I usually wear a size nine.", "Thanks."]
    assert callers[0].start_s == pytest.approx(0.5, abs=0.04) and callers[0].end_s == pytest.approx(second.end_s, abs=0.04)
    said = call.agents()
    assert [a.text for a in said] == ["Size nine fits you.", "You're welcome."]
    # the first answer had begun (the fakes answer at once): it stays in the record, cut and withdrawn
    (withdrawn,) = call.agents("withdrawn")
    assert withdrawn.text == "Which size do you usually wear?" and withdrawn.interrupted
    assert seen_awaiting == [None]  # the withdrawn answer's question is not left open
    assert [h.text for h in dialog.heard][-2:] == ["What size should I get? I usually wear a size nine.", "Thanks."]
    assert thanks.start_s > said[0].end_s  # heard out: "Thanks." is a turn of its own


def test_going_on_after_an_answer_that_acted_keeps_what_was_done():
    """The first part's answer logged a complaint ticket: the joined turn is answered on top of that
    (no second ticket), though the answer is still withdrawn."""
    asr, tts = FakeASR("en"), FakeTTS()

    def first(text, state, language):
        state.complaint_ticket = "T-1"
        state.tried.append("ticket T-1")
        return reply("I have logged your complaint.", "aftersales.complaint", grounding=["tickets:T-1"])

    seen = []

    def joined(text, state, language):
        seen.append((state.complaint_ticket, list(state.tried)))
        return reply("I have noted the delay.", "aftersales.complaint")

    dialog = FakeDialog({"My parcel is late.": first, "My parcel is late. It was due on Monday.": joined})
    script = CallerScript(asr)
    script.say("My parcel is late.", at_s=0.5)
    script.silence(0.4)
    script.say("It was due on Monday.")
    script.silence(3.0)
    call = run_call(fake_runtime(asr=asr, tts=tts, dialog=dialog), script.file_leg())

    assert [c.text for c in call.callers] == ["My parcel is late. It was due on Monday."]
    assert seen == [("T-1", ["ticket T-1"])]
    assert [a.text for a in call.agents()] == ["I have noted the delay."]
