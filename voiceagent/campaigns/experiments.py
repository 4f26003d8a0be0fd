"""A/B experiments on campaign scripts: which variant a contact gets, and what the results say.

Assignment is uniform at random among the variants a contact's segment may get, or Thompson
sampling: each eligible variant's conversion rate is drawn from Beta(1 + converted, 1 + answered -
converted) and the highest draw wins, so traffic shifts to the variant that converts best while the
others keep being tried as long as they could still be better.

Conversion is counted on answered calls: a contact who never answers heard no script, so says
nothing about it.

The stats `Assigner.choose` learns from are the caller's choice. Counts within the contact's
segment learn which script suits which group (a coupon may win among customers at risk and lose
among champions); the campaign's overall counts learn faster when one script is best everywhere.
benchmarks/sim_campaign.py measures both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

METHODS = ("random", "thompson")
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Variant:
    id: str
    segments: tuple[str, ...] = ()  # empty: any segment

    def allows(self, segment: str | None) -> bool:
        return not self.segments or segment in self.segments


class NoEligibleVariant(ValueError):
    """No variant may be given to this segment."""


class Assigner:
    """Picks a script variant per contact; deterministic for a given seed and sequence of calls."""

    def __init__(self, variants: Sequence[Variant], method: str = "random", seed: int | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown assignment method {method!r}: use one of {', '.join(METHODS)}")
        ids = [v.id for v in variants]
        if not ids:
            raise ValueError("an experiment needs at least one variant")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate variant ids: {ids}")
        self.variants = tuple(variants)
        self.method = method
        self._rng = random.Random(seed)

    def eligible(self, segment: str | None) -> list[Variant]:
        """The variants a contact of this segment may get (None: no segment; only unrestricted ones)."""
        return [v for v in self.variants if v.allows(segment)]

    def choose(self, segment: str | None, stats: Mapping[str, tuple[int, int]] | None = None) -> str:
        """A variant id for one contact. `stats`: variant id -> (answered, converted); missing is (0, 0)."""
        candidates = self.eligible(segment)
        if not candidates:
            raise NoEligibleVariant(f"no script variant for segment {segment!r}")
        if self.method == "random" or len(candidates) == 1:
            return self._rng.choice(candidates).id
        stats = stats or {}
        best_id, best_draw = candidates[0].id, -1.0
        for v in candidates:
            answered, converted = stats.get(v.id, (0, 0))
            converted = min(max(converted, 0), max(answered, 0))  # bad counts must not break Beta
            draw = self._rng.betavariate(1 + converted, 1 + max(answered, 0) - converted)
            if draw > best_draw:
                best_id, best_draw = v.id, draw
        return best_id


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at small n and near 0 or 1); n = 0: (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> dict:
    """Pooled two-proportion z test, two-sided. z > 0 when the first rate is higher."""
    if n1 <= 0 or n2 <= 0:
        return {"z": 0.0, "p_value": 1.0, "significant": False}
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # both all-success or all-failure: no evidence of a difference
        return {"z": 0.0, "p_value": 1.0, "significant": False}
    z = (s1 / n1 - s2 / n2) / se
    p_value = 1 - math.erf(abs(z) / math.sqrt(2))
    return {"z": z, "p_value": p_value, "significant": p_value < SIGNIFICANCE}


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def variant_report(stats: Mapping[str, Mapping[str, int]]) -> dict:
    """Each variant's counts with `conversion_rate` (converted / answered, None before any answer) and
    `ci95` [lo, hi]; `best`, the variant with the highest rate (None before any answer); and
    `comparison`, the best against each other variant:

        {"variants": {"A": {"contacts", "answered", "converted", "conversion_rate", "ci95"}, ...},
         "best": "B",
         "comparison": [{"best": "B", "other": "A", "z", "p_value", "significant", "verdict"}]}

    Each comparison is tested on its own at p < 0.05 (no correction for many variants).
    """
    variants = {}
    for vid, s in stats.items():
        answered, converted = int(s.get("answered", 0)), int(s.get("converted", 0))
        lo, hi = wilson_interval(converted, answered)
        variants[vid] = {"contacts": int(s.get("contacts", 0)), "answered": answered, "converted": converted,
                         "conversion_rate": converted / answered if answered else None, "ci95": [lo, hi]}
    measured = [vid for vid, v in variants.items() if v["answered"]]
    # the highest rate; among equal rates the better-measured one, then the first listed
    best = max(measured, key=lambda vid: (variants[vid]["conversion_rate"], variants[vid]["answered"]), default=None)
    comparison = []
    for vid in variants:
        if best is None or vid == best:
            continue
        b, o = variants[best], variants[vid]
        if not o["answered"]:
            comparison.append({"best": best, "other": vid, "z": 0.0, "p_value": 1.0, "significant": False,
                               "verdict": f"no answered calls for {vid} yet"})
            continue
        test = two_proportion_test(b["converted"], b["answered"], o["converted"], o["answered"])
        verdict = (f"{best} converts better than {vid} ({_p_text(test['p_value'])})" if test["significant"]
                   else f"no significant difference between {best} and {vid} yet ({_p_text(test['p_value'])})")
        comparison.append({"best": best, "other": vid, **test, "verdict": verdict})
    return {"variants": variants, "best": best, "comparison": comparison}
