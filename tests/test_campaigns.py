"""Outbound campaigns: the campaign and contacts files, the dial rules, the store's claim and recovery,
the dialer (driven by a scripted fake placer: no SIP here), several dialers sharing one campaign (threads,
and a dialer process killed mid-call), the report, and the marketing conversation through the real dialog
engine. The store's tests run on SQLite and on a real Postgres server (`store_db`). Fast: no audio models
are loaded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from voiceagent.campaigns.dialer import CampaignRunner, Placed
from voiceagent.campaigns.report import build_report
from voiceagent.campaigns.rules import DialRules
from voiceagent.campaigns.spec import Campaign, Contact, campaign_from_dict, load_campaign, load_contacts
from voiceagent.campaigns.store import CampaignStore, lease_holder
from voiceagent.dialog.flows.marketing import MarketingCall, callback_time
from voiceagent.dialog.flows.state import DialogState
from voiceagent.errors import BadInput
from voiceagent.record import CallRecord

from .conftest import ROOT, VOICEAGENT, cli_env

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
DIAL = "sip:{phone}@127.0.0.1:5080"
SPEC_OUTCOMES = ["converted", "declined", "opted_out", "transferred", "callback", "machine", "busy", "no_answer",
                 "rejected", "failed", "dnc", "no_consent", "outside_window", "pending"]


def _campaign(**settings) -> Campaign:
    return campaign_from_dict({"name": "t", "dial": DIAL, **settings})


def _at(zone: ZoneInfo, *when: int) -> float:
    return datetime(*when, tzinfo=zone).timestamp()


def _next_noon(zone: ZoneInfo = SHANGHAI) -> float:
    """The zone's next noon: inside the default 09:00-21:00 window and less than a day from now
    (the store stamps attempts with the real clock, so the frequency cap needs `now` near it)."""
    noon = datetime.now(zone).replace(hour=12, minute=0, second=0, microsecond=0)
    if noon.timestamp() < time.time():
        noon += timedelta(days=1)
    return noon.timestamp()


def _noon_clock():
    """Real time moved to the next noon in Shanghai: every run sees the same calling window."""
    offset = _next_noon() - time.time()
    return lambda: time.time() + offset


# -- the campaign file -------------------------------------------------------------------------------
SPEC_CAMPAIGN = '''
name = "winter-sale"
dial = "sip:{phone}@127.0.0.1:5080"   # SIP URI template
language = "zh"                        # contacts without their own
timezone = "Asia/Shanghai"             # contacts without their own
window = ["09:00", "21:00"]            # callee's local time
max_attempts = 3
retry_after_s = 3600                   # after busy, no answer, failed
ring_timeout_s = 25
max_concurrent = 2
require_consent = true
dnc_file = ""
on_machine = "hangup"
segments = []
offer = { kind = "coupon", amount = 50 }
[[scripts]]
id = "A"
segments = []
'''


def test_every_spec_key_is_accepted_and_survives_the_store(tmp_path, store_db):
    path = tmp_path / "winter.toml"
    path.write_text(SPEC_CAMPAIGN, encoding="utf-8")
    c = load_campaign(path)
    assert (c.name, c.dial, c.language, c.timezone) == ("winter-sale", DIAL, "zh", "Asia/Shanghai")
    assert [t.strftime("%H:%M") for t in c.window] == ["09:00", "21:00"]
    assert (c.max_attempts, c.retry_after_s, c.ring_timeout_s, c.max_concurrent) == (3, 3600, 25, 2)
    assert c.require_consent is True and c.dnc_file == "" and c.on_machine == "hangup" and c.segments == ()
    assert (c.offer.kind, c.offer.amount) == ("coupon", 50)
    assert [s.id for s in c.scripts] == ["A"] and c.scripts[0].segments == ()
    # a restart reads the campaign back from the store with the same settings
    store = CampaignStore(store_db)
    store.save_campaign(c, [])
    assert store.campaign("winter-sale") == c
    extra = _campaign(assignment="thompson", frequency_cap_days=3, sales_queue="vip", amd=False, seed=4,
                      on_machine="message", scripts=[{"id": "A"}, {"id": "B", "segments": ["lost"], "pitch": "thanks"}])
    assert campaign_from_dict(extra.to_dict()) == extra


@pytest.mark.parametrize("lines, drop, key", [
    ('colour = "red"', None, "colour"),
    ('window = ["21:00", "09:00"]', None, "window"),
    ('window = ["25:00", "21:00"]', None, "window[0]"),
    ('window = ["09:00", "21:60"]', None, "window[1]"),
    ('on_machine = "beep"', None, "on_machine"),
    ("max_attempts = 2.5", None, "max_attempts"),
    ('max_attempts = "3"', None, "max_attempts"),
    ("max_concurrent = 0", None, "max_concurrent"),
    ('timezone = "Mars/Olympus"', None, "timezone"),
    ('assignment = "greedy"', None, "assignment"),
    ('offer = { kind = "coupon", amont = 5 }', None, "offer.amont"),
    ("", "name", "name"),
    ("", "dial", "dial"),
    ('dial = "sip:alice@127.0.0.1:5080"', "dial", "dial"),
    ('[[scripts]]\nid = "A"\n[[scripts]]\nid = "A"', None, "scripts[1].id"),
], ids=["unknown", "reversed-window", "hour-25", "minute-60", "on_machine", "float-attempts", "string-attempts",
        "no-concurrency", "timezone", "assignment", "offer-key", "no-name", "no-dial", "dial-no-phone", "script-repeats"])
def test_a_bad_campaign_file_is_refused_naming_the_key(tmp_path, lines, drop, key):
    base = {"name": 'name = "t"', "dial": f'dial = "{DIAL}"'}
    if drop:
        del base[drop]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join([*base.values(), lines]) + "\n", encoding="utf-8")
    with pytest.raises(BadInput) as err:
        load_campaign(path)
    assert key in str(err.value) and "\n" not in str(err.value)


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VOICEAGENT, *args], capture_output=True, text=True, timeout=60,
                          env=cli_env(VOICEAGENT_VAR=str(tmp_path / "var")))


def test_cli_exits_2_with_one_line_for_a_bad_campaign_or_contacts_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'name = "t"\ndial = "{DIAL}"\nwindow = ["21:00", "09:00"]\n', encoding="utf-8")
    run = _cli(tmp_path, "campaign", "run", str(bad))
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "window" in run.stderr
    good = tmp_path / "good.toml"
    good.write_text(f'name = "t"\ndial = "{DIAL}"\n', encoding="utf-8")
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("ref,tel\nc1,13800000001\n", encoding="utf-8")
    run = _cli(tmp_path, "campaign", "run", str(good), "--contacts", str(contacts))
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "'phone'" in run.stderr


# -- the contacts file -------------------------------------------------------------------------------
def test_bad_contact_rows_are_left_out_by_line_and_the_good_ones_kept(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("ref,phone,customer_id,name,language,timezone,consent\n"
                    "c1,+86 138-0000-0001,C1001,张三,zh,Asia/Shanghai,yes\n"  # line 2: good, formatted
                    "c2,12ab,,,,,\n"                                          # line 3: not a number
                    "c3,13800000003,,,,Mars/Olympus,\n"                       # line 4: no such zone
                    "c4,+8613800000001,,,,,\n"                                # line 5: line 2's number again
                    "c5,13800000005,,,,,maybe\n"                              # line 6: consent yes/no
                    "c6,13800000006,,Bob,en,America/New_York,no\n",          # line 7: good
                    encoding="utf-8")
    loaded = load_contacts(path)
    assert [(c.ref, c.phone) for c in loaded.contacts] == [("c1", "+8613800000001"), ("c6", "13800000006")]
    assert loaded.contacts[1] == Contact("c6", "13800000006", "", "Bob", "en", "America/New_York", "no")
    assert len(loaded.problems) == 4
    for line, words in zip((3, 4, 5, 6), ("malformed phone", "time zone", "duplicate", "consent")):
        problem = next(p for p in loaded.problems if f"line {line}:" in p)
        assert words in problem


def test_a_contacts_file_without_a_phone_column_is_refused(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("ref,name\nc1,Ann\n", encoding="utf-8")
    with pytest.raises(BadInput, match="'phone'"):
        load_contacts(path)


def test_a_hundred_thousand_contacts_parse_and_store(tmp_path):
    path = tmp_path / "big.csv"
    rows = "".join(f"r{i},1{i:010d},,,,{'America/New_York' if i % 3 else ''},{'yes' if i % 2 else ''}\n"
                   for i in range(100_000))
    path.write_text("ref,phone,customer_id,name,language,timezone,consent\n" + rows, encoding="utf-8")
    loaded = load_contacts(path)
    assert len(loaded.contacts) == 100_000 and loaded.problems == []
    store = CampaignStore(tmp_path / "c.db")
    c = _campaign(name="big")
    assert store.save_campaign(c, loaded.contacts) == 100_000
    assert store.save_campaign(c, loaded.contacts) == 0  # a restart adds nobody twice
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM campaign_contacts WHERE campaign = 'big'").fetchone()[0] == 100_000


# -- the rules ---------------------------------------------------------------------------------------
NOON_2030 = _at(SHANGHAI, 2030, 1, 15, 12, 0)


def test_do_not_call_from_the_store_and_the_file(tmp_path, store_db):
    store = CampaignStore(store_db)
    dnc_file = tmp_path / "dnc.txt"
    dnc_file.write_text("# numbers never to call\n+86 138 0000 0002\n", encoding="utf-8")
    rules = DialRules(_campaign(dnc_file=str(dnc_file)), store)
    store.dnc_add(["13800000001"])
    for phone in ("13800000001", "+8613800000002"):
        verdict = rules.check(Contact("x", phone), NOON_2030)
        assert not verdict.allowed and verdict.outcome == "dnc"
    assert rules.check(Contact("x", "13800000003"), NOON_2030).allowed
    store.dnc_remove(["13800000001"])
    assert rules.check(Contact("x", "13800000001"), NOON_2030).allowed


def test_consent_no_is_never_called_when_consent_is_required(store_db):
    store = CampaignStore(store_db)
    strict, lax = DialRules(_campaign(), store), DialRules(_campaign(require_consent=False), store)
    verdict = strict.check(Contact("x", "13800000001", consent="no"), NOON_2030)
    assert not verdict.allowed and verdict.outcome == "no_consent"
    assert strict.check(Contact("x", "13800000001", consent="yes"), NOON_2030).allowed
    assert strict.check(Contact("x", "13800000001"), NOON_2030).allowed  # not stated
    assert lax.check(Contact("x", "13800000001", consent="no"), NOON_2030).allowed


def test_the_window_is_the_callees_own_and_retry_is_its_next_opening(tmp_path):
    rules = DialRules(_campaign(window=["09:00", "21:00"], timezone="Asia/Shanghai"), CampaignStore(tmp_path / "c.db"))
    here, there = Contact("sh", "13800000001"), Contact("ny", "12125550100", timezone="America/New_York")
    early = rules.check(here, _at(SHANGHAI, 2030, 1, 15, 8, 59))
    assert not early.allowed and early.outcome is None and early.retry_at == _at(SHANGHAI, 2030, 1, 15, 9, 0)
    assert rules.check(here, _at(SHANGHAI, 2030, 1, 15, 9, 0)).allowed
    assert rules.check(here, _at(SHANGHAI, 2030, 1, 15, 20, 59)).allowed
    late = rules.check(here, _at(SHANGHAI, 2030, 1, 15, 21, 0))  # the window's end is not in it
    assert not late.allowed and late.retry_at == _at(SHANGHAI, 2030, 1, 16, 9, 0)
    # noon in Shanghai is 23:00 in New York: the New York contact waits for its own 09:00
    night = rules.check(there, NOON_2030)
    assert not night.allowed and night.outcome is None and night.retry_at == _at(NEW_YORK, 2030, 1, 15, 9, 0)
    assert "America/New_York" in night.rule
    morning_ny = _at(NEW_YORK, 2030, 1, 15, 10, 0)  # 23:00 in Shanghai
    assert rules.check(there, morning_ny).allowed and not rules.check(here, morning_ny).allowed
    # the night before clocks go forward: 09:00 local is 13:00 UTC, not 14:00
    dst = rules.check(there, _at(NEW_YORK, 2030, 3, 9, 22, 0))
    assert dst.retry_at == datetime(2030, 3, 10, 13, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def test_frequency_cap_after_a_person_was_reached_in_another_campaign(store_db):
    store = CampaignStore(store_db)
    first = _campaign(name="first")
    store.save_campaign(first, [Contact("a", "13800000001"), Contact("b", "13800000002")])
    talked = store.claim("first", 0, "A", "ok", 9)[0]
    store.answered(talked)
    store.conclude(talked, "declined", final=True, person=True)
    machine = store.claim("first", 1, "A", "ok", 9)[0]
    store.answered(machine)
    store.conclude(machine, "machine", final=True, person=False)  # a voicemail is not a conversation
    now = _next_noon()
    rules = DialRules(_campaign(name="second", frequency_cap_days=7), store)
    capped = rules.check(Contact("a", "13800000001"), now)
    assert not capped.allowed and capped.outcome is None and "frequency cap" in capped.rule
    assert capped.retry_at == pytest.approx(now + 7 * 86400)
    assert rules.check(Contact("b", "13800000002"), now).allowed
    assert rules.check(Contact("a", "13800000001"), now + 8 * 86400).allowed  # the cap has run out
    assert DialRules(_campaign(name="second", frequency_cap_days=0), store).check(Contact("a", "13800000001"), now).allowed


# -- the store: claim before the dial, recover after a kill -----------------------------------------
def test_a_killed_process_leaves_claimed_attempts_that_recover_settles(store_db):
    c = _campaign(max_attempts=3, retry_after_s=60)
    store = CampaignStore(store_db)
    store.save_campaign(c, [Contact("ring", "13800000001"), Contact("talk", "13800000002")])
    store.claim(c.name, 0, "A", "ok", 9)[0]  # still ringing when the process died
    store.answered(store.claim(c.name, 1, "A", "ok", 9)[0])  # in conversation when it died
    # the claim is in the store before any dial: the count raised, the attempt open
    assert [r.attempts for r in store.contacts(c.name)] == [1, 1]
    assert [a["outcome"] for a in store.attempts(c.name)] == [None, None]

    before = time.time()
    restarted = CampaignStore(store_db)
    assert restarted.recover(c.name, c.retry_after_s, c.max_attempts) == 2
    ring, talk = restarted.contacts(c.name)
    assert ring.outcome == "pending" and ring.attempts == 1 and ring.next_at >= before + 60
    assert talk.outcome == "failed"
    assert [a["outcome"] for a in restarted.attempts(c.name)] == ["interrupted", "interrupted"]
    assert restarted.due(c.name, time.time(), 10) == []
    assert [r.contact.ref for r in restarted.due(c.name, time.time() + 61, 10)] == ["ring"]
    assert restarted.recover(c.name, c.retry_after_s, c.max_attempts) == 0


def test_after_a_kill_the_dialer_retries_the_ringing_contact_and_never_the_answered_one(store_db):
    c = _campaign(max_attempts=3, retry_after_s=0)
    store = CampaignStore(store_db)
    store.save_campaign(c, [Contact("ring", "13800000001"), Contact("talk", "13800000002"),
                            Contact("spent", "13800000003")])
    store.claim(c.name, 0, "A", "ok", 9)[0]
    store.answered(store.claim(c.name, 1, "A", "ok", 9)[0])
    store.claim(c.name, 2, "A", "ok", 9)  # its last allowed attempt (the third) was the interrupted one
    store._write("UPDATE campaign_contacts SET attempts = 3 WHERE campaign = ? AND idx = 2", (c.name,))
    placer = FakePlacer({"13800000001": ["converted"], "13800000002": ["converted"], "13800000003": ["converted"]})
    _run(c, store, placer)
    assert placer.calls == ["13800000001"]
    outcomes = {r.contact.ref: (r.outcome, r.attempts) for r in store.contacts(c.name)}
    assert outcomes == {"ring": ("converted", 2), "talk": ("failed", 1), "spent": ("failed", 3)}


# -- the dialer, with a scripted fake placer ----------------------------------------------------------
SIP_STATUS = {"busy": 486, "no_answer": 480, "rejected": 603, "failed": 500}


class FakePlacer:
    """Answers each number by its script, one step per dial (the last step repeats): "busy",
    "no_answer", "rejected", "failed", "raise" (the placer crashes), or on answer "machine",
    "hangup" (a person hangs up), "opted_out" or a conversation outcome set on the marketing call.
    Counts dials and calls at once; `engine_calls` is what the engine can hold."""

    def __init__(self, script: dict[str, list[str]], engine_calls: int = 100, hold_s: float = 0.02, on_place=None):
        self.script = {phone: list(steps) for phone, steps in script.items()}
        self.engine_calls = engine_calls
        self.hold_s = hold_s
        self.on_place = on_place
        self.calls: list[str] = []
        self.active = 0
        self.peak = 0

    def capacity(self) -> int:
        return max(0, self.engine_calls - self.active)

    async def place(self, phone: str, options, ring_timeout_s: float) -> Placed:
        self.calls.append(phone)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.on_place is not None:
                self.on_place(phone)
            await asyncio.sleep(self.hold_s)
            steps = self.script[phone]
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            if step == "raise":
                raise RuntimeError("the SIP stack fell over")
            if step in SIP_STATUS:
                return Placed(step, SIP_STATUS[step])
            await options.screen(object())  # the real placers run the screen on answer
            call: MarketingCall = options.marketing
            if step == "machine":
                call.amd = {"verdict": "machine"}
            elif step == "opted_out":
                call.effects.opt_out()
                call.outcome = "opted_out"
            elif step != "hangup":
                call.outcome = step
            return Placed("answered", 200, CallRecord(f"call-{phone}-{self.calls.count(phone)}", call.language))
        finally:
            self.active -= 1


def _run(c: Campaign, store: CampaignStore, placer: FakePlacer, contacts: list[Contact] | None = None,
         runner: CampaignRunner | None = None) -> dict:
    if contacts is not None:
        store.save_campaign(c, contacts)
    runner = runner or CampaignRunner(c, store, placer, None, clock=_noon_clock(), linger_s=5)
    return asyncio.run(runner.run())


def _outcomes(store: CampaignStore, name: str) -> dict[str, str]:
    return {r.contact.ref: r.outcome for r in store.contacts(name)}


def test_busy_then_answered_on_the_retry(store_db):
    c = _campaign(retry_after_s=0.05, max_attempts=3)
    store = CampaignStore(store_db)
    placer = FakePlacer({"13800000001": ["busy", "converted"]})
    result = _run(c, store, placer, [Contact("c1", "13800000001")])
    assert result["state"] == "done" and placer.calls == ["13800000001"] * 2
    (row,) = store.contacts(c.name)
    assert (row.outcome, row.attempts, len(row.call_ids)) == ("converted", 2, 1)
    audit = store.attempts(c.name)
    assert [a["outcome"] for a in audit] == ["busy", "converted"] and audit[0]["sip_status"] == 486
    assert all(a["rule"].startswith("ok:") for a in audit) and audit[1]["person"] == 1


def test_no_answer_is_retried_up_to_max_attempts_rejected_is_final_at_once(store_db):
    c = _campaign(retry_after_s=0.01, max_attempts=3)
    store = CampaignStore(store_db)
    placer = FakePlacer({"13800000001": ["no_answer"], "13800000002": ["rejected"]})
    _run(c, store, placer, [Contact("silent", "13800000001"), Contact("no", "13800000002")])
    assert placer.calls.count("13800000001") == 3 and placer.calls.count("13800000002") == 1
    rows = {r.contact.ref: r for r in store.contacts(c.name)}
    assert (rows["silent"].outcome, rows["silent"].attempts) == ("no_answer", 3)
    assert (rows["no"].outcome, rows["no"].attempts) == ("rejected", 1)


def test_contacts_the_rules_stop_never_reach_the_placer(tmp_path, store_db):
    dnc_file = tmp_path / "dnc.txt"
    dnc_file.write_text("13800000004\n", encoding="utf-8")
    c = _campaign(dnc_file=str(dnc_file), require_consent=True)
    store = CampaignStore(store_db)
    store.dnc_add(["13800000001"])
    contacts = [Contact("dnc", "13800000001"), Contact("noconsent", "13800000002", consent="no"),
                Contact("night", "12125550100", timezone="America/New_York"),  # noon in Shanghai: night there
                Contact("dncfile", "13800000004"), Contact("ok", "13800000005")]
    placer = FakePlacer({c.phone: ["converted"] for c in contacts})
    result = _run(c, store, placer, contacts)
    assert placer.calls == ["13800000005"]
    assert _outcomes(store, c.name) == {"dnc": "dnc", "noconsent": "no_consent", "night": "pending",
                                         "dncfile": "dnc", "ok": "converted"}
    assert result["state"] == "waiting"  # the night contact waits for its window
    report = build_report(store, c.name)
    assert report["outcomes"]["outside_window"] == 1 and report["outcomes"]["dnc"] == 2


def test_max_concurrent_is_never_exceeded(store_db):
    c = _campaign(max_concurrent=2)
    store = CampaignStore(store_db)
    contacts = [Contact(f"c{i}", f"1380000000{i}") for i in range(8)]
    placer = FakePlacer({x.phone: ["declined"] for x in contacts}, hold_s=0.2)  # long enough for calls to overlap
    _run(c, store, placer, contacts)
    assert placer.peak == 2 and len(placer.calls) == 8
    assert set(_outcomes(store, c.name).values()) == {"declined"}


def test_the_engine_capacity_is_never_exceeded(store_db):
    c = _campaign(max_concurrent=4)
    store = CampaignStore(store_db)
    contacts = [Contact(f"c{i}", f"1380000000{i}") for i in range(6)]
    placer = FakePlacer({x.phone: ["declined"] for x in contacts}, engine_calls=1, hold_s=0.3)
    _run(c, store, placer, contacts)
    assert len(placer.calls) == 6 and placer.peak == 1


def test_pause_and_resume(store_db):
    c = _campaign(max_concurrent=1)
    store = CampaignStore(store_db)
    contacts = [Contact(f"c{i}", f"1380000000{i}") for i in range(3)]
    store.save_campaign(c, contacts)
    placer = FakePlacer({x.phone: ["declined"] for x in contacts})
    runner = CampaignRunner(c, store, placer, None, clock=_noon_clock(), linger_s=5)
    placer.on_place = lambda phone: runner.pause() if len(placer.calls) == 1 else None

    async def scenario() -> dict:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.4)
        paused = (len(placer.calls), store.state(c.name), task.done())
        runner.resume()
        return {"paused": paused, "result": await asyncio.wait_for(task, 10)}

    seen = asyncio.run(scenario())
    assert seen["paused"] == (1, "paused", False)  # the call in progress finished, no new one started
    assert seen["result"]["state"] == "done" and len(placer.calls) == 3
    assert set(_outcomes(store, c.name).values()) == {"declined"}


def test_stop_lets_the_call_in_progress_finish_and_dials_no_more(store_db):
    c = _campaign(max_concurrent=1)
    store = CampaignStore(store_db)
    contacts = [Contact(f"c{i}", f"1380000000{i}") for i in range(3)]
    store.save_campaign(c, contacts)
    placer = FakePlacer({x.phone: ["converted"] for x in contacts})
    runner = CampaignRunner(c, store, placer, None, clock=_noon_clock(), linger_s=5)
    placer.on_place = lambda phone: runner.stop()
    result = _run(c, store, placer, runner=runner)
    assert result["state"] == "stopped" and store.state(c.name) == "stopped"
    assert len(placer.calls) == 1
    assert sorted(_outcomes(store, c.name).values()) == ["converted", "pending", "pending"]


def test_a_placer_that_raises_fails_that_attempt_and_the_others_go_on(store_db):
    c = _campaign(max_attempts=1)
    store = CampaignStore(store_db)
    placer = FakePlacer({"13800000001": ["converted"], "13800000002": ["raise"], "13800000003": ["converted"]})
    _run(c, store, placer, [Contact("a", "13800000001"), Contact("b", "13800000002"), Contact("c", "13800000003")])
    assert _outcomes(store, c.name) == {"a": "converted", "b": "failed", "c": "converted"}
    failed = next(a for a in store.attempts(c.name) if a["phone"] == store.key("13800000002"))
    assert failed["outcome"] == "failed" and "RuntimeError" in failed["detail"]["detail"]


def test_the_report_has_the_spec_shape_and_a_second_campaign_skips_the_opted_out(store_db):
    c = _campaign(name="winter", max_attempts=1)
    store = CampaignStore(store_db)
    steps = ["converted", "hangup", "opted_out", "transferred", "callback", "machine", "busy", "no_answer",
             "rejected", "raise"]
    contacts = [Contact(f"c{i}", f"1380000001{i}", customer_id=f"C10{i:02d}") for i in range(len(steps))]
    script = {x.phone: [step] for x, step in zip(contacts, steps)}
    store.dnc_add(["13800000020"])
    capped = Contact("capped", "13800000023")
    contacts += [Contact("dnc", "13800000020"), Contact("noconsent", "13800000021", consent="no"),
                 Contact("night", "12125550100", timezone="America/New_York"), capped]
    # someone talked to the capped contact yesterday, in another campaign
    store.save_campaign(_campaign(name="autumn"), [capped])
    store.answered(talk := store.claim("autumn", 0, "A", "ok", 9)[0])
    store.conclude(talk, "declined", final=True, person=True)
    placer = FakePlacer(script)
    _run(c, store, placer, contacts)
    assert sorted(placer.calls) == sorted(script)

    report = build_report(store, "winter")
    assert {"name", "state", "contacts", "attempts", "outcomes", "scripts", "contacts_detail"} <= set(report)
    assert (report["name"], report["contacts"], report["attempts"]) == ("winter", 14, 10)
    assert list(report["outcomes"]) == SPEC_OUTCOMES
    assert all(n == 1 for n in report["outcomes"].values()), report["outcomes"]
    a = report["scripts"]["A"]
    assert (a["contacts"], a["answered"], a["converted"]) == (10, 5, 1)
    detail = {d["ref"]: d for d in report["contacts_detail"]}
    for d in detail.values():
        assert {"ref", "customer_id", "segment", "script", "attempts", "outcome", "call_ids"} <= set(d)
    assert detail["c0"]["outcome"] == "converted" and detail["c0"]["script"] == "A"
    assert detail["c0"]["attempts"] == 1 and detail["c0"]["call_ids"] == ["call-13800000010-1"]
    assert detail["c6"]["call_ids"] == [] and detail["dnc"]["attempts"] == 0 and detail["dnc"]["script"] is None
    assert store.on_dnc("13800000012")  # c2 opted out on the call

    spring = _campaign(name="spring")
    again = FakePlacer({"13800000012": ["converted"]})
    _run(spring, store, again, [Contact("c2", "13800000012")])
    assert again.calls == [] and _outcomes(store, "spring") == {"c2": "dnc"}


def test_thompson_assignment_is_accepted_and_gives_every_contact_a_variant(store_db):
    c = _campaign(assignment="thompson", seed=3, scripts=[{"id": "A"}, {"id": "B"}], max_concurrent=4)
    store = CampaignStore(store_db)
    contacts = [Contact(f"c{i:02d}", f"138000001{i:02d}") for i in range(20)]
    placer = FakePlacer({x.phone: ["converted" if i % 2 else "hangup"] for i, x in enumerate(contacts)}, hold_s=0.0)
    _run(c, store, placer, contacts)
    rows = store.contacts(c.name)
    assert all(r.script in ("A", "B") for r in rows)
    scripts = build_report(store, c.name)["scripts"]
    assert set(scripts) == {"A", "B"} and sum(s["contacts"] for s in scripts.values()) == 20
    assert sum(s["converted"] for s in scripts.values()) == 10


# -- the marketing conversation, through the real dialog engine ---------------------------------------
class RecordingEffects:
    def __init__(self):
        self.opt_outs = 0
        self.messages: list[str] = []
        self.callbacks: list[tuple[str, datetime | None]] = []

    def opt_out(self) -> None:
        self.opt_outs += 1

    def queue_message(self, text: str) -> None:
        self.messages.append(text)

    def book_callback(self, when: str, at: datetime | None) -> None:
        self.callbacks.append((when, at))


def _call(name: str, lang: str, **extra) -> MarketingCall:
    return MarketingCall(name, "A", "coupon", lang, 50, 199, 7, "", "lost", effects=RecordingEffects(), **extra)


def _talk(runtime, call: MarketingCall, *turns: str, customer: str = "C1001"):
    state = DialogState(language=call.language, customer_id=customer, channel="voice", marketing=call)
    return [runtime.dialog.respond(text, state, call.language) for text in turns]


def _coupon_rows(shop, reason: str = "%") -> int:
    with sqlite3.connect(shop.db_path) as db:
        return db.execute("SELECT COUNT(*) FROM coupons WHERE reason LIKE ?", (reason,)).fetchone()[0]


@pytest.mark.parametrize("lang, yes, already", [("zh", "好的，发给我吧", "已经在您的账户"),
                                                ("en", "Sure, send it", "already in your account")])
def test_accepting_issues_the_coupon_once_and_queues_a_message(dialog_runtime, lang, yes, already):
    shop, name = dialog_runtime.shop, f"unit-accept-{lang}"
    first = _call(name, lang)
    (reply,) = _talk(dialog_runtime, first, yes)
    assert reply.end_call == "converted" and first.outcome == "converted" and first.coupon_id
    assert shop.campaign_coupons(name) == [(first.coupon_id, "C1001", 50.0)]
    assert len(first.effects.messages) == 1 and "50" in first.effects.messages[0]
    second = _call(name, lang)  # another call of the same campaign: the coupon is already there
    (reply,) = _talk(dialog_runtime, second, yes)
    assert reply.end_call == "converted" and second.coupon_id is None and already in reply.text
    assert len(shop.campaign_coupons(name)) == 1 and len(second.effects.messages) == 1


@pytest.mark.parametrize("lang, text", [("zh", "不需要，以后别再打了"), ("en", "Stop calling me")])
def test_opting_out_goes_on_the_dnc_list_and_ends_the_call(dialog_runtime, lang, text):
    call = _call(f"unit-optout-{lang}", lang)
    (reply,) = _talk(dialog_runtime, call, text)
    assert call.effects.opt_outs == 1 and call.outcome == "opted_out" and reply.end_call
    assert dialog_runtime.shop.campaign_coupons(call.campaign) == []


@pytest.mark.parametrize("lang, text", [("zh", "不需要"), ("en", "No thanks")])
def test_declining_ends_politely_and_a_later_yes_takes_nothing(dialog_runtime, lang, text):
    call = _call(f"unit-decline-{lang}", lang)
    reply, after = _talk(dialog_runtime, call, text, "好的" if lang == "zh" else "yes")
    assert call.outcome == "declined" and reply.end_call and call.effects.opt_outs == 0
    assert dialog_runtime.shop.campaign_coupons(call.campaign) == [] and not call.effects.messages


@pytest.mark.parametrize("lang, text, hour", [("zh", "我在开会，明天下午三点再打", 15),
                                              ("en", "I'm driving, call me back tomorrow at 10am", 10)])
def test_busy_books_the_callback_in_the_callees_zone(dialog_runtime, lang, text, hour):
    call = _call(f"unit-busy-{lang}", lang, timezone="America/New_York")
    day_before = datetime.now(NEW_YORK).date()
    (reply,) = _talk(dialog_runtime, call, text)
    day_after = datetime.now(NEW_YORK).date()
    assert call.outcome == "callback" and reply.end_call
    ((_, at),) = call.effects.callbacks
    assert at.tzinfo.key == "America/New_York" and (at.hour, at.minute) == (hour, 0)
    assert at.date() in (day_before + timedelta(days=1), day_after + timedelta(days=1))
    assert call.callback_at == at.isoformat(timespec="minutes")


def test_callback_time_reads_days_hours_and_delays():
    now = datetime(2030, 1, 15, 20, 0, tzinfo=SHANGHAI)
    assert callback_time("明天下午三点", now, "zh") == ("明天15点", datetime(2030, 1, 16, 15, 0, tzinfo=SHANGHAI))
    assert callback_time("后天上午十点", now, "zh")[1] == datetime(2030, 1, 17, 10, 0, tzinfo=SHANGHAI)
    assert callback_time("下午三点再打", now, "zh")[1] == datetime(2030, 1, 16, 15, 0, tzinfo=SHANGHAI)  # today's is past
    assert callback_time("晚点", now, "zh")[1] == now + timedelta(hours=2)
    assert callback_time("call me in 1 hour", now, "en")[1] == now + timedelta(hours=1)
    assert callback_time("tomorrow evening", now, "en")[1] == datetime(2030, 1, 16, 19, 0, tzinfo=SHANGHAI)


def test_callback_time_the_day_after_tomorrow_in_english():
    now = datetime(2030, 1, 15, 20, 0, tzinfo=SHANGHAI)
    assert callback_time("the day after tomorrow at 3pm", now, "en")[1] == datetime(2030, 1, 17, 15, 0, tzinfo=SHANGHAI)


def test_a_bare_call_me_at_a_time_books_a_callback(dialog_runtime):
    call = _call("unit-bare-callback", "zh")
    (reply,) = _talk(dialog_runtime, call, "明天下午三点再打给我吧")
    assert call.outcome == "callback" and reply.end_call and len(call.effects.callbacks) == 1


@pytest.mark.parametrize("lang, text", [("zh", "你是机器人吗"), ("en", "are you a robot")])
def test_are_you_a_robot_gets_an_honest_answer_and_the_call_goes_on(dialog_runtime, lang, text):
    call = _call(f"unit-robot-{lang}", lang)
    state = DialogState(language=lang, customer_id="C1001", channel="voice", marketing=call)
    coupons = _coupon_rows(dialog_runtime.shop)
    reply = dialog_runtime.dialog.respond(text, state, lang)
    assert "AI" in reply.text and not reply.end_call and not reply.handoff and call.outcome is None
    assert _coupon_rows(dialog_runtime.shop) == coupons  # an honest answer, not an apology coupon
    yes = dialog_runtime.dialog.respond("好的" if lang == "zh" else "yes please", state, lang)
    assert yes.end_call == "converted" and call.outcome == "converted"


@pytest.mark.parametrize("lang, text", [("zh", "你是真人吗"), ("en", "Am I talking to a robot?")])
def test_are_you_a_real_person_gets_an_honest_answer_too(dialog_runtime, lang, text):
    call = _call(f"unit-person-{lang}", lang)
    (reply,) = _talk(dialog_runtime, call, text)
    assert "AI" in reply.text and not reply.end_call and call.outcome is None


@pytest.mark.parametrize("lang, text, word", [("zh", "怎么有我电话", "会员"),
                                              ("en", "How did you get my number?", "member")])
def test_how_did_you_get_my_number_is_answered_and_the_call_goes_on(dialog_runtime, lang, text, word):
    call = _call(f"unit-number-{lang}", lang)
    (reply,) = _talk(dialog_runtime, call, text)
    assert word in reply.text and not reply.end_call and call.outcome is None and not reply.handoff


@pytest.mark.parametrize("lang, text", [("zh", "转人工"), ("en", "I want to speak to a human")])
def test_asking_for_a_person_goes_to_the_campaigns_sales_queue(dialog_runtime, lang, text):
    call = _call(f"unit-sales-{lang}", lang, sales_target="vip-sales")
    (reply,) = _talk(dialog_runtime, call, text)
    assert reply.handoff and reply.handoff_target == "vip-sales" and call.outcome == "transferred"


@pytest.mark.parametrize("lang, question, yes", [("zh", "这个羽绒服多少钱？", "好的"),
                                                 ("en", "How much is the down jacket?", "yes")])
def test_a_product_question_is_answered_and_the_offer_stays_open(dialog_runtime, lang, question, yes):
    shop = dialog_runtime.shop
    prices = {f"{p.price:.0f}" for p in shop.products() if "羽绒服" in p.name_zh}
    call = _call(f"unit-product-{lang}", lang)
    state = DialogState(language=lang, customer_id="C1001", channel="voice", marketing=call)
    answer = dialog_runtime.dialog.respond(question, state, lang)
    assert any(price in answer.text for price in prices), answer.text
    assert not answer.end_call and call.outcome is None  # the offer is still open after the answer
    taken = dialog_runtime.dialog.respond(yes, state, lang)
    assert taken.end_call == "converted" and len(shop.campaign_coupons(call.campaign)) == 1


@pytest.mark.parametrize("lang, turns", [("zh", ("蓝色的大象在跳舞", "紫色的云朵唱歌")),
                                         ("en", ("banana telephone", "the train left"))])
def test_two_unclear_turns_end_the_call_politely(dialog_runtime, lang, turns):
    call = _call(f"unit-unclear-{lang}", lang)
    first, second = _talk(dialog_runtime, call, *turns)
    assert not first.end_call and second.end_call and call.outcome == "declined"
    assert dialog_runtime.shop.campaign_coupons(call.campaign) == []


def test_a_customer_service_call_is_untouched_by_the_marketing_routes(dialog_runtime):
    before = _coupon_rows(dialog_runtime.shop, "campaign:%")
    state = DialogState(language="zh", customer_id="C1001", channel="voice")
    reply = dialog_runtime.dialog.respond("好的", state, "zh")
    assert reply.end_call != "converted" and not reply.handoff
    assert _coupon_rows(dialog_runtime.shop, "campaign:%") == before


# -- what a review found: each of these once called someone it should not have ----------------------
def test_a_failure_around_the_dial_never_redials_in_a_loop(store_db):
    c = _campaign(max_attempts=2, retry_after_s=0)
    store = CampaignStore(store_db)
    placer = FakePlacer({"13800000001": ["converted"]})
    store.save_campaign(c, [Contact("a", "13800000001")])
    runner = CampaignRunner(c, store, placer, None, clock=_noon_clock(), linger_s=5)

    def broken(row, script_id):
        raise StopIteration("a script renamed in the campaign file")
    runner.marketing_call = broken
    _run(c, store, placer, runner=runner)
    assert placer.calls == [] and len(store.attempts(c.name)) == 2  # at most max_attempts, then final
    assert _outcomes(store, c.name) == {"a": "failed"}


def test_a_call_that_crashes_after_answer_is_not_dialled_again(store_db):
    c = _campaign(max_attempts=3, retry_after_s=0)
    store = CampaignStore(store_db)

    class AnswersThenCrashes(FakePlacer):
        async def place(self, phone, options, ring_timeout_s):
            self.calls.append(phone)
            await options.screen(object())  # answered: someone is on the line
            raise RuntimeError("the engine fell over mid-call")
    placer = AnswersThenCrashes({})
    _run(c, store, placer, [Contact("a", "13800000001")])
    assert placer.calls == ["13800000001"]
    assert _outcomes(store, c.name) == {"a": "failed"}


def test_numbers_compare_in_e164_whatever_way_they_are_written(tmp_path, store_db):
    store = CampaignStore(store_db)
    store.dnc_add(["+86 138 0000 0001"])
    assert store.on_dnc("13800000001") and store.on_dnc("008613800000001") and store.on_dnc("8613800000001")
    assert not store.on_dnc("13800000002")
    path = tmp_path / "contacts.csv"
    path.write_text("phone\n13800000003\n+86 138-0000-0003\n", encoding="utf-8")
    loaded = load_contacts(path)
    assert len(loaded.contacts) == 1 and "duplicate phone of line 2" in loaded.problems[0]
    # the same person under two refs in two loads of a campaign is one contact
    c = _campaign()
    assert store.save_campaign(c, [Contact("x", "13800000004")]) == 1
    assert store.save_campaign(c, [Contact("y", "+8613800000004")]) == 0


# -- several dialers (workers) on one campaign ----------------------------------------------------------
class SharedLines:
    """The phones every dialer's calls reach (the test's threads share it): calls per number, calls
    under way at once across all dialers and the peak of that."""

    def __init__(self, script: dict[str, list[str]], hold_s: float):
        self.script = {phone: list(steps) for phone, steps in script.items()}
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.by_worker: dict[str, int] = {}
        self.active = 0
        self.peak = 0
        self.on_call = None  # (calls so far, the worker placing this one): a test's hook

    def placer(self, worker: str, engine_calls: int = 10) -> "WorkerPlacer":
        return WorkerPlacer(self, worker, engine_calls)


class WorkerPlacer:
    def __init__(self, lines: SharedLines, worker: str, engine_calls: int):
        self.lines, self.worker, self.engine_calls, self.active = lines, worker, engine_calls, 0

    def capacity(self) -> int:
        return max(0, self.engine_calls - self.active)

    async def place(self, phone: str, options, ring_timeout_s: float) -> Placed:
        lines = self.lines
        with lines.lock:
            lines.calls[phone] = lines.calls.get(phone, 0) + 1
            lines.by_worker[self.worker] = lines.by_worker.get(self.worker, 0) + 1
            lines.active += 1
            lines.peak = max(lines.peak, lines.active)
            steps = lines.script[phone]
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            total = sum(lines.calls.values())
        if lines.on_call is not None:
            lines.on_call(total, self.worker)
        self.active += 1
        try:
            await asyncio.sleep(lines.hold_s)
            if step == "busy":
                return Placed("busy", 486)
            await options.screen(object())
            options.marketing.outcome = step
            return Placed("answered", 200, CallRecord(f"call-{phone}-{lines.calls[phone]}", "zh"))
        finally:
            self.active -= 1
            with lines.lock:
                lines.active -= 1


def _run_in_threads(runners: list[CampaignRunner]) -> list[dict]:
    """Each dialer on its own thread and event loop, as on separate workers."""
    results: list[dict | BaseException] = [None] * len(runners)

    def go(i: int) -> None:
        try:
            results[i] = asyncio.run(runners[i].run())
        except BaseException as exc:  # reported by the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(runners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a dialer did not finish"
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_two_dialers_share_one_campaign_calling_each_contact_once_within_max_concurrent(store_db):
    c = _campaign(name="shared", max_concurrent=3, max_attempts=3, retry_after_s=0.05)
    contacts = [Contact(f"c{i:02d}", f"139000000{i:02d}") for i in range(40)]
    busy_once = {x.phone for x in contacts[::8]}  # busy on the first try: called twice, no more
    lines = SharedLines({x.phone: ["busy", "converted"] if x.phone in busy_once else ["declined"] for x in contacts},
                        hold_s=0.15)  # long enough for the calls of both dialers to overlap
    CampaignStore(store_db).save_campaign(c, contacts)
    clock = _noon_clock()
    # each worker's engine takes 2 calls: neither can hold all 3 of the campaign's alone
    runners = [CampaignRunner(c, CampaignStore(store_db, worker=w), lines.placer(w, engine_calls=2), None, clock=clock,
                              linger_s=5) for w in ("worker-a", "worker-b")]
    results = _run_in_threads(runners)

    print(f"peak calls at once across both dialers: {lines.peak} (max_concurrent {c.max_concurrent}); "
          f"calls by worker: {lines.by_worker}")
    assert {x.phone: lines.calls.get(x.phone, 0) for x in contacts} == \
        {x.phone: 2 if x.phone in busy_once else 1 for x in contacts}
    assert lines.peak <= c.max_concurrent
    assert set(lines.by_worker) == {"worker-a", "worker-b"}  # both took part
    store = CampaignStore(store_db)
    outcomes = _outcomes(store, c.name)
    assert outcomes == {x.ref: "converted" if x.phone in busy_once else "declined" for x in contacts}
    audit = store.attempts(c.name)
    assert len(audit) == 45 and all(a["outcome"] in ("busy", "converted", "declined") for a in audit)
    assert {a["worker"] for a in audit} == {"worker-a", "worker-b"}
    assert sum(r["attempts"] for r in results) == 45
    assert store.holders(c.name) == {}  # every lease given back
    assert store.state(c.name) == "done"


_DOOMED_DIALER = """
import asyncio, pathlib, sys, time
from voiceagent.campaigns.dialer import CampaignRunner
from voiceagent.campaigns.store import CampaignStore

