"""The campaign file (CAMPAIGN.toml) and the contacts file (CONTACTS.csv), as SPEC.md fixes them.

A campaign file with an unknown key, a value of the wrong kind or an impossible window is refused
whole (`BadInput`, exit 2: one line naming the key). A contacts file without a `phone` column is
refused whole too; a bad row (a malformed phone, an unknown time zone, a duplicate) is left out
with one line naming its line number, and the good rows run.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import read_toml
from ..errors import BadInput

PHONE = re.compile(r"^\+?[0-9]{5,15}$")
_PHONE_NOISE = re.compile(r"[\s\-().]")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ON_MACHINE = ("hangup", "message")
ASSIGNMENTS = ("random", "thompson")
PITCHES = ("auto", "coupon", "new_arrivals", "thanks")
CONTACT_COLUMNS = ("ref", "phone", "customer_id", "name", "language", "timezone", "consent")


@dataclass(frozen=True)
class Script:
    """A script variant, A/B tested: which segments it may be given to, and its angle."""

    id: str
    segments: tuple[str, ...] = ()  # empty: any segment
    pitch: str = "auto"  # "auto": by segment (new arrivals for the best customers, a coupon to win back the rest)


@dataclass(frozen=True)
class Offer:
    kind: str = "coupon"
    amount: float = 20.0
    min_spend: float | None = None  # None: the shop's coupon policy
    valid_days: int | None = None


@dataclass(frozen=True)
class Campaign:
    name: str
    dial: str  # "sip:{phone}@host:port" or "asterisk:PJSIP/{phone}@trunk"
    language: str = "zh"
    timezone: str = "Asia/Shanghai"
    window: tuple[time, time] = (time(9, 0), time(21, 0))
    max_attempts: int = 3
    retry_after_s: float = 3600.0
    ring_timeout_s: float = 25.0
    max_concurrent: int = 2
    require_consent: bool = True
    dnc_file: str = ""
    on_machine: str = "hangup"
    segments: tuple[str, ...] = ()
    offer: Offer = field(default_factory=Offer)
    scripts: tuple[Script, ...] = (Script("A"),)
    # beyond SPEC's keys: what a dialer also needs
    assignment: str = "random"  # how contacts are given script variants: "random" or "thompson" (a bandit)
    frequency_cap_days: float = 7.0  # one marketing call answered per customer per this many days, all campaigns
    sales_queue: str = "sales-queue"  # where "I want to talk to a person" goes
    amd: bool = True  # answering-machine detection after answer
    seed: int | None = None  # script assignment's random seed (tests, reproducible runs)

    @property
    def via_asterisk(self) -> bool:
        return self.dial.startswith("asterisk:")

    def to_dict(self) -> dict:
        return {"name": self.name, "dial": self.dial, "language": self.language, "timezone": self.timezone,
                "window": [self.window[0].strftime("%H:%M"), self.window[1].strftime("%H:%M")],
                "max_attempts": self.max_attempts, "retry_after_s": self.retry_after_s,
                "ring_timeout_s": self.ring_timeout_s, "max_concurrent": self.max_concurrent,
                "require_consent": self.require_consent, "dnc_file": self.dnc_file, "on_machine": self.on_machine,
                "segments": list(self.segments),
                "offer": {k: v for k, v in vars(self.offer).items() if v is not None},
                "scripts": [{"id": s.id, "segments": list(s.segments), "pitch": s.pitch} for s in self.scripts],
                "assignment": self.assignment, "frequency_cap_days": self.frequency_cap_days,
                "sales_queue": self.sales_queue, "amd": self.amd, **({"seed": self.seed} if self.seed is not None else {})}


def _hhmm(value, key: str) -> time:
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value):
        raise BadInput(f"campaign: {key} must be \"HH:MM\", got {value!r}")
    h, m = map(int, value.split(":"))
    if h > 23 or m > 59:
        raise BadInput(f"campaign: {key} is not a time of day: {value!r}")
    return time(h, m)


def _number(data: dict, key: str, kind=float, minimum: float | None = None, source: str = "campaign"):
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadInput(f"{source}: {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadInput(f"{source}: {key} must be at least {minimum}, got {value!r}")
    return kind(value)


def _strings(value, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"campaign: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def campaign_from_dict(data: dict, source: str = "campaign") -> Campaign:
    """A campaign from its TOML (or the operator API's JSON) table; BadInput names the first bad key."""
    known = {f for f in Campaign.__dataclass_fields__}
    for key in data:
        if key not in known:
            raise BadInput(f"{source}: unknown key {key!r}")
    for key in ("name", "dial"):
        if not isinstance(data.get(key), str) or not data.get(key):
            raise BadInput(f"{source}: {key!r} is required (a string)")
    name = data["name"]
    if not NAME.match(name):
        raise BadInput(f"{source}: name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
    dial = data["dial"]
    if "{phone}" not in dial or not (dial.startswith("sip:") or dial.startswith("asterisk:")):
        raise BadInput(f"{source}: dial must be a SIP URI template with {{phone}} (sip:{{phone}}@host:port) "
                       f"or asterisk:CHANNEL/{{phone}}@trunk, got {dial!r}")
    kw: dict = {"name": name, "dial": dial}
    if "language" in data:
        if data["language"] not in ("zh", "en"):
            raise BadInput(f"{source}: language must be \"zh\" or \"en\", got {data['language']!r}")
        kw["language"] = data["language"]
    if "timezone" in data:
        kw["timezone"] = data["timezone"]
        if not _zone(data["timezone"]):
            raise BadInput(f"{source}: timezone: unknown time zone {data['timezone']!r}")
    if "window" in data:
        w = data["window"]
        if not isinstance(w, list) or len(w) != 2:
            raise BadInput(f"{source}: window must be [\"HH:MM\", \"HH:MM\"], got {w!r}")
        start, end = _hhmm(w[0], "window[0]"), _hhmm(w[1], "window[1]")
        if end <= start:
            raise BadInput(f"{source}: window {w[0]}-{w[1]} is impossible: it must end after it starts, the same day")
        kw["window"] = (start, end)
    for key, kind, minimum in (("max_attempts", int, 1), ("retry_after_s", float, 0), ("ring_timeout_s", float, 1),
                               ("max_concurrent", int, 1), ("frequency_cap_days", float, 0)):
        if key in data:
            kw[key] = _number(data, key, kind, minimum, source)
    for key in ("require_consent", "amd"):
        if key in data:
            if not isinstance(data[key], bool):
                raise BadInput(f"{source}: {key} must be true or false, got {data[key]!r}")
            kw[key] = data[key]
    for key, allowed in (("on_machine", ON_MACHINE), ("assignment", ASSIGNMENTS)):
        if key in data:
            if data[key] not in allowed:
                raise BadInput(f"{source}: {key} must be one of {', '.join(allowed)}, got {data[key]!r}")
            kw[key] = data[key]
    for key in ("dnc_file", "sales_queue"):
        if key in data:
            if not isinstance(data[key], str):
                raise BadInput(f"{source}: {key} must be a string")
            kw[key] = data[key]
    if "seed" in data:
        kw["seed"] = _number(data, "seed", int, None, source)
    if "segments" in data:
        kw["segments"] = _strings(data["segments"], "segments")
    if "offer" in data:
        kw["offer"] = _offer(data["offer"], source)
    if "scripts" in data:
        kw["scripts"] = _scripts(data["scripts"], source)
    return Campaign(**kw)


def _offer(value, source: str) -> Offer:
    if not isinstance(value, dict):
        raise BadInput(f"{source}: offer must be a table, got {value!r}")
    known = set(Offer.__dataclass_fields__)
    for key in value:
        if key not in known:
            raise BadInput(f"{source}: unknown key offer.{key}")
    if value.get("kind", "coupon") != "coupon":
        raise BadInput(f"{source}: offer.kind: only \"coupon\" is supported, got {value.get('kind')!r}")
    kw = {"kind": "coupon"}
    for key, kind, minimum in (("amount", float, 0.01), ("min_spend", float, 0), ("valid_days", int, 1)):
        if key in value:
            kw[key] = _number(value, key, kind, minimum, f"{source}: offer")
    return Offer(**kw)


def _scripts(value, source: str) -> tuple[Script, ...]:
    if not isinstance(value, list) or not value:
        raise BadInput(f"{source}: scripts must be a non-empty list of [[scripts]] tables")
    scripts, seen = [], set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadInput(f"{source}: scripts[{i}] must be a table")
        for key in item:
            if key not in ("id", "segments", "pitch"):
                raise BadInput(f"{source}: unknown key scripts[{i}].{key}")
        sid = item.get("id")
        if not isinstance(sid, str) or not sid:
            raise BadInput(f"{source}: scripts[{i}].id is required (a string)")
        if sid in seen:
            raise BadInput(f"{source}: scripts[{i}].id {sid!r} repeats")
        seen.add(sid)
        pitch = item.get("pitch", "auto")
        if pitch not in PITCHES:
            raise BadInput(f"{source}: scripts[{i}].pitch must be one of {', '.join(PITCHES)}, got {pitch!r}")
        scripts.append(Script(sid, _strings(item.get("segments", []), f"scripts[{i}].segments"), pitch))
    return tuple(scripts)


def load_campaign(path: str | Path) -> Campaign:
    return campaign_from_dict(read_toml(path, "campaign file", BadInput), source=str(path))


# -- contacts ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    ref: str
    phone: str  # digits, a leading + kept
    customer_id: str = ""
    name: str = ""
    language: str = ""  # "" : the campaign's
    timezone: str = ""  # "" : the campaign's
    consent: str = ""  # "yes", "no" or "" (not stated)
    segment: str | None = None


def _zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False


def normalize_phone(raw: str) -> str | None:
    """The number as it is dialled: digits with an optional leading +, 5 to 15 of them (E.164's
    limit), spaces, dashes, dots and brackets dropped; None when it is not a number."""
    phone = _PHONE_NOISE.sub("", raw or "")
    return phone if PHONE.match(phone) else None


def phone_key(raw: str, country_code: str = "86") -> str | None:
    """The number in E.164 ("+8613800000001"), whatever way it was written: "+86 138 0000 0001",
    "008613800000001", "13800000001" (a national number: `country_code` is put in front),
    "010-12345678" (a trunk 0 dropped). What the do-not-call list, the frequency cap and duplicates
    compare; None when it is not a number."""
    phone = normalize_phone(raw)
    if phone is None:
        return None
    if phone.startswith("+"):
        digits = phone[1:]
    elif phone.startswith("00"):
        digits = phone[2:]
    elif phone.startswith("0"):
        digits = country_code + phone[1:]
    elif phone.startswith(country_code) and len(phone) > 11:  # written with its country code, no +
        digits = phone
    else:
        digits = country_code + phone
    return "+" + digits


@dataclass
class ContactsFile:
    contacts: list[Contact]
    problems: list[str]  # one line per row left out


def load_contacts(path: str | Path, country_code: str = "86") -> ContactsFile:
    """Read CONTACTS.csv. Raises BadInput for a file that cannot be read or has no `phone` column."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BadInput(f"cannot read contacts file {path}: {exc.strerror or exc}") from None
    with handle:
        return _read(handle, str(path), country_code)


def parse_contacts_text(text: str, source: str = "contacts", country_code: str = "86") -> ContactsFile:
    """The same, from CSV text (the operator API's body)."""
    return _read(io.StringIO(text.lstrip("\ufeff"), newline=""), source, country_code)


def _read(handle, source: str, country_code: str) -> ContactsFile:
    reader = csv.DictReader(handle)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "phone" not in header:
            raise BadInput(f"{source}: no 'phone' column in the header (columns: {', '.join(CONTACT_COLUMNS)})")
        unknown = [h for h in header if h not in CONTACT_COLUMNS]
        if unknown:
            raise BadInput(f"{source}: unknown column {unknown[0]!r} (columns: {', '.join(CONTACT_COLUMNS)})")
        reader.fieldnames = header
        return _rows(reader, source, country_code)
    except UnicodeDecodeError:
        raise BadInput(f"{source}: not UTF-8 text") from None
    except csv.Error as exc:
        raise BadInput(f"{source}: line {reader.line_num}: {exc}") from None


def _rows(reader: csv.DictReader, source: str, country_code: str) -> ContactsFile:
    contacts: list[Contact] = []
    problems: list[str] = []
    seen_phone: dict[str, int] = {}
    seen_ref: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:  # more fields than the header
            problems.append(f"{source}: line {line}: {len(row) - 1 + len(row[None])} fields, the header has {len(row) - 1}")
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue  # a blank line
        phone = normalize_phone(values.get("phone", ""))
        if phone is None:
            problems.append(f"{source}: line {line}: malformed phone {values.get('phone', '')!r}")
            continue
        tz = values.get("timezone", "")
        if tz and not _zone(tz):
            problems.append(f"{source}: line {line}: unknown time zone {tz!r}")
            continue
        lang = values.get("language", "").lower()
        if lang and lang not in ("zh", "en"):
            problems.append(f"{source}: line {line}: language must be zh or en, got {lang!r}")
            continue
        consent = values.get("consent", "").lower()
        if consent and consent not in ("yes", "no"):
            problems.append(f"{source}: line {line}: consent must be yes or no, got {consent!r}")
            continue
        key = phone_key(phone, country_code)
        if key in seen_phone:
            problems.append(f"{source}: line {line}: duplicate phone of line {seen_phone[key]}, left out")
            continue
        ref = values.get("ref", "") or key  # stable when rows move: a rerun finds the same contact
        if ref in seen_ref:
            problems.append(f"{source}: line {line}: duplicate ref {ref!r} of line {seen_ref[ref]}, left out")
            continue
        seen_phone[key], seen_ref[ref] = line, line
        contacts.append(Contact(ref, phone, values.get("customer_id", ""), values.get("name", ""), lang, tz, consent))
    return ContactsFile(contacts, problems)


__all__ = ["Campaign", "Contact", "ContactsFile", "Offer", "Script", "campaign_from_dict", "load_campaign",
           "load_contacts", "normalize_phone", "parse_contacts_text", "phone_key"]
