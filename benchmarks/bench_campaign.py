#!/usr/bin/env python3
"""The dialer against real phones on this machine: contacts handled per hour at max_concurrent 1, 2
and 4, with the engine's voice-to-voice p95 on those calls and the answering-machine decision time.

Each step runs a fresh campaign over the same mix of callees, all real baresip phones registered at
a real Kamailio (the campaign dials sip:{phone}@ the proxy): two take the offer in Mandarin, one in
English, one asks not to be called again, one answering machine, one busy (486), one that never
answers (ring timeout 8 s); busy and unanswered numbers are retried once after 5 s. The agent runs in
this process with the offline defaults (models loaded once).

    .venv/bin/python benchmarks/bench_campaign.py [--steps 1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.baresip import Baresip  # noqa: E402
from tests.peers.kamailio import Kamailio  # noqa: E402

CALLEES = ROOT / "samples" / "audio" / "campaign"
MIX = [  # (kind, recording or None, auto answer)
    ("accept_zh", "campaign_zh_accept_8k.wav", True),
    ("accept_zh", "campaign_zh_accept_8k.wav", True),
    ("accept_en", "campaign_en_accept_8k.wav", True),
    ("opt_out_zh", "campaign_zh_opt_out_8k.wav", True),
    ("machine_zh", "campaign_zh_voicemail_8k.wav", True),
    ("busy", None, False),
    ("no_answer", None, False),
]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)


def inside_zone() -> str:
    hour = datetime.now(timezone.utc).hour
    o = next(o for o in range(-12, 15) if 10 <= (hour + o) % 24 <= 18)
    return "Etc/GMT" + (f"-{o}" if o > 0 else f"+{-o}" if o < 0 else "")


async def run_step(runtime, config, concurrency: int, step: int, var: Path) -> dict:
    from voiceagent.campaigns.report import build_report
    from voiceagent.campaigns.service import CampaignService
    from voiceagent.campaigns.spec import Contact, campaign_from_dict
    from voiceagent.campaigns.store import CampaignStore
    from voiceagent.phone import PhoneService
    from voiceagent.store import CallStore

    numbers = [f"13{step}{concurrency}0{i:06d}" for i in range(len(MIX))]
    users = {n: "pw" + n[-4:] for n in numbers}
    store = CampaignStore(var / "calls.db")
    zone = inside_zone()
    with Kamailio(users=users) as k:
        phone = PhoneService(config, runtime, CallStore(var / "calls.db"), host="127.0.0.1", port=0)
        await phone.start()
        phones = []
        stop = threading.Event()
        try:
            for n, (kind, recording, auto) in zip(numbers, MIX):
                p = Baresip(n, registrar=k.uri, password=users[n], auto_answer=auto,
                            audio_source=CALLEES / recording if recording else None, record=False)
                p.start()
                phones.append((kind, p))
            for _, p in phones:
                await asyncio.to_thread(p.wait_registered, 10)
            busy = next(p for kind, p in phones if kind == "busy")

            def refuse():
                while not stop.is_set():
                    try:
                        busy.wait_for("CALL_INCOMING", timeout=0.5)
                        busy.hangup()
                    except TimeoutError:
                        pass
            threading.Thread(target=refuse, daemon=True).start()
            name = f"bench-c{concurrency}-{step}"
            campaign = campaign_from_dict({"name": name, "dial": "sip:{phone}@" + k.hostport, "window": ["00:00", "23:59"],
                                           "max_attempts": 2, "retry_after_s": 5, "ring_timeout_s": 8,
                                           "max_concurrent": concurrency, "frequency_cap_days": 0,
                                           "offer": {"amount": 20}, "seed": step})
            service = CampaignService(config, runtime, store, phone=phone)
            contacts = [Contact(f"b{i}", n, "", "", "en" if kind.endswith("_en") else "zh", zone, "yes")
                        for i, (n, (kind, _, _)) in enumerate(zip(numbers, MIX))]
            await asyncio.to_thread(service.load, campaign, contacts)
            cpu0, t0 = os.times(), time.perf_counter()
            await service.runner(campaign).run()
            wall = time.perf_counter() - t0
            cpu1 = os.times()
        finally:
            stop.set()
            for _, p in phones:
                p.stop()
            await phone.stop()
    report = build_report(store, name)
    records = [r for r in phone.records if r.campaign and r.campaign.get("campaign") == name]
    v2v = [t.latency_ms["voice_to_voice"] for r in records for t in r.turns
           if getattr(t, "role", "") == "agent" and t.kind == "reply" and t.latency_ms.get("voice_to_voice")]
    amd_at = [r.campaign["amd"]["at_s"] for r in records if r.campaign.get("amd")]
    durations = [r.duration_s for r in records]
    return {"max_concurrent": concurrency, "contacts": report["contacts"], "attempts": report["attempts"],
            "wall_s": round(wall, 1), "contacts_per_hour": round(report["contacts"] * 3600 / wall),
            "outcomes": {k: v for k, v in report["outcomes"].items() if v},
            "voice_to_voice_ms": {"p50": pct(v2v, 0.5), "p95": pct(v2v, 0.95), "n": len(v2v)},
            "amd_decision_s": {"p50": pct(amd_at, 0.5), "max": max(amd_at) if amd_at else None},
            "answered_call_s_mean": round(statistics.mean(durations), 1) if durations else None,
            "agent_cpu_cores": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,2,4", help="max_concurrent values (default 1,2,4)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    os.environ["VOICEAGENT_VAR"] = str(var)
    import copy

    from voiceagent.config import Config
    from voiceagent.runtime import Runtime

    config = copy.deepcopy(Config())
    config.sip.rtp_port_min, config.sip.rtp_port_max = 36000, 37999
    runtime = Runtime.load(config)
    results = []
    for step, c in enumerate(int(x) for x in args.steps.split(",")):
        result = asyncio.run(run_step(runtime, config, c, step, var))
        results.append(result)
        if not args.json:
            print(f"max_concurrent {c}: {result['contacts']} contacts ({result['attempts']} dials) in "
                  f"{result['wall_s']} s = {result['contacts_per_hour']} contacts/hour; voice to voice p50/p95 "
                  f"{result['voice_to_voice_ms']['p50']}/{result['voice_to_voice_ms']['p95']} ms "
                  f"(n={result['voice_to_voice_ms']['n']}); AMD decision p50 {result['amd_decision_s']['p50']} s; "
                  f"agent {result['agent_cpu_cores']} cores; {result['outcomes']}", flush=True)
    if args.json:
        print(json.dumps({"command": " ".join(["benchmarks/bench_campaign.py", *sys.argv[1:]]),
                          "cpu_count": os.cpu_count(), "steps": results}, indent=2))


if __name__ == "__main__":
    main()