db, name, offset, marker = sys.argv[1], sys.argv[2], float(sys.argv[3]), pathlib.Path(sys.argv[4])
store = CampaignStore(db, worker="doomed")

class Hangs:  # one call at a time, which never ends: the process is killed in it
    active = 0
    def capacity(self):
        return 1 - self.active
    async def place(self, phone, options, ring_timeout_s):
        self.active += 1
        marker.write_text(phone)
        await asyncio.sleep(3600)

asyncio.run(CampaignRunner(store.campaign(name), store, Hangs(), None, clock=lambda: time.time() + offset,
                           lease_s=1.5).run())
"""


def test_a_dialer_killed_mid_call_leaves_its_contact_to_another_after_the_lease(store_db, tmp_path):
    c = _campaign(name="kill", max_concurrent=2, max_attempts=3, retry_after_s=0.1)
    contacts = [Contact(f"k{i}", f"1370000000{i}") for i in range(5)]
    store = CampaignStore(store_db, worker="survivor")
    store.save_campaign(c, contacts)
    offset = _next_noon() - time.time()
    marker = tmp_path / "in-call"
    doomed = subprocess.Popen([sys.executable, "-c", _DOOMED_DIALER, str(store_db), c.name, str(offset), str(marker)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and doomed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), doomed.communicate(timeout=5)[1].decode()[-2000:]
    finally:
        doomed.kill()  # SIGKILL: nothing of the dialer runs after this
        doomed.wait(10)
    killed_phone = marker.read_text()
    (killed,) = [x for x in contacts if x.phone == killed_phone]
    held = store.holders(c.name)
    assert held == {"doomed": 1}  # its lease outlives it, for now

    lines = SharedLines({x.phone: ["converted"] for x in contacts}, hold_s=0.02)
    runner = CampaignRunner(c, store, lines.placer("survivor"), None, clock=lambda: time.time() + offset, linger_s=10)
    result = asyncio.run(runner.run())

    assert result["state"] == "done"
    assert lines.calls == {x.phone: 1 for x in contacts}  # the survivor called each once, the killed one too
    assert _outcomes(store, c.name) == {x.ref: "converted" for x in contacts}
    audit = [a for a in store.attempts(c.name) if a["phone"] == store.key(killed.phone)]
    assert [(a["worker"], a["outcome"]) for a in audit] == [("doomed", "interrupted"), ("survivor", "converted")]
    assert audit[1]["started_at"] >= audit[0]["ended_at"]  # taken over only once the dead one's was settled
    assert next(r for r in store.contacts(c.name) if r.contact.ref == killed.ref).attempts == 2


def test_a_stop_from_anywhere_stops_every_dialer(store_db):
    c = _campaign(name="ctl", max_concurrent=2)
    contacts = [Contact(f"s{i:02d}", f"136000000{i:02d}") for i in range(30)]
    operator = CampaignStore(store_db)  # `voiceagent campaign stop` from another process
    operator.save_campaign(c, contacts)
    lines = SharedLines({x.phone: ["declined"] for x in contacts}, hold_s=0.1)
    lines.on_call = lambda total, worker: operator.set_state(c.name, "stopped") if total == 6 else None
    clock = _noon_clock()
    results = _run_in_threads([CampaignRunner(c, CampaignStore(store_db, worker=w), lines.placer(w), None,
                                              clock=clock, linger_s=5) for w in ("worker-a", "worker-b")])
    assert [r["state"] for r in results] == ["stopped", "stopped"] and operator.state(c.name) == "stopped"
    made = sum(lines.calls.values())
    assert 6 <= made < 30, made
    audit = operator.attempts(c.name)
    assert len(audit) == made and all(a["outcome"] == "declined" for a in audit)  # the calls under way finished
    assert operator.holders(c.name) == {}
    assert list(_outcomes(operator, c.name).values()).count("pending") == 30 - made


def test_a_worker_leaving_leaves_the_campaign_to_the_others(store_db):
    c = _campaign(name="leave", max_concurrent=2)
    contacts = [Contact(f"l{i:02d}", f"135000000{i:02d}") for i in range(20)]
    store = CampaignStore(store_db)
    store.save_campaign(c, contacts)
    lines = SharedLines({x.phone: ["declined"] for x in contacts}, hold_s=0.05)
    clock = _noon_clock()
    leaver, stayer = (CampaignRunner(c, CampaignStore(store_db, worker=w), lines.placer(w), None, clock=clock,
                                     linger_s=5) for w in ("leaver", "stayer"))
    lines.on_call = lambda total, worker: leaver.leave() if lines.by_worker.get("leaver") == 3 else None
    assert asyncio.run(leaver.run())["state"] == "running"  # a worker shutting down is not a stop
    left = sum(lines.calls.values())
    assert 3 <= left <= 4 and store.holders(c.name) == {}  # its calls under way ended and gave theirs back
    lines.on_call = None
    assert asyncio.run(stayer.run())["state"] == "done"
    assert lines.calls == {x.phone: 1 for x in contacts} and lines.by_worker["stayer"] == 20 - left


def test_two_processes_under_one_worker_name_never_dial_one_contact_twice(store_db):
    """`docker compose exec worker-1 voiceagent campaign run ...` starts a second dialer under the running
    worker's name (it inherits VOICEAGENT_WORKER): starting, it must not take the first one's live
    contact for a dead previous life's and ring that number again."""
    c = _campaign(name="one-name", max_concurrent=5, max_attempts=3, retry_after_s=0)
    contacts = [Contact(f"n{i}", f"1340000000{i}") for i in range(5)]
    CampaignStore(store_db, worker="worker-1").save_campaign(c, contacts)
    lines = SharedLines({x.phone: ["declined"] for x in contacts}, hold_s=0.02)
    in_call, release = threading.Event(), threading.Event()

    class RingsUntilReleased:  # the first dialer's one call rings (not answered) until the test lets it go
        active = 0

        def capacity(self) -> int:
            return 1 - self.active

        async def place(self, phone, options, ring_timeout_s):
            self.active += 1
            try:
                in_call.set()
                await asyncio.to_thread(release.wait, 30)
                return await lines.placer("worker-1").place(phone, options, ring_timeout_s)
            finally:
                self.active -= 1

    clock = _noon_clock()
    first = CampaignRunner(c, CampaignStore(store_db, worker="worker-1"), RingsUntilReleased(), None, clock=clock,
                           linger_s=5)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(asyncio.run(first.run())))
    thread.start()
    try:
        assert in_call.wait(30), "the first dialer never dialled"
        second = CampaignRunner(c, CampaignStore(store_db, worker="worker-1"), lines.placer("worker-1"), None,
                                clock=clock, linger_s=5)
        # the second dials every contact but the one the first holds, and leaves that one to it
        assert asyncio.run(second.run())["state"] == "running"
        store = CampaignStore(store_db)
        assert store.holders(c.name) == {"worker-1": 1}  # two dialers, one name: the name in holders()
        assert sum(lines.calls.values()) == 4
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive() and result["state"] == "done"
    assert lines.calls == {x.phone: 1 for x in contacts}  # nobody was rung twice
    audit = store.attempts(c.name)
    assert len(audit) == 5 and {(a["worker"], a["outcome"]) for a in audit} == {("worker-1", "declined")}
    assert store.holders(c.name) == {} and store.state(c.name) == "done"


