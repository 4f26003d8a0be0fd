#!/usr/bin/env python3
"""A simulated campaign: Thompson sampling against a fixed 50/50 split of script variants.

    .venv/bin/python benchmarks/sim_campaign.py [--runs 200] [--contacts 1000] [--seed 1] [--lag 0] [--json]

No audio and no shop: each of 1 000 contacts belongs to an RFM segment (in the demo shop's
shares), answers with its segment's probability, and if it answers converts with a probability set
by the script variant it got times its segment's propensity. Each run draws one list of contacts and
their dice, and every method meets that same list (common random numbers: the methods differ only
in who got which script). Methods:

- random: uniform among the variants (50/50 with two);
- thompson-overall: Thompson sampling on the campaign's counts so far;
- thompson-segment: Thompson sampling on the counts within the contact's segment.

`--lag N`: the outcome of a call is known N contacts later (calls in flight at once).

Printed per scenario and method: mean conversions per 1 000 contacts (and their sd over runs), the
share of contacts that got the best variant for their segment, how often the report's `best` at
the end is the variant best over all contacts, and how often it is also significantly better than
every other (p < 0.05). The last scenario's best variant differs by segment.
Nothing here is tuned: the Beta(1, 1) prior is the only setting and no run's result chose it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.campaigns.experiments import Assigner, Variant, variant_report  # noqa: E402

# segment: (share of contacts, answer probability, conversion propensity x the variant's rate)
SEGMENTS = {
    "champions": (0.27, 0.75, 1.4),
    "loyal": (0.17, 0.70, 1.2),
    "potential": (0.02, 0.65, 1.1),
    "new": (0.05, 0.60, 1.0),
    "cant_lose": (0.20, 0.55, 0.9),
    "at_risk": (0.02, 0.50, 0.8),
    "hibernating": (0.11, 0.45, 0.7),
    "lost": (0.16, 0.40, 0.5),
}
RECENT = ("champions", "loyal", "potential", "new")  # R high


def same_everywhere(**rates: float) -> dict[str, dict[str, float]]:
    return {v: dict.fromkeys(SEGMENTS, r) for v, r in rates.items()}


# variant -> segment -> conversion rate of an answered contact of propensity 1
SCENARIOS = {
    "clear (A 8%, B 14%)": same_everywhere(A=0.08, B=0.14),
    "close (A 10%, B 12%)": same_everywhere(A=0.10, B=0.12),
    "three (A 8%, B 14%, C 11%)": same_everywhere(A=0.08, B=0.14, C=0.11),
    # new arrivals (A) win with recent customers, a coupon (B) with the ones drifting away
    "by segment (A 14%/6%, B 8%/14%)": {"A": {s: 0.14 if s in RECENT else 0.06 for s in SEGMENTS},
                                         "B": {s: 0.08 if s in RECENT else 0.14 for s in SEGMENTS}},
}
METHODS = ("random", "thompson-overall", "thompson-segment")


def contacts_for(run_seed: int, n: int) -> list[tuple[str, float, float]]:
    """(segment, answer die, conversion die) per contact: the same for every method of a run."""
    rng = random.Random(run_seed)
    names, weights = list(SEGMENTS), [s[0] for s in SEGMENTS.values()]
    return [(rng.choices(names, weights)[0], rng.random(), rng.random()) for _ in range(n)]


def run_campaign(contacts, rates: dict[str, dict[str, float]], method: str, seed: int, lag: int) -> dict:
    assigner = Assigner([Variant(v) for v in rates], "random" if method == "random" else "thompson", seed)
    overall = {v: [0, 0, 0] for v in rates}  # contacts, answered, converted
    by_segment = {s: {v: [0, 0] for v in rates} for s in SEGMENTS}
    pending: deque = deque()  # outcomes not yet known to the assigner
    got_best = 0  # contacts given the best variant for their segment
    for segment, answer_die, convert_die in contacts:
        if method == "thompson-segment":
            stats = {v: tuple(c) for v, c in by_segment[segment].items()}
        else:
            stats = {v: (c[1], c[2]) for v, c in overall.items()}
        variant = assigner.choose(segment, stats)
        overall[variant][0] += 1
        got_best += rates[variant][segment] == max(r[segment] for r in rates.values())
        _, answer_p, propensity = SEGMENTS[segment]
        answered = answer_die < answer_p
        converted = answered and convert_die < min(1.0, rates[variant][segment] * propensity)
        pending.append((segment, variant, answered, converted))
        while len(pending) > lag:
            seg, var, ans, conv = pending.popleft()
            overall[var][1] += ans
            overall[var][2] += conv
            by_segment[seg][var][0] += ans
            by_segment[seg][var][1] += conv
    while pending:  # the report counts every call, known to the assigner or not
        seg, var, ans, conv = pending.popleft()
        overall[var][1] += ans
        overall[var][2] += conv
    return {"variants": {v: {"contacts": c[0], "answered": c[1], "converted": c[2]} for v, c in overall.items()},
            "got_best": got_best}


def expected_rate(rates: dict[str, float]) -> float:
    """Conversions per contact of a variant given to everyone (rates by segment)."""
    return sum(share * answer_p * min(1.0, rates[s] * propensity)
               for s, (share, answer_p, propensity) in SEGMENTS.items())


def simulate(rates: dict[str, dict[str, float]], runs: int, n_contacts: int, seed: int, lag: int) -> dict:
    true_best = max(rates, key=lambda v: expected_rate(rates[v]))
    results = {}
    for m_idx, method in enumerate(METHODS):
        conversions, best_share, right, significant = [], [], 0, 0
        for run in range(runs):
            run_seed = seed * 1_000_003 + run
            result = run_campaign(contacts_for(run_seed, n_contacts), rates, method, run_seed * 7 + m_idx, lag)
            counts = result["variants"]
            report = variant_report(counts)
            conversions.append(sum(c["converted"] for c in counts.values()) * 1000 / n_contacts)
            best_share.append(result["got_best"] / n_contacts)
            right += report["best"] == true_best
            significant += report["best"] == true_best and all(c["significant"] for c in report["comparison"])
        results[method] = {
            "conversions_per_1000": statistics.fmean(conversions),
            "conversions_sd": statistics.pstdev(conversions),
            "best_variant_share": statistics.fmean(best_share),
            "right_winner_rate": right / runs,
            "significant_right_winner_rate": significant / runs,
        }
    return {"rates": rates, "true_best": true_best, "methods": results,
            "always_best_per_1000": 1000 * sum(share * answer_p * min(1.0, max(r[s] for r in rates.values()) * prop)
                                               for s, (share, answer_p, prop) in SEGMENTS.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="campaigns per method and scenario")
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lag", type=int, default=0, help="outcomes known this many contacts later")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"runs": args.runs, "contacts": args.contacts, "seed": args.seed, "lag": args.lag,
           "scenarios": {name: simulate(rates, args.runs, args.contacts, args.seed, args.lag)
                         for name, rates in SCENARIOS.items()}}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.runs} campaigns of {args.contacts} contacts per method, seed {args.seed}, lag {args.lag}")
    for name, sc in out["scenarios"].items():
        print(f"\n{name}: best overall {sc['true_best']}; each segment's best to all: "
              f"{sc['always_best_per_1000']:.1f} conversions per 1000")
        print(f"{'method':<18} {'conv/1000':>9} {'sd':>5} {'best share':>10} {'right winner':>12} {'signif. right':>13}")
        for method, r in sc["methods"].items():
            print(f"{method:<18} {r['conversions_per_1000']:>9.1f} {r['conversions_sd']:>5.1f} "
                  f"{r['best_variant_share']:>10.1%} {r['right_winner_rate']:>12.1%} "
                  f"{r['significant_right_winner_rate']:>13.1%}")


if __name__ == "__main__":
    main()
