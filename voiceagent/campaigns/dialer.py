"""The dialer: works through a campaign's contacts, a few calls at a time, until each one is final
or can only be tried later.

Several dialers (one per worker, over one Postgres store) may run the same campaign: each leases the
contacts it dials (campaigns/store.py), so none is dialled by two, `max_concurrent` holds across all
of them, and a dead worker's contacts come back when their leases run out. Pause, resume and stop are
the campaign's state in the store, which every dialer follows; a worker shutting down leaves the
campaign to the others (`leave`).

For each contact leased: the rules again (do-not-call, consent, the callee's calling window, the
frequency cap) just before the dial; a script variant (random or a bandit, campaigns/experiments.py);
the attempt claimed in the store before the INVITE leaves; the call placed through a `Placer`
(the agent's own SIP stack, or Asterisk Originate over AMI); on answer, answering-machine detection,
then the marketing conversation (dialog/flows/marketing.py); the outcome stored. Busy, no answer and
failed dials are retried after `retry_after_s`, up to `max_attempts`.

    store.lease ─► DialRules.check ─► Assigner.choose ─► store.claim ─► Placer.place ─► screen ─► run_call
                                                                                      └─► store.finish / settle
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, Protocol

from ..dialog.flows.marketing import MarketingCall
from ..engine import SessionOptions
from ..record import CallRecord
from ..textnorm import mask_pii
from . import rfm
from .experiments import Assigner, Variant
from .rules import DialRules
from .spec import Campaign
from .store import LEASE_S, CampaignStore, ContactRow, lease_holder

log = logging.getLogger(__name__)

RETRYABLE = ("busy", "no_answer", "failed")
HOLD_S = 600.0  # a claimed contact is not due again for this long, whatever becomes of this process
IN_CALL_RETRY_S = 60.0


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
                 clock: Callable[[], float] = time.time, worker: str = "", lease_s: float = LEASE_S):
        """`linger_s`: once nothing is due, wait for a retry or a window due within this long, else
        end the run (the contacts left wait for a later run). `screen_factory`: the answering-machine
        screen for a call (campaigns/screening.py), None for none. `worker`: the worker name this
        dialer's attempts are audited under (default: the store's, [cluster] worker); its leases are
        held under its own id (`store.lease_holder`), so another process under the same name never
        takes them. `lease_s`: how long a contact stays this dialer's without a renewal (renewed
        every third)."""
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
        self.worker = worker or store.worker
        self.holder = lease_holder(self.worker)
        self.lease_s = lease_s
        self._leaving = False
        # the store's state written by pause/resume/stop, one after another in a thread (never on the
        # loop); the loop reads the stored state only once they are in
        self._state_write: asyncio.Task | None = None
        self._progress: asyncio.Task | None = None
        self._progress_again = False

    # -- control ------------------------------------------------------------------------------
    def pause(self) -> None:
        self._resume.clear()
        self._write_state("paused")

    def resume(self) -> None:
        self._resume.set()
        self._write_state("running")
        self._wake.set()

    def stop(self) -> None:
        """The campaign stops, on every worker (the stored state): no new dials; calls in progress finish."""
        self._write_state("stopped")
        self._halt()

    def _write_state(self, state: str) -> None:
        """The campaign's stored state, written off the event loop, after any written before it (a
        pause then a resume land in that order). Without a running loop: written here and now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.store.set_state(self.campaign.name, state)
            return
        before = self._state_write

        async def write() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            try:
                await asyncio.to_thread(self.store.set_state, self.campaign.name, state)
            except Exception:
                log.exception("campaign %s: storing its state %s failed", self.campaign.name, state)

        self._state_write = loop.create_task(write(), name=f"campaign-{self.campaign.name}-state")

    async def state_written(self) -> None:
        """Wait until the states pause, resume and stop set are in the store."""
        while self._state_write is not None and not self._state_write.done():
            await asyncio.shield(self._state_write)

    def leave(self) -> None:
        """This dialer stops (its worker shuts down); the campaign goes on with the others, or with this
        worker when it starts again. Calls in progress finish."""
        self._leaving = True
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        self._resume.set()
        self._wake.set()

    # -- the run ------------------------------------------------------------------------------
    async def run(self, until_idle: bool = True) -> dict:
        """Dial until every contact is final (or, `until_idle`, until nothing is due within
        `linger_s`), or until stopped. Other dialers may run the same campaign at the same time."""
        c, store = self.campaign, self.store
        # what this worker's previous life left (killed mid-call), and open attempts nobody holds
        # (another process's live leases are left alone whatever its worker's name: its own id holds them)
        recovered = await asyncio.to_thread(store.recover, c.name, c.retry_after_s, c.max_attempts, self.clock())
        if recovered:
            log.warning("campaign %s: %d attempts were interrupted by a stopped process; settled", c.name, recovered)
        await self.state_written()
        if await asyncio.to_thread(store.state, c.name) == "paused":
            self._resume.clear()
        await asyncio.to_thread(store.set_state, c.name, "running" if self._resume.is_set() else "paused")
        renewing = asyncio.create_task(self._renew_leases(), name=f"campaign-{c.name}-leases")
        try:
            try:
                await self._loop(until_idle)
            finally:
                if self._active:
                    await asyncio.gather(*self._active.values(), return_exceptions=True)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.state_written()
        if self._leaving:
            state = await asyncio.to_thread(store.state, c.name) or "gone"
        elif self._stop.is_set():
            state = "stopped"
        else:
            state = await asyncio.to_thread(store.end_run, c.name, self.holder)
        if self._progress is not None:
            with contextlib.suppress(Exception):
                await self._progress
        await self._report_progress_now()
        return {"campaign": c.name, "state": state, "attempts": self.attempts, "worker": self.worker}

    async def _loop(self, until_idle: bool) -> None:
        while not self._stop.is_set():
            await self._follow_stored_state()
            if not self._resume.is_set():
                try:
                    await asyncio.wait_for(self._resume.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            if await self._dial_due():
                continue
            due = await self._next_due()
            if not self._active and not self._more_to_do(due, until_idle):
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_s(due))
            except asyncio.TimeoutError:
                pass

    async def _renew_leases(self) -> None:
        """Keep the contacts in call this dialer's while their calls last: a call outlives a lease."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = tuple(self._active)
            if not held:
                continue
            try:
                kept = await asyncio.to_thread(self.store.renew, self.campaign.name, self.holder, held, self.lease_s)
            except Exception:  # the store is down: the calls go on; their leases may run out meanwhile
                log.exception("campaign %s: renewing %d leases failed", self.campaign.name, len(held))
                continue
            if kept < len(held):  # concluded meanwhile, or (a stall past the lease) settled by another dialer
                log.info("campaign %s: %d of %d contacts no longer held by %s", self.campaign.name,
                         len(held) - kept, len(held), self.worker)

    async def _follow_stored_state(self) -> None:
        """Another process (`voiceagent campaign pause NAME`, the operator API) may have changed the
        campaign's state in the store: follow it (once this dialer's own writes are in)."""
        await self.state_written()
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
        elif state == "waiting" and self._resume.is_set():  # another dialer's run ended; this one goes on
            await asyncio.to_thread(self.store.set_state, self.campaign.name, "running", ("waiting",))

    def _room(self) -> int:
        """What this dialer's engine could take now; the store holds `max_concurrent` (as stored now,
        not as this dialer read it at start) across every dialer, this one's calls included."""
        return max(0, self.placer.capacity() - len(self._unplaced))

    async def _next_due(self) -> float | None:
        """When a contact may next be due, on this dialer's clock."""
        return await asyncio.to_thread(self.store.next_due, self.campaign.name, self.clock())

    def _sleep_s(self, due: float | None) -> float:
        if due is None:
            return 1.0
        return min(max(due - self.clock(), 0.05), 1.0)

    def _more_to_do(self, due: float | None, until_idle: bool) -> bool:
        """Contacts still to try; for a run until idle, only those due within `linger_s`."""
        return due is not None and (not until_idle or due - self.clock() <= self.linger_s)

    async def _dial_due(self) -> int:
        """Lease what this dialer has room for and dial it. Returns how many contacts moved on (dialled,
        or settled by the rules): none, and the loop waits."""
        room = self._room()
        if room <= 0:
            return 0
        c, store, holder = self.campaign, self.store, self.holder
        now = self.clock()
        rows = await asyncio.to_thread(store.lease, c, holder, room, now, self.lease_s)

        async def settle(idx: int, **where) -> None:  # and give its lease back
            await asyncio.to_thread(store.settle, c.name, idx, holder=holder, **where)

        started = moved = 0
        for i, row in enumerate(rows):
            if self._stop.is_set() or not self._resume.is_set():
                for rest in rows[i:]:  # stopped or paused while this batch was leased: the rest go back
                    await settle(rest.idx)
                break
            verdict = await asyncio.to_thread(self.rules.check, row.contact, now)
            if not verdict.allowed:  # never (dnc, no consent), or not before retry_at (the window, the cap)
                await settle(row.idx, outcome=verdict.outcome, next_at=verdict.retry_at, rule=verdict.rule)
                moved += 1
                continue
            script = row.script if any(s.id == row.script for s in c.scripts) else await self._choose_script(row)
            if script is None:
                await settle(row.idx, outcome="failed", rule="no script variant fits its segment")
                moved += 1
                continue
            attempt, why = await asyncio.to_thread(store.claim, c.name, row.idx, script, verdict.rule,
                                                   c.max_attempts, max(c.retry_after_s, HOLD_S), now, holder)
            if attempt is None:
                if why == "exhausted":
                    await settle(row.idx, outcome="failed", rule="no attempts left")
                elif why == "dnc":  # put on the list since the rules were read (an opt-out on another call)
                    await settle(row.idx, outcome="dnc", rule="do-not-call list")
                elif why == "in_call":  # its number is on a call of another campaign: a little later
                    await settle(row.idx, next_at=now + IN_CALL_RETRY_S, rule="number in another call")
                else:  # the lease ran out under us and another dialer has it
                    await settle(row.idx)
                    continue
                moved += 1
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
        return started + moved

    def _done(self, idx: int) -> None:
        self._active.pop(idx, None)
        self._unplaced.discard(idx)
        self._wake.set()
        self._report_progress()

    async def _choose_script(self, row: ContactRow) -> str | None:
        segment = row.contact.segment
        if not self.assigner.eligible(segment):
            return None
        stats = await asyncio.to_thread(self.store.script_stats, self.campaign.name, segment)
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
            except Exception:  # the store is down: the claim's hold and the lease keep the contact from a redial
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
        """Progress reported soon, the counts read off the loop; reports asked for while one is being
        read make one more after it."""
        if self.on_progress is None:
            return
        if self._progress is not None and not self._progress.done():
            self._progress_again = True
            return
        self._progress = asyncio.get_running_loop().create_task(self._report_progress_soon())

    async def _report_progress_soon(self) -> None:
        self._progress_again = True
        while self._progress_again:
            self._progress_again = False
            try:
                await self._report_progress_now()
            except Exception:  # the store is down: progress is a display, the calls go on
                log.exception("campaign %s: reading its progress failed", self.campaign.name)
                return

    async def _report_progress_now(self) -> None:
        if self.on_progress is None:
            return
        counts = await asyncio.to_thread(self.store.counts, self.campaign.name)
        total = sum(counts.values())
        self.on_progress(Progress(total, total - counts.get("pending", 0), len(self._active), self.attempts, counts))


def _new_arrival(shop, rng: random.Random) -> tuple[str, str, str, float] | None:
    """A product to offer first (the catalog's newest items are its last rows)."""
    products = shop.products()
    if not products:
        return None
    p = rng.choice(products[-4:])
    return (p.sku, p.name_zh, p.name_en, float(p.price))


__all__ = ["CampaignRunner", "Placed", "Placer", "Progress", "StoreEffects"]
