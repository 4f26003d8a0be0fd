"""`run_call`, the one way every channel (SIP, AudioSocket, browser, file, dialer) runs a call: on
fake models, in milliseconds. What a channel relies on: its hooks are called in order (started,
then release once the agent is done, then describe for the record), the record is kept in the
channel's list and in the store, and a store that fails never loses the call's record for the
channel nor raises into it."""

from __future__ import annotations

import asyncio

from voiceagent.engine import Channel, SessionOptions, run_call
from voiceagent.store import CallStore
from voiceagent.testing.fakes import CallerScript, FakeASR, FakeDialog, fake_runtime, reply


def _call(tmp_path, dialog=None, store=None):
    asr = FakeASR(language="en")
    script = CallerScript(asr)
    script.silence(0.4)
    script.say("where is my parcel")
    script.silence(4.0)
    runtime = fake_runtime(asr=asr, dialog=dialog or FakeDialog(["It left the warehouse today."]))
    leg = script.file_leg()
    steps: list[str] = []
    records: list = []
    seen_events: list = []

    async def release() -> None:
        steps.append("release")

    def describe() -> dict:
        steps.append("describe")
        return {"kind": "test", "remote": "peer"}

    def started(session) -> None:
        steps.append(f"started:{session.call_id}")

    channel = Channel("test", describe, started, release, observers=(seen_events.append,), records=records)
    record = asyncio.run(run_call(runtime, leg, SessionOptions(greeting=False), channel, store, call_id="c1"))
    return record, steps, records, seen_events


def test_the_channels_hooks_run_in_order_and_the_record_is_kept(tmp_path):
    store = CallStore(str(tmp_path / "calls.db"))
    record, steps, records, events = _call(tmp_path, store=store)
    assert steps == ["started:c1", "release", "describe"]
    assert record.call_id == "c1" and record.channel == {"kind": "test", "remote": "peer"}
    assert records == [record]
    assert [t.text for t in record.turns if t.role == "agent"] == ["It left the warehouse today."]
    assert any(type(e).__name__ == "FinalTranscript" for e in events)  # the channel's observer saw the call
    stored = store.get("c1")
    assert stored is not None and stored["call_id"] == "c1" and stored["channel"] == {"kind": "test", "remote": "peer"}


def test_a_store_that_fails_loses_nothing_for_the_channel(tmp_path):
    class BrokenStore:
        def save(self, record):
            raise OSError("disk full")

        def save_handoff(self, summary):
            raise OSError("disk full")

    handoff = reply("Let me put you through to a colleague.", "handoff.request", handoff=True,
                    handoff_reason="request")
    record, steps, records, _ = _call(tmp_path, dialog=FakeDialog([handoff]), store=BrokenStore())
    assert records == [record] and steps[-1] == "describe"
    assert record.outcome.handoff and record.outcome.transfer_ok  # the failed summary store did not stop the transfer
