"""The dialer: works through a campaign's contacts, a few calls at a time, until each one is final
or can only be tried later.

For each contact due: the rules again (do-not-call, consent, the callee's calling window, the
frequency cap) just before the dial; a script variant (random or a bandit, campaigns/experiments.py);
the attempt claimed in the store before the INVITE leaves; the call placed through a `Placer`
(the agent's own SIP stack, or Asterisk Originate over AMI); on answer, answering-machine detection,
then the marketing conversation (dialog/flows/marketing.py); the outcome stored. Busy, no answer and
failed dials are retried after `retry_after_s`, up to `max_attempts`.

    store.due ─► DialRules.check ─► Assigner.choose ─► store.claim ─► Placer.place ─► screen ─► run_call
                                                                                      └─► store.finish / settle
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, Protocol

from ..dialog.flows.marketing import MarketingCall
from ..engine import SessionOptions
from ..errors import VoiceAgentError
from ..record import CallRecord
from ..textnorm import mask_pii
from . import rfm
from .experiments import Assigner, Variant
from .rules import DialRules
from .spec import Campaign
from .store import CampaignStore, ContactRow

log = logging.getLogger(__name__)

RETRYABLE = ("busy", "no_answer", "failed")
LEASE_S = 30.0  # a dialer renews its hold on a campaign every loop; a dead one's runs out
HOLD_S = 600.0  # a claimed contact is not due again for this long, whatever becomes of this process
IN_CALL_RETRY_S = 60.0


class CampaignBusy(VoiceAgentError):
    """Another live process is dialling this campaign."""


@dataclass
class Placed:
    """How a dial went: `status` answered, busy, no_answer, rejected or failed; the call's record when
    answered (None if the call never reached the agent)."""

    status: str
    sip_status: int | None = None
    record: CallRecord | None = None
    detail: str = ""


class Placer(Protocol):
    async def place(self, phone: str, options: SessionOptions, ring_timeout_s: float) -> Placed:
        """Dial; when answered, run the call with `options` (its screen runs first)."""

    def capacity(self) -> int:
        """How many more calls the engine can take now (inbound calls count too)."""


class StoreEffects:
    """What a marketing call changes outside the dialog, written at once (flows/marketing.py)."""

    def __init__(self, store: CampaignStore, campaign: Campaign, row: ContactRow):
        self.store, self.campaign, self.row = store, campaign, row

    def opt_out(self) -> None:
        self.store.dnc_add([self.row.contact.phone], source=f"opt-out on campaign {self.campaign.name}")
        log.info("campaign %s: %s opted out: on the do-not-call list", self.campaign.name, mask_pii(self.row.contact.phone))

    def queue_message(self, text: str) -> None:
        self.store.queue_message(self.campaign.name, self.row.contact.customer_id, self.row.contact.phone, text)

    def book_callback(self, when: str, at: datetime | None) -> None:
        self.store.settle(self.campaign.name, self.row.idx, callback_at=at.isoformat(timespec="minutes") if at else when)


@dataclass
class Progress:
    total: int = 0
    final: int = 0
    active: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class CampaignRunner:
    def __init__(self, campaign: Campaign, store: CampaignStore, placer: Placer, runtime, *,
                 rules: DialRules | None = None, linger_s: float = 600.0, on_progress: Callable[[Progress], None] | None = None,
                 screen_factory: Callable[[MarketingCall], Callable[..., Awaitable]] | None = None,
                 clock: Callable[[], float] = time.time):
        """`linger_s`: once nothing is due, wait for a retry or a window due within this long, else
        end the run (the contacts left wait for a later run). `screen_factory`: the answering-machine
        screen for a call (campaigns/screening.py), None for none."""
        self.campaign = campaign
        self.store = store
        self.placer = placer
        self.runtime = runtime
        self.rules = rules or DialRules(campaign, store)
        self.linger_s = linger_s
        self.on_progress = on_progress
        self.screen_factory = screen_factory
        self.clock = clock
        self.assigner = Assigner([Variant(s.id, s.segments) for s in campaign.scripts], method=campaign.assignment,
                                 seed=campaign.seed)
        self._rng = random.Random(campaign.seed)
        self._active: dict[int, asyncio.Task] = {}
        self._unplaced: set[int] = set()  # dials started that the placer does not count yet
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._wake = asyncio.Event()
        self.attempts = 0
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    # -- control ------------------------------------------------------------------------------
    def pause(self) -> None:
        self._resume.clear()
        self.store.set_state(self.campaign.name, "paused")

    def resume(self) -> None:
        self._resume.set()
        self.store.set_state(self.campaign.name, "running")
        self._wake.set()

    def stop(self) -> None:
        """No new dials; calls in progress finish."""
        self._stop.set()
        self._resume.set()
        self._wake.set()

    # -- the run ------------------------------------------------------------------------------
    async def run(self, until_idle: bool = True) -> dict:
        """Dial until every contact is final (or, `until_idle`, until nothing is due within
        `linger_s`), or until stopped. Raises CampaignBusy when another live process runs it."""
        c, store = self.campaign, self.store
        if await asyncio.to_thread(store.acquire, c.name, self.owner, LEASE_S) is None:
            raise CampaignBusy(f"campaign {c.name} is being dialled by another process ({store.holder(c.name)})")
        try:
            recovered = await asyncio.to_thread(store.recover, c.name, c.retry_after_s, c.max_attempts, self.clock())
            if recovered:
                log.warning("campaign %s: %d attempts were interrupted by a stopped process; settled", c.name, recovered)
            if store.state(c.name) == "paused":
                self._resume.clear()
            store.set_state(c.name, "running" if self._resume.is_set() else "paused")
            try:
                await self._loop(until_idle)
            finally:
                if self._active:
                    await asyncio.gather(*self._active.values(), return_exceptions=True)
            pending = store.next_due(c.name) is not None
            state = "stopped" if self._stop.is_set() else "waiting" if pending else "done"
            store.set_state(c.name, state)
        finally:
            store.release(c.name, self.owner)
        self._report_progress()
        return {"campaign": c.name, "state": state, "attempts": self.attempts}

    async def _loop(self, until_idle: bool) -> None:
        while not self._stop.is_set():
            await asyncio.to_thread(self.store.acquire, self.campaign.name, self.owner, LEASE_S)  # the heartbeat
            await self._follow_stored_state()
            if not self._resume.is_set():
                try:
                    await asyncio.wait_for(self._resume.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            if await self._dial_due():
                continue
            if not self._active and not self._more_to_do(until_idle):
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_s())
            except asyncio.TimeoutError:
                pass

    async def _follow_stored_state(self) -> None:
        """Another process (`voiceagent campaign pause NAME`, the operator API) may have changed the
        campaign's state in the store: follow it."""
        state = await asyncio.to_thread(self.store.state, self.campaign.name)
        if state == "paused" and self._resume.is_set():
            self._resume.clear()
            log.info("campaign %s paused", self.campaign.name)
        elif state == "running" and not self._resume.is_set():
            self._resume.set()
            log.info("campaign %s resumed", self.campaign.name)
        elif state == "stopped":
            self._stop.set()
            self._resume.set()

    def _room(self) -> int:
        engine = self.placer.capacity() - len(self._unplaced)
        return max(0, min(self.campaign.max_concurrent - len(self._active), engine))

    def _sleep_s(self) -> float:
        due = self.store.next_due(self.campaign.name)
        if due is None:
            return 1.0
        return min(max(due - self.clock(), 0.05), 1.0)

    def _more_to_do(self, until_idle: bool) -> bool:
        """Contacts still to try; for a run until idle, only those due within `linger_s`."""
        due = self.store.next_due(self.campaign.name)
        return due is not None and (not until_idle or due - self.clock() <= self.linger_s)

    async def _dial_due(self) -> int:
        room = self._room()
        if room <= 0:
            return 0
        c, started = self.campaign, 0
        now = self.clock()
        for row in await asyncio.to_thread(self.store.due, c.name, now, room * 4, tuple(self._active)):
            if started >= room or self._stop.is_set() or not self._resume.is_set():
                break  # stopped or paused while this batch was read: dial no more of it
            verdict = await asyncio.to_thread(self.rules.check, row.contact, now)
            if not verdict.allowed:  # never (dnc, no consent), or not before retry_at (the window, the cap)
                self.store.settle(c.name, row.idx, outcome=verdict.outcome, next_at=verdict.retry_at, rule=verdict.rule)
                continue
            script = row.script if any(s.id == row.script for s in c.scripts) else self._choose_script(row)
            if script is None:
                self.store.settle(c.name, row.idx, outcome="failed", rule="no script variant fits its segment")
                continue
            attempt, why = await asyncio.to_thread(self.store.claim, c.name, row.idx, script, verdict.rule,
                                                   c.max_attempts, max(c.retry_after_s, HOLD_S), now)
            if attempt is None:
                if why == "exhausted":
                    self.store.settle(c.name, row.idx, outcome="failed", rule="no attempts left")
                elif why == "in_call":  # its number is on a call of another campaign: a little later
                    self.store.settle(c.name, row.idx, next_at=now + IN_CALL_RETRY_S, rule="number in another call")
                continue
            self.attempts += 1
            task = asyncio.create_task(self._attempt(row, script, attempt, row.attempts + 1),
                                       name=f"campaign-{c.name}-{row.idx}")
            self._active[row.idx] = task
            self._unplaced.add(row.idx)
            task.add_done_callback(lambda _t, idx=row.idx: self._done(idx))
            started += 1
        if started:
            self._report_progress()
        return started

    def _done(self, idx: int) -> None:
        self._active.pop(idx, None)
        self._unplaced.discard(idx)
        self._wake.set()
        self._report_progress()

    def _choose_script(self, row: ContactRow) -> str | None:
        segment = row.contact.segment
        if not self.assigner.eligible(segment):
            return None
        stats = self.store.script_stats(self.campaign.name, segment)
        return self.assigner.choose(segment, stats)

    # -- one attempt --------------------------------------------------------------------------
    async def _attempt(self, row: ContactRow, script_id: str, attempt: int, attempt_no: int) -> None:
        """One dial, always concluded in the store: whatever fails here, the contact ends final or
        waits `retry_after_s`, never dialled again at once."""
        c = self.campaign
        talked = False  # answered and screened: someone may have been talked to, never retried
        call: MarketingCall | None = None
        placed = Placed("failed")
        try:
            call = self.marketing_call(row, script_id)
            options = SessionOptions(language=call.language, customer_id=row.contact.customer_id or None,
                                     greeting=True, marketing=call, handoff_target=c.sales_queue)
            detect = self.screen_factory(call) if c.amd and self.screen_factory is not None else None

            async def answered(leg):
                nonlocal talked
                await asyncio.to_thread(self.store.answered, attempt)  # before anyone is talked to
                screened = await detect(leg) if detect is not None else (leg, None)
                talked = screened[0] is not None  # the agent speaks to whoever this is
                return screened

            options.screen = answered
            self._unplaced.discard(row.idx)  # the placer counts it from here (place() runs to its first await)
            placed = await self.placer.place(row.contact.phone, options, c.ring_timeout_s)
        except Exception as exc:  # a crashed dial never takes the campaign down
            log.exception("campaign %s: dialling contact %s failed", c.name, row.contact.ref)
            placed = Placed("answered" if talked else "failed", detail=f"{type(exc).__name__}: {exc}")
        finally:
            outcome, person = self._outcome(placed, call, talked)
            retry = outcome in RETRYABLE and attempt_no < c.max_attempts and not talked
            record = placed.record
            detail = {"amd": call.amd if call else None, "notes": call.notes if call else [],
                      "coupon_id": call.coupon_id if call else None, "detail": placed.detail, "attempt_no": attempt_no}
            try:
                await asyncio.shield(asyncio.to_thread(
                    self.store.conclude, attempt, outcome, final=not retry,
                    retry_at=self.clock() + c.retry_after_s if retry else None, sip_status=placed.sip_status,
                    call_id=record.call_id if record is not None else None, person=person, detail=detail,
                    rule=f"retry after {outcome}" if retry else None))
            except Exception:  # the store is down: the claim's hold keeps the contact from a redial
                log.exception("campaign %s: storing attempt %d failed", c.name, attempt)
            log.info("campaign %s: contact %s attempt %d: %s", c.name, row.contact.ref, attempt_no, outcome)
            from ..ops import live as operators  # counted where the operators' metrics are (serve)

            if operators.current() is not None:
                operators.current().campaign_attempt(c.name, outcome)

    @staticmethod
    def _outcome(placed: Placed, call: MarketingCall | None, talked: bool) -> tuple[str, bool]:
        """The attempt's outcome, and whether a person was talked to."""
        if placed.status != "answered":
            return placed.status if placed.status in ("busy", "no_answer", "rejected") else "failed", False
        amd = (call.amd or {}) if call is not None else {}
        if amd.get("verdict") == "machine":
            return "machine", False
        if amd.get("verdict") == "gone":  # hung up before saying a word
            return "no_answer", False
        if placed.record is None or call is None:  # answered, but the call never reached the agent
            return "failed", talked
        if call.outcome == "transferred" and placed.record.outcome.transfer_ok is False:
            return "callback", True  # the sales queue did not answer: a callback ticket was booked
        if call.outcome is not None:
            return call.outcome, True
        if placed.record.outcome.handoff:
            return "transferred", True
        return "declined", True  # a person answered and hung up without a yes: they did not take it

    def marketing_call(self, row: ContactRow, script_id: str) -> MarketingCall:
        c, contact = self.campaign, row.contact
        script = next(s for s in c.scripts if s.id == script_id)
        pitch = script.pitch
        if pitch == "auto":  # by segment: the best customers hear of new arrivals first, the rest are won back
            segment = rfm.segment_by_id(contact.segment or "")
            pitch = {"new_arrivals": "new_arrivals", "welcome": "thanks"}.get(segment.action, "coupon") if segment \
                else "coupon"
        shop = self.runtime.shop if self.runtime is not None else None
        customer = shop.customer(contact.customer_id) if shop is not None and contact.customer_id else None
        product = _new_arrival(shop, self._rng) if pitch == "new_arrivals" and shop is not None else None
        policy = shop.coupon_policy if shop is not None else None
        return MarketingCall(
            campaign=c.name, script=script_id, pitch=pitch, language=contact.language or c.language,
            offer_amount=c.offer.amount, offer_min_spend=c.offer.min_spend if c.offer.min_spend is not None
            else (policy.min_spend if policy else None), offer_valid_days=c.offer.valid_days,
            customer_name=contact.name or (customer.name if customer else ""), segment=contact.segment,
            product=product, sales_target=c.sales_queue, timezone=contact.timezone or c.timezone,
            effects=StoreEffects(self.store, c, row))

    def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        counts = self.store.counts(self.campaign.name)
        total = sum(counts.values())
        self.on_progress(Progress(total, total - counts.get("pending", 0), len(self._active), self.attempts, counts))


def _new_arrival(shop, rng: random.Random) -> tuple[str, str, str, float] | None:
    """A product to offer first (the catalog's newest items are its last rows)."""
    products = shop.products()
    if not products:
        return None
    p = rng.choice(products[-4:])
    return (p.sku, p.name_zh, p.name_en, float(p.price))


__all__ = ["CampaignBusy", "CampaignRunner", "Placed", "Placer", "Progress", "StoreEffects"]