def test_a_max_concurrent_changed_in_the_store_holds_at_a_running_dialers_next_lease(store_db):
    """An operator raises max_concurrent (the campaign saved again) while a dialer runs: its next lease
    takes up to the new limit; lowered again, no call starts until the calls under way are within it."""
    c = _campaign(name="resize", max_concurrent=1)
    contacts = [Contact(f"r{i}", f"1330000000{i}") for i in range(8)]
    store = CampaignStore(store_db)
    store.save_campaign(c, contacts)

    class Resizing:
        def __init__(self):
            self.active = 0
            self.at_start: list[int] = []  # calls under way as each call started (itself included)
            self.lowered = asyncio.Event()

        def capacity(self) -> int:
            return 10 - self.active

        async def place(self, phone, options, ring_timeout_s):
            self.active += 1
            self.at_start.append(self.active)
            n = len(self.at_start)
            try:
                if n == 1:
                    await asyncio.to_thread(store.save_campaign, dataclasses.replace(c, max_concurrent=3), [])
                if n == 3:
                    await asyncio.to_thread(store.save_campaign, dataclasses.replace(c, max_concurrent=1), [])
                    self.lowered.set()
                elif n < 3:  # the first calls last until the third has started (or the dialer never starts it)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.lowered.wait(), 5)
                await options.screen(object())
                options.marketing.outcome = "declined"
                return Placed("answered", 200, CallRecord(f"call-{phone}", "zh"))
            finally:
                self.active -= 1

    placer = Resizing()
    result = asyncio.run(CampaignRunner(c, CampaignStore(store_db), placer, None, clock=_noon_clock(),
                                        linger_s=5).run())
    assert result["state"] == "done" and len(placer.at_start) == 8
    assert placer.at_start[:3] == [1, 2, 3]  # raised to 3: the running dialer took 3 at once
    assert placer.at_start[3:] == [1] * 5  # lowered to 1: one at a time again


