"""The rules a marketing dial must pass, checked when the campaign loads and again just before each
dial: the do-not-call list (the store's and the campaign's file), consent, the callee's local
calling window, and a frequency cap across campaigns. The verdict names the rule that allowed or
stopped the dial, for the audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import BadInput
from .spec import Campaign, Contact, phone_key
from .store import CampaignStore


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str  # "ok: window 09:00-21:00 Asia/Shanghai 14:02, consent yes, not on dnc, 0 calls in 7 d" or why not
    outcome: str | None = None  # a final outcome ("dnc", "no_consent") when the contact is never to be called
    retry_at: float | None = None  # when the dial may be tried again (outside the window, capped)


def read_dnc_file(path: str, country_code: str = "86") -> set[str]:
    """The campaign's own do-not-call numbers, one per line ("#" starts a comment), in E.164."""
    if not path:
        return set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"dnc_file {path}: {exc.strerror or exc}") from None
    numbers = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and (key := phone_key(line, country_code)):
            numbers.add(key)
    return numbers


class DialRules:
    def __init__(self, campaign: Campaign, store: CampaignStore, dnc_file_numbers: set[str] | None = None):
        self.campaign = campaign
        self.store = store
        self.dnc_file = dnc_file_numbers if dnc_file_numbers is not None else \
            read_dnc_file(campaign.dnc_file, store.country_code)

    def zone(self, contact: Contact) -> ZoneInfo:
        return ZoneInfo(contact.timezone or self.campaign.timezone)

    def never(self, contact: Contact, dnc: set[str]) -> Verdict | None:
        """The rules that need no clock, against a do-not-call set read once (a campaign's load):
        the final verdict, or None when the contact may be called at some time."""
        key = self.store.key(contact.phone)
        if key in self.dnc_file or key in dnc:
            return Verdict(False, "do-not-call list", "dnc")
        if self.campaign.require_consent and contact.consent == "no":
            return Verdict(False, "no marketing consent", "no_consent")
        return None

    def check(self, contact: Contact, now: float) -> Verdict:
        c = self.campaign
        if self.store.key(contact.phone) in self.dnc_file or self.store.on_dnc(contact.phone):
            return Verdict(False, "do-not-call list", "dnc")
        if c.require_consent and contact.consent == "no":
            return Verdict(False, "no marketing consent", "no_consent")
        zone = self.zone(contact)
        local = datetime.fromtimestamp(now, zone)
        start, end = c.window
        if not (start <= local.time() < end):
            return Verdict(False, f"outside the calling window {start:%H:%M}-{end:%H:%M} ({zone.key} {local:%H:%M})",
                           retry_at=next_window_start(local, start, end).timestamp())
        cap = c.frequency_cap_days
        if cap > 0:
            since = now - cap * 86400
            reached = self.store.people_reached_since(contact.phone, since)
            if reached:
                return Verdict(False, f"frequency cap: reached {reached}x in the last {cap:g} days",
                               retry_at=now + cap * 86400)
        return Verdict(True, f"ok: window {start:%H:%M}-{end:%H:%M} {zone.key} {local:%H:%M}, "
                             f"consent {contact.consent or 'not stated'}, not on dnc, cap {cap:g} d clear")


def next_window_start(local: datetime, start, end) -> datetime:
    """The next moment the window opens, in the callee's zone (today if it is still to come)."""
    today = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return today if local.time() < start else today + timedelta(days=1)


__all__ = ["DialRules", "Verdict", "next_window_start", "read_dnc_file"]
