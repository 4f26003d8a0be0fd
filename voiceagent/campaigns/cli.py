"""`voiceagent campaign run|report|segments` and `voiceagent dnc` (SPEC.md, "Outbound campaigns")."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from ..errors import BadInput
from .spec import load_campaign, load_contacts, normalize_phone
from .store import CampaignStore, campaign_store

MAX_PROBLEM_LINES = 20


def _store(config) -> CampaignStore:
    return campaign_store(config)


def run(args, config) -> int:
    from ..phone import PhoneService
    from ..pbx import AsteriskService
    from ..runtime import Runtime
    from ..store import CallStore
    from .service import CampaignService

    campaign = load_campaign(args.campaign_file)
    contacts = None
    problems: list[str] = []
    if args.contacts:
        loaded = load_contacts(args.contacts, config.campaigns.default_country_code)
        contacts, problems = loaded.contacts, loaded.problems
        for line in problems[:MAX_PROBLEM_LINES]:
            sys.stderr.write(f"voiceagent: {line}\n")
        if len(problems) > MAX_PROBLEM_LINES:
            sys.stderr.write(f"voiceagent: ... and {len(problems) - MAX_PROBLEM_LINES} more rows left out\n")
    if campaign.via_asterisk and args.audiosocket is None:
        raise BadInput(f"campaign {campaign.name}: dial {campaign.dial!r} needs --audiosocket HOST:PORT "
                       "(where the dialplan connects the answered call)")
    runtime = Runtime.load(config)
    store = campaign_store(config)
    calls = CallStore(config.store.db)

    async def main() -> dict:
        phone = asterisk = None
        if campaign.via_asterisk:
            asterisk = AsteriskService(config, runtime, calls, host=args.audiosocket[0], port=args.audiosocket[1])
            await asterisk.start()
        else:
            phone = PhoneService(config, runtime, calls, host=args.sip[0], port=args.sip[1])
            await phone.start()
        service = CampaignService(config, runtime, store, phone=phone, asterisk=asterisk)
        try:
            added = await asyncio.to_thread(service.load, campaign, contacts)
            bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
            runner = service.runner(campaign, on_progress=bar.draw if bar else None)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # finish the calls in progress, dial no more
                loop.add_signal_handler(sig, runner.stop)
            result = await runner.run(until_idle=True)
            if bar:
                bar.done()
            result["added"] = added
            return result
        finally:
            if phone is not None:
                await phone.stop()
            if asterisk is not None:
                await asterisk.stop()

    result = asyncio.run(main())
    report = service_report(store, campaign.name)
    outcomes = {k: v for k, v in report["outcomes"].items() if v}
    print(json.dumps({"campaign": campaign.name, "state": result["state"], "contacts": report["contacts"],
                      "attempts": report["attempts"], "attempts_this_run": result["attempts"],
                      "rows_left_out": len(problems), "outcomes": outcomes}, ensure_ascii=False))
    return 2 if problems else 0  # a contacts file with bad rows is a bad file: the good rows ran


def service_report(store: CampaignStore, name: str) -> dict:
    from .report import build_report

    report = build_report(store, name)
    if report is None:
        raise BadInput(f"no campaign named {name!r}")
    return report


def report(args, config) -> int:
    from .report import format_table

    data = service_report(_store(config), args.name)
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else format_table(data))
    return 0


def control(args, config) -> int:
    """pause / resume / stop: the state in the store, which the campaign's dialer follows (within a second)."""
    store = _store(config)
    if store.state(args.name) is None:
        raise BadInput(f"no campaign named {args.name!r}")
    state = {"pause": "paused", "resume": "running", "stop": "stopped"}[args.campaign_command]
    store.set_state(args.name, state)
    print(json.dumps({"campaign": args.name, "state": state}))
    return 0


def segments(args, config) -> int:
    from ..shop.repository import open_shop
    from . import rfm

    shop = open_shop(config.dialog.shop_db)
    c = config.campaigns
    rfm_config = rfm.RfmConfig(r_quantile=c.r_quantile, f_quantile=c.f_quantile, m_quantile=c.m_quantile)
    scores = rfm.compute_rfm(shop.db_path, shop.today, rfm_config)
    counts = rfm.segment_counts(scores)
    cuts = rfm.thresholds(scores, rfm_config).as_dict()
    if args.json:
        print(json.dumps({"counts": counts, "thresholds": cuts}, ensure_ascii=False))
        return 0
    for seg_id, count in counts.items():
        seg = rfm.segment_by_id(seg_id)
        name = f"{seg.name_zh} / {seg.name_en}" if seg else "no orders"
        print(f"{seg_id:<12} {count:>7}  {name}")
    print("cut points: " + ", ".join(f"{k} {v}" for k, v in cuts.items()))
    return 0


def dnc(args, config) -> int:
    store = _store(config)
    if args.action == "list":
        for row in store.dnc_list():
            print(f"{row['phone']}\t{row['source']}")
        return 0
    if not args.phones:
        raise BadInput(f"dnc {args.action}: give one or more phone numbers")
    phones = []
    for raw in args.phones:
        phone = normalize_phone(raw)
        if phone is None:
            raise BadInput(f"dnc {args.action}: not a phone number: {raw!r}")
        phones.append(phone)
    n = store.dnc_add(phones, "operator") if args.action == "add" else store.dnc_remove(phones)
    print(json.dumps({"action": args.action, "phones": len(phones), "changed": n}))
    return 0


class _ProgressBar:
    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width

    def draw(self, p) -> None:
        filled = int(self.width * p.final / p.total) if p.total else self.width
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {p.final}/{p.total} done, "
                          f"{p.active} calling, {p.attempts} dialled ")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