def test_a_dialer_whose_clock_runs_ahead_never_takes_a_live_lease(store_db):
    """Leases are on the database's clock: a worker whose own clock is two minutes ahead (past any
    lease's end by its reckoning) still leaves another's live contact alone."""
    c = _campaign(name="skew", max_concurrent=5)
    store = CampaignStore(store_db)
    store.save_campaign(c, [Contact(f"w{i}", f"1320000000{i}") for i in range(3)])
    (held,) = store.lease(c, lease_holder("on-time"), 1, now=time.time())
    ahead = time.time() + 120
    assert store.recover(c.name, c.retry_after_s, c.max_attempts, now=ahead) == 0
    taken = store.lease(c, lease_holder("ahead"), 5, now=ahead)
    assert held.idx not in {r.idx for r in taken} and len(taken) == 2
    assert store.holders(c.name) == {"on-time": 1, "ahead": 2}


@pytest.mark.parametrize("text,reading", [
    ("please don't call me", "opt_out"), ("请不要再打给我", "opt_out"), ("你好，别再打电话了", "opt_out"),
    ("别给我打电话", "opt_out"), ("以后别联系我了", "opt_out"), ("Don't contact me again", "opt_out"),
    ("不太感兴趣", "decline"), ("I am not really interested", "decline"), ("行了行了别说了", "decline"),
    ("好的，发给我吧", "accept"), ("yes please do", "accept"), ("明天下午三点再打给我吧", "busy"),
])
def test_what_a_callee_says_is_read_the_right_way(text, reading):
    from voiceagent.dialog.flows.marketing import reads

    assert reads(text) == reading


def test_the_report_says_when_a_busy_callee_asked_to_be_called_back(store_db):
    c = _campaign()
    store = CampaignStore(store_db)

    class BooksACallback(FakePlacer):
        async def place(self, phone, options, ring_timeout_s):
            await options.screen(object())
            call: MarketingCall = options.marketing
            call.effects.book_callback("明天下午三点再打", datetime(2030, 1, 16, 15, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
            call.outcome = "callback"
            return Placed("answered", 200, CallRecord("call-1", "zh"))
    _run(c, store, BooksACallback({}), [Contact("a", "13800000001")])
    detail = build_report(store, c.name)["contacts_detail"][0]
    assert detail["outcome"] == "callback" and detail["callback_at"] == "2030-01-16T15:00+08:00"
