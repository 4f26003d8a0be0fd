"""Outbound campaigns against real phones on loopback: baresip phones registered at a real Kamailio
(the campaign dials sip:{phone}@ the proxy, as through a carrier's trunk), one that answers and
takes the offer in Mandarin, one that says not to call again, an answering machine, one busy and one
that never answers; contacts the rules stop are counted at the proxy (no INVITE); a second campaign
does not call the one who opted out; a campaign killed with SIGKILL and started again calls nobody
twice; two workers sharing one campaign through a real Postgres store ring each phone once; the same
campaign through Asterisk Originate (the in-repo AMI fake, tests/peers/asterisk.py).

What is asserted is what reached the wire (INVITEs at the proxy), what is stored (outcomes, the
audit, the do-not-call list, the coupon in the shop, the outbox) and what the agent said.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests.peers import baresip as baresip_mod
from tests.peers import kamailio as kamailio_mod
from tests.peers import need
from tests.peers.asterisk import FakeAsterisk
from tests.peers.baresip import Baresip
from tests.peers.kamailio import Kamailio
from voiceagent.audio import load_audio
from voiceagent.campaigns.report import build_report
from voiceagent.campaigns.service import CampaignService
from voiceagent.campaigns.spec import Contact, campaign_from_dict
from voiceagent.campaigns.store import CampaignStore, campaign_store
from voiceagent.pbx import AsteriskService
from voiceagent.phone import PhoneService
from voiceagent.store import CallStore

from .conftest import SAMPLES, VOICEAGENT, cli_env

CALLEES = SAMPLES / "campaign"
needs_phones = need(baresip_mod.available() and kamailio_mod.available(), "baresip and kamailio")


def _zones() -> tuple[str, str]:
    """A time zone where it is now mid-day (inside a 09:00-21:00 window) and one where it is night."""
    hour = datetime.now(timezone.utc).hour
    inside = next(o for o in range(-12, 15) if 11 <= (hour + o) % 24 <= 18)
    outside = next(o for o in range(-12, 15) if 1 <= (hour + o) % 24 <= 5)
    name = lambda o: "Etc/GMT" + (f"-{o}" if o > 0 else f"+{-o}" if o < 0 else "")  # noqa: E731  (POSIX signs)
    return name(inside), name(outside)


def _config(config):
    cfg = copy.deepcopy(config)
    cfg.sip.rtp_port_min, cfg.sip.rtp_port_max = 34000, 35999
    return cfg


def _invites(k: Kamailio) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in k.requests():
        if r["method"] == "INVITE":
            user = r["ruri"].split(":", 1)[1].split("@", 1)[0]
            counts[user] = counts.get(user, 0) + 1
    return counts


class _Rejecting:
    """A phone that is busy: each call rings and is refused (baresip answers 486 Busy Here)."""

    def __init__(self, phone: Baresip):
        self.phone = phone
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                self.phone.wait_for("CALL_INCOMING", timeout=1.0)
            except TimeoutError:
                continue
            self.phone.hangup()


@needs_phones
def test_a_campaign_converts_opts_out_detects_the_machine_retries_and_respects_the_rules(config, runtime, tmp_path):
    inside, outside = _zones()
    numbers = {f"r{i}": f"1380013{i:04d}" for i in range(1, 9)}
    users = {"agent": "agent-pw", **{n: f"pw{n[-4:]}" for n in numbers.values()}}
    store = CampaignStore(tmp_path / "calls.db")
    store.dnc_add([numbers["r6"]], "operator")
    contacts = [
        Contact("r1", numbers["r1"], "C1001", "", "zh", inside, "yes"),   # takes the offer
        Contact("r2", numbers["r2"], "C1002", "", "zh", inside, "yes"),   # stop calling me
        Contact("r3", numbers["r3"], "", "", "zh", inside, ""),           # an answering machine
        Contact("r4", numbers["r4"], "", "", "zh", inside, ""),           # busy, twice
        Contact("r5", numbers["r5"], "", "", "zh", inside, ""),           # rings, nobody answers
        Contact("r6", numbers["r6"], "", "", "zh", inside, "yes"),        # on the do-not-call list
        Contact("r7", numbers["r7"], "", "", "zh", inside, "no"),         # no consent
        Contact("r8", numbers["r8"], "", "", "zh", outside, "yes"),       # it is night where they are
    ]

    async def scenario():
        with Kamailio(users=users) as k:
            cfg = _config(config)
            phone = PhoneService(cfg, runtime, CallStore(tmp_path / "calls.db"), host="127.0.0.1", port=0)
            await phone.start()
            service = CampaignService(cfg, runtime, store, phone=phone)
            phones = {
                "r1": Baresip(numbers["r1"], registrar=k.uri, password=users[numbers["r1"]],
                              audio_source=CALLEES / "campaign_zh_accept_8k.wav"),
                "r2": Baresip(numbers["r2"], registrar=k.uri, password=users[numbers["r2"]],
                              audio_source=CALLEES / "campaign_zh_opt_out_8k.wav"),
                "r3": Baresip(numbers["r3"], registrar=k.uri, password=users[numbers["r3"]],
                              audio_source=CALLEES / "campaign_zh_voicemail_8k.wav"),
                "r4": Baresip(numbers["r4"], registrar=k.uri, password=users[numbers["r4"]], auto_answer=False),
                "r5": Baresip(numbers["r5"], registrar=k.uri, password=users[numbers["r5"]], auto_answer=False),
            }
            try:
                for p in phones.values():
                    p.start()
                for p in phones.values():
                    await asyncio.to_thread(p.wait_registered, 10)
                busy = _Rejecting(phones["r4"])
                campaign = campaign_from_dict({
                    "name": "winter-sale", "dial": "sip:{phone}@" + k.hostport, "language": "zh",
                    "window": ["09:00", "21:00"], "max_attempts": 2, "retry_after_s": 1, "ring_timeout_s": 4,
                    "max_concurrent": 3, "offer": {"kind": "coupon", "amount": 30}, "seed": 1,
                    "scripts": [{"id": "A"}, {"id": "B"}]})
                await asyncio.to_thread(service.load, campaign, contacts)
                first = await service.runner(campaign).run()
                invites_first = _invites(k)
                # a second campaign to the same people: the one who opted out is not called
                again = campaign_from_dict({"name": "spring-sale", "dial": "sip:{phone}@" + k.hostport,
                                            "window": ["09:00", "21:00"], "frequency_cap_days": 0})
                await asyncio.to_thread(service.load, again, [contacts[1]])
                second = await service.runner(again).run()
                invites_after = _invites(k)
                busy._stop = True
            finally:
                for p in phones.values():
                    p.stop()
                await phone.stop()
        return first, second, invites_first, invites_after, phone.records

    first, second, invites, invites_after, records = asyncio.run(scenario())
    report = build_report(store, "winter-sale")
    by_ref = {c["ref"]: c for c in report["contacts_detail"]}
    outcome = {ref: c["outcome"] for ref, c in by_ref.items()}
    assert outcome == {"r1": "converted", "r2": "opted_out", "r3": "machine", "r4": "busy", "r5": "no_answer",
                       "r6": "dnc", "r7": "no_consent", "r8": "outside_window"}, (outcome, records)
    # the wire: the rules stopped three contacts before any INVITE; busy and no answer were retried once
    n = {ref: invites.get(num, 0) for ref, num in numbers.items()}
    assert n["r6"] == n["r7"] == n["r8"] == 0
    assert n["r1"] == n["r2"] == n["r3"] == 1
    assert n["r4"] == 2 and n["r5"] == 2
    assert by_ref["r4"]["attempts"] == 2 and by_ref["r5"]["attempts"] == 2
    # the conversion is real: a coupon in the shop for C1001 from this campaign, a message queued
    coupons = runtime.shop.campaign_coupons("winter-sale")
    assert [c[1] for c in coupons] == ["C1001"] and coupons[0][2] == 30
    assert any(m["customer_id"] == "C1001" and "30" in m["text"] for m in store.outbox("winter-sale"))
    # the opt-out is on the do-not-call list at once, and the next campaign did not call them
    assert store.on_dnc(numbers["r2"])
    assert build_report(store, "spring-sale")["contacts_detail"][0]["outcome"] == "dnc"
    assert invites_after.get(numbers["r2"], 0) == invites.get(numbers["r2"], 0)
    # what the agent said: it introduced itself as an AI assistant before the offer
    talked = [r for r in records if r.campaign and r.campaign.get("outcome") in ("converted", "opted_out")]
    assert len(talked) == 2
    for record in talked:
        opening = record.turns[0]
        assert opening.role == "agent" and "AI" in opening.text
    machine = [r for r in records if r.campaign and r.campaign["amd"] and r.campaign["amd"]["verdict"] == "machine"]
    assert len(machine) == 1 and not any(t.role == "agent" for t in machine[0].turns)
    # every attempt is audited with the rule that allowed it
    audit = store.attempts("winter-sale")
    assert len(audit) == 7 and all(a["rule"].startswith("ok:") and a["outcome"] for a in audit)
    assert report["scripts"] and sum(s["contacts"] for s in report["scripts"].values()) == 5


@needs_phones
def test_a_campaign_killed_mid_run_and_started_again_calls_nobody_twice(tmp_path):
    numbers = [f"1390013{i:04d}" for i in range(1, 4)]
    users = {n: f"pw{n[-4:]}" for n in numbers}
    inside, _ = _zones()
    var = tmp_path / "var"
    var.mkdir()
    campaign_file = tmp_path / "c.toml"
    contacts_file = tmp_path / "contacts.csv"
    contacts_file.write_text("ref,phone,language,timezone,consent\n" + "".join(
        f"k{i},{n},en,{inside},yes\n" for i, n in enumerate(numbers, 1)), encoding="utf-8")
    env = cli_env(VOICEAGENT_VAR=str(var))

    with Kamailio(users=users) as k:
        campaign_file.write_text(f'name = "kill-test"\ndial = "sip:{{phone}}@{k.hostport}"\nlanguage = "en"\n'
                                 'window = ["09:00", "21:00"]\nmax_concurrent = 1\nretry_after_s = 3600\n',
                                 encoding="utf-8")
        phones = [Baresip(n, registrar=k.uri, password=users[n],
                          audio_source=CALLEES / "campaign_en_accept_8k.wav") for n in numbers]
        try:
            for p in phones:
                p.start()
                p.wait_registered(10)
            cmd = [VOICEAGENT, "campaign", "run", str(campaign_file), "--contacts", str(contacts_file)]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            phones[0].wait_for("CALL_ESTABLISHED", timeout=90)  # the first call is answered...
            time.sleep(2.0)
            proc.send_signal(signal.SIGKILL)  # ...and the dialer dies mid-call
            proc.wait(10)
            time.sleep(1.0)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            invites = _invites(k)
        finally:
            for p in phones:
                p.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["campaign"] == "kill-test"
    assert all(invites.get(n, 0) == 1 for n in numbers), invites
    report = build_report(CampaignStore(var / "calls.db"), "kill-test")
    outcome = {c["ref"]: c["outcome"] for c in report["contacts_detail"]}
    assert outcome["k1"] == "failed"  # talked to when the process died: never called again
    assert outcome["k2"] == outcome["k3"] == "converted"
    interrupted = [a for a in CampaignStore(var / "calls.db").attempts("kill-test") if a["outcome"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["answered_at"] is not None


@needs_phones
def test_two_workers_dial_one_campaign_on_postgres_calling_each_phone_once(config, runtime, postgres_url):
    """Two workers (two SIP stacks, two dialers under their own names) share one campaign through one
    Postgres store: each phone rings once, both workers place calls, never more than max_concurrent."""
    inside, _ = _zones()
    numbers = [f"1370013{i:04d}" for i in range(1, 5)]
    users = {n: f"pw{n[-4:]}" for n in numbers}
    contacts = [Contact(f"w{i}", n, "", "", "en", inside, "yes") for i, n in enumerate(numbers, 1)]

    async def scenario():
        with Kamailio(users=users) as k:
            phones = [Baresip(n, registrar=k.uri, password=users[n], audio_source=CALLEES / "campaign_en_accept_8k.wav")
                      for n in numbers]
            workers = []
            try:
                for p in phones:
                    p.start()
                for p in phones:
                    await asyncio.to_thread(p.wait_registered, 10)
                campaign = campaign_from_dict({"name": "shared-sale", "dial": "sip:{phone}@" + k.hostport,
                                               "language": "en", "window": ["09:00", "21:00"], "max_concurrent": 2,
                                               "ring_timeout_s": 10, "offer": {"kind": "coupon", "amount": 20}})
                for n, (low, high) in enumerate(((34000, 34998), (35000, 35998))):
                    cfg = _config(config)
                    cfg.sip.rtp_port_min, cfg.sip.rtp_port_max = low, high
                    cfg.campaigns.engine_calls = 1  # one call per worker at a time: both must take part
                    cfg.store.db = postgres_url
                    cfg.cluster.worker = f"worker-{n + 1}"
                    phone = PhoneService(cfg, runtime, CallStore(postgres_url, worker=cfg.cluster.worker),
                                         host="127.0.0.1", port=0)
                    await phone.start()
                    workers.append((phone, CampaignService(cfg, runtime, campaign_store(cfg), phone=phone)))
                await asyncio.to_thread(workers[0][1].load, campaign, contacts)
                results = await asyncio.gather(*(svc.runner(campaign).run() for _, svc in workers))
                return results, _invites(k)
            finally:
                for p in phones:
                    p.stop()
                for phone, _ in workers:
                    await phone.stop()

    results, invites = asyncio.run(scenario())
    assert {n: invites.get(n, 0) for n in numbers} == {n: 1 for n in numbers}, invites
    store = CampaignStore(postgres_url)
    audit = store.attempts("shared-sale")
    assert len(audit) == 4 and {a["worker"] for a in audit} == {"worker-1", "worker-2"}
    assert all(a["outcome"] for a in audit)
    # the calls overlapped at most max_concurrent deep across both workers
    spans = sorted((a["started_at"], a["ended_at"]) for a in audit)
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) <= 2
    report = build_report(store, "shared-sale")
    assert report["state"] == "done" and sum(report["outcomes"].values()) == 4
    assert {r["state"] for r in results} <= {"done", "running"}
    assert CallStore(postgres_url).count() >= sum(1 for c in report["contacts_detail"] if c["call_ids"])


def test_a_campaign_through_asterisk_originate(config, runtime, tmp_path):
    inside, _ = _zones()
    accept = load_audio(CALLEES / "campaign_zh_accept_8k.wav", 8000).samples
    machine = load_audio(CALLEES / "campaign_zh_voicemail_8k.wav", 8000).samples
    store = CampaignStore(tmp_path / "calls.db")

    async def scenario():
        ast = FakeAsterisk()
        await ast.start()
        cfg = copy.deepcopy(config)
        cfg.asterisk.ami_host, cfg.asterisk.ami_port = "127.0.0.1", ast.ami_port
        cfg.asterisk.ami_username, cfg.asterisk.ami_secret = "voiceagent", "s3cret"
        service = AsteriskService(cfg, runtime, CallStore(tmp_path / "calls.db"), port=0)
        await service.start()
        ast.audiosocket_addr = ("127.0.0.1", service.port)
        assert await service.ami.wait_ready(5)
        ast.originate_plan = {"13700000001": ("answered", accept), "13700000002": ("answered", machine),
                              "13700000003": ("busy", None)}
        try:
            campaigns = CampaignService(cfg, runtime, store, asterisk=service)
            campaign = campaign_from_dict({"name": "ast-sale", "dial": "asterisk:PJSIP/{phone}@trunk",
                                           "window": ["09:00", "21:00"], "max_attempts": 1, "max_concurrent": 2,
                                           "offer": {"amount": 20}})
            await asyncio.to_thread(campaigns.load, campaign, [
                Contact("a1", "13700000001", "C1003", "", "zh", inside, "yes"),
                Contact("a2", "13700000002", "", "", "zh", inside, "yes"),
                Contact("a3", "13700000003", "", "", "zh", inside, "yes")])
            await campaigns.runner(campaign).run()
        finally:
            await service.stop()
            await ast.close()
        return ast

    ast = asyncio.run(scenario())
    originated = [a["Channel"] for a in ast.actions if a["Action"] == "Originate"]
    assert sorted(originated) == ["PJSIP/13700000001@trunk", "PJSIP/13700000002@trunk", "PJSIP/13700000003@trunk"]
    outcome = {c["ref"]: c["outcome"] for c in build_report(store, "ast-sale")["contacts_detail"]}
    assert outcome == {"a1": "converted", "a2": "machine", "a3": "busy"}, outcome
    assert [c[1] for c in runtime.shop.campaign_coupons("ast-sale")] == ["C1003"]


def _tone_end_s(audio: np.ndarray, rate: int = 8000, hz: float = 1000.0) -> float | None:
    """Where a steady tone at `hz` ends in `audio` (the answering machine's beep), by 20 ms frames."""
    frame = rate // 50
    last = None
    for i in range(0, len(audio) - frame, frame):
        x = audio[i:i + frame]
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        peak = np.argmax(spectrum) * rate / len(x)
        if abs(peak - hz) < 60 and spectrum.max() > 5 and spectrum.max() ** 2 > 0.5 * (spectrum ** 2).sum():
            last = (i + frame) / rate
    return last


@needs_phones
def test_on_a_machine_the_message_is_left_after_the_beep(config, runtime, tmp_path):
    inside, _ = _zones()
    store = CampaignStore(tmp_path / "calls.db")

    async def scenario():
        cfg = _config(config)
        phone = PhoneService(cfg, runtime, CallStore(tmp_path / "calls.db"), host="127.0.0.1", port=0)
        await phone.start()
        try:
            with Baresip("13800990001", audio_source=CALLEES / "campaign_zh_voicemail_8k.wav") as machine:
                campaign = campaign_from_dict({"name": "vm", "dial": f"sip:{{phone}}@127.0.0.1:{machine.port}",
                                               "window": ["09:00", "21:00"], "on_machine": "message",
                                               "offer": {"amount": 20}})
                service = CampaignService(cfg, runtime, store, phone=phone)
                await asyncio.to_thread(service.load, campaign, [Contact("m1", "13800990001", "", "", "zh", inside)])
                await service.runner(campaign).run()
                await machine.await_for("CALL_CLOSED", 20)
                heard, sent = await asyncio.to_thread(machine.heard_audio), await asyncio.to_thread(machine.sent_audio)
        finally:
            await phone.stop()
        return heard, sent

    heard, sent = asyncio.run(scenario())
    assert build_report(store, "vm")["contacts_detail"][0]["outcome"] == "machine"
    beep_end = _tone_end_s(sent)
    assert beep_end is not None
    frames = heard[: len(heard) // 160 * 160].reshape(-1, 160)
    voiced = np.sqrt((frames ** 2).mean(axis=1)) > 0.01
    first = int(np.argmax(voiced)) * 0.02 if voiced.any() else None
    # the agent said nothing over the greeting, and its message (seconds of it) came after the beep
    assert first is not None and first >= beep_end - 0.3, (first, beep_end)
    assert voiced.sum() * 0.02 > 2.0
    detail = store.attempts("vm")[0]["detail"]["amd"]
    assert detail["verdict"] == "machine" and detail["message_s"] > 2.0
