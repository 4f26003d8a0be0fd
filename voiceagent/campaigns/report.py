"""A campaign's report (SPEC.md): its state, every contact's one outcome, each script variant's
contacts, answered and converted, with conversion rates, 95 % intervals and whether the difference
between variants is significant."""

from __future__ import annotations

from .experiments import variant_report
from .store import OUTCOMES, CampaignStore, ContactRow

_OUTSIDE = "outside the calling window"


def contact_outcome(row: ContactRow) -> str:
    """A contact's one outcome: its final one, or for a contact still waiting, "outside_window" when
    its window never came while the campaign ran (never dialled), else "pending"."""
    if row.outcome != "pending":
        return row.outcome
    if row.attempts == 0 and row.last_rule.startswith(_OUTSIDE):
        return "outside_window"
    return "pending"


def build_report(store: CampaignStore, name: str) -> dict | None:
    state = store.state(name)
    if state is None:
        return None
    rows = store.contacts(name)
    attempts = store.attempts(name)
    outcomes = dict.fromkeys(OUTCOMES, 0)
    scripts: dict[str, dict] = {s.id: {"contacts": 0, "answered": 0, "converted": 0}
                                for s in store.campaign(name).scripts}  # the state says it exists
    people = {a["contact_idx"] for a in attempts if a["person"]}
    detail = []
    for row in rows:
        outcome = contact_outcome(row)
        outcomes[outcome] += 1
        if row.script is not None:
            s = scripts.setdefault(row.script, {"contacts": 0, "answered": 0, "converted": 0})
            s["contacts"] += 1
            s["answered"] += int(row.idx in people)
            s["converted"] += int(outcome == "converted")
        detail.append({"ref": row.contact.ref, "customer_id": row.contact.customer_id or None,
                       "segment": row.contact.segment, "script": row.script, "attempts": row.attempts,
                       "outcome": outcome, "call_ids": list(row.call_ids), "rule": row.last_rule,
                       **({"callback_at": row.callback_at} if row.callback_at else {})})
    experiment = variant_report(scripts)
    return {"name": name, "state": state, "contacts": len(rows), "attempts": len(attempts), "outcomes": outcomes,
            "scripts": experiment["variants"],  # contacts, answered, converted, conversion_rate, ci95
            "experiment": {"best": experiment["best"], "comparison": experiment["comparison"]},
            "contacts_detail": detail}


def format_table(report: dict) -> str:
    lines = [f"campaign {report['name']}: {report['state']}, {report['contacts']} contacts, {report['attempts']} attempts",
             "outcomes: " + (", ".join(f"{k} {v}" for k, v in report["outcomes"].items() if v) or "none"),
             f"{'script':<10}{'contacts':>10}{'answered':>10}{'converted':>11}{'rate':>8}   95% interval"]
    for sid, s in report["scripts"].items():
        rate = "" if s["conversion_rate"] is None else f"{s['conversion_rate']:.1%}"
        lo, hi = s["ci95"]
        lines.append(f"{sid:<10}{s['contacts']:>10}{s['answered']:>10}{s['converted']:>11}{rate:>8}   {lo:.2f}-{hi:.2f}")
    lines += [c["verdict"] for c in report["experiment"]["comparison"]]
    return "\n".join(lines)
