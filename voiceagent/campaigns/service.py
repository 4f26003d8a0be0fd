"""Campaigns as the product runs them: loaded from their files (or the operator API), contacts given
their RFM segment, the do-not-call list and consent applied at load, and each campaign's dialer run
on the process's SIP stack or Asterisk. `voiceagent campaign run` uses one for one campaign;
`voiceagent serve` keeps one for the operator API (/api/ops/campaigns)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Callable

from ..dialog.flows.marketing import voicemail_message
from ..errors import BadInput
from . import rfm
from .dialer import CampaignRunner, Progress
from .placers import AsteriskPlacer, SipPlacer
from .report import build_report
from .rules import DialRules
from .screening import screener
from .spec import Campaign, Contact
from .store import CampaignStore

log = logging.getLogger(__name__)


class CampaignService:
    def __init__(self, config, runtime, store: CampaignStore, phone=None, asterisk=None):
        """`phone`: a started PhoneService (for sip: dial templates); `asterisk`: a started
        AsteriskService with AMI (for asterisk: templates)."""
        self.config = config
        self.runtime = runtime
        self.store = store
        self.phone = phone
        self.asterisk = asterisk
        self.runners: dict[str, CampaignRunner] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self._segments: dict[str, str] | None = None

    # -- loading ------------------------------------------------------------------------------
    def segments(self) -> dict[str, str]:
        """customer_id -> RFM segment, computed once per service from the shop's orders."""
        if self._segments is None:
            shop = self.runtime.shop
            c = self.config.campaigns
            scores = rfm.compute_rfm(shop.db_path, shop.today, rfm.RfmConfig(
                r_quantile=c.r_quantile, f_quantile=c.f_quantile, m_quantile=c.m_quantile))
            self._segments = {cid: r.segment for cid, r in scores.items() if r.segment}
        return self._segments

    def contacts_for(self, campaign: Campaign, contacts: list[Contact] | None) -> list[Contact]:
        """The campaign's contacts with their customer and segment: from the file (matched to the
        shop's customers by phone when they carry no id), or the shop's customers in `segments`."""
        shop = self.runtime.shop
        segments = self.segments()
        if contacts is None:
            if not campaign.segments:
                raise BadInput(f"campaign {campaign.name}: no contacts: give a contacts file or `segments`")
            unknown = [s for s in campaign.segments if s not in rfm.SEGMENT_IDS]
            if unknown:
                raise BadInput(f"campaign {campaign.name}: unknown segment {unknown[0]!r} "
                               f"(segments: {', '.join(rfm.SEGMENT_IDS)})")
            wanted = set(campaign.segments)
            out = []
            for cid in sorted(cid for cid, seg in segments.items() if seg in wanted):
                customer = shop.customer(cid)
                if customer is not None and customer.phone:
                    out.append(Contact(cid, customer.phone, cid, customer.name, customer.language or "", "", "",
                                       segments[cid]))
            return out
        out = []
        for contact in contacts:
            cid = contact.customer_id
            if not cid and shop is not None:
                found = shop.customer_by_phone(contact.phone)
                cid = found.customer_id if found else ""
            out.append(replace(contact, customer_id=cid, segment=segments.get(cid)))
        return out

    def load(self, campaign: Campaign, contacts: list[Contact] | None) -> int:
        """Store the campaign and its new contacts; those never to be called (on the do-not-call list,
        no consent) are settled at once. Returns how many contacts were added."""
        self.check_offer(campaign)
        contacts = self.contacts_for(campaign, contacts)
        added = self.store.save_campaign(campaign, contacts)
        rules, dnc = DialRules(campaign, self.store), self.store.dnc_numbers()
        never = []
        for row in self.store.due(campaign.name, float("inf"), 10**9):
            verdict = rules.never(row.contact, dnc) if row.attempts == 0 else None
            if verdict is not None:  # dnc or no consent: final before any dial
                never.append((row.idx, verdict.outcome, verdict.rule))
        self.store.settle_many(campaign.name, never)
        return added

    def check_offer(self, campaign: Campaign) -> None:
        """The offer must fit the shop's coupon policy, or every "yes" would be a coupon refused."""
        policy = self.runtime.shop.coupon_policy
        offer = campaign.offer
        if offer.amount > policy.max_campaign_amount:
            raise BadInput(f"campaign {campaign.name}: offer.amount {offer.amount:g} is over the shop's campaign coupon "
                           f"limit of {policy.max_campaign_amount:g}")
        if offer.min_spend is not None and offer.min_spend < policy.min_spend:
            raise BadInput(f"campaign {campaign.name}: offer.min_spend {offer.min_spend:g} is under the shop's minimum "
                           f"spend of {policy.min_spend:g}")

    # -- running ------------------------------------------------------------------------------
    def runner(self, campaign: Campaign, on_progress: Callable[[Progress], None] | None = None) -> CampaignRunner:
        c = self.config.campaigns
        if campaign.via_asterisk:
            if self.asterisk is None or self.asterisk.ami is None:
                raise BadInput(f"campaign {campaign.name}: dial {campaign.dial!r} needs Asterisk AMI "
                               "([asterisk] ami_host) and `serve --audiosocket`")
            placer = AsteriskPlacer(self.asterisk, campaign.dial, c.engine_calls)
        else:
            if self.phone is None:
                raise BadInput(f"campaign {campaign.name}: dial {campaign.dial!r} needs the SIP side (--sip)")
            placer = SipPlacer(self.phone, campaign.dial, c.engine_calls)

        def screen(call):
            return screener(self.runtime, call, campaign.on_machine, message=voicemail_message(call))

        runner = CampaignRunner(campaign, self.store, placer, self.runtime, linger_s=c.linger_s,
                                on_progress=on_progress, screen_factory=screen)
        self.runners[campaign.name] = runner
        return runner

    def start(self, campaign: Campaign) -> None:
        """Run a campaign in the background (serve): it keeps going, retries included, until stopped."""
        if campaign.name in self.tasks and not self.tasks[campaign.name].done():
            return
        runner = self.runner(campaign)
        task = asyncio.create_task(runner.run(until_idle=False), name=f"campaign-{campaign.name}")
        task.add_done_callback(_log_end)
        self.tasks[campaign.name] = task

    async def control(self, name: str, action: str) -> str:
        """Pause, resume or stop a campaign (every worker follows the stored state); returns its state.
        The store is read and written off the event loop: calls' audio runs on it."""
        runner = self.runners.get(name)
        store = self.store
        if await asyncio.to_thread(store.state, name) is None:
            raise KeyError(name)
        if action == "pause":
            if runner is not None:
                runner.pause()
                await runner.state_written()
            else:
                await asyncio.to_thread(store.set_state, name, "paused")
        elif action == "resume":
            task = self.tasks.get(name)
            if runner is not None and task is not None and not task.done():
                runner.resume()
                await runner.state_written()
            else:
                await asyncio.to_thread(store.set_state, name, "running")
                campaign = await asyncio.to_thread(store.campaign, name)
                self.start(campaign)
        elif action == "stop":
            if runner is not None:
                runner.stop()
                await runner.state_written()
            await asyncio.to_thread(store.set_state, name, "stopped")
        else:
            raise ValueError(action)
        return await asyncio.to_thread(store.state, name)

    def report(self, name: str) -> dict | None:
        return build_report(self.store, name)

    async def close(self, wait_s: float = 5.0) -> None:
        """No new dials from this worker; its campaigns stay running for the other workers (and for this
        one when it starts again). Calls still going after `wait_s` end with the process (their attempts
        are settled when their leases run out, or when this worker runs the campaign again)."""
        for runner in self.runners.values():
            runner.leave()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=wait_s)


def _log_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("campaign %s ended: %s", task.get_name(), task.exception())
