"""How a call's record is closed: who ended it, whether it was resolved, how long it lasted, and
what the engine saw on the way (frames, gaps, barge-ins, stage failures, playout underruns)."""

from __future__ import annotations

import logging

from .context import CallContext

log = logging.getLogger(__name__)


def task_failed(ctx: CallContext, name: str, exc: Exception) -> None:
    """One of the call's tasks died: the call ends as an error, the record says which and why."""
    outcome = ctx.record.outcome
    log.error("call %s: %s failed: %r", ctx.call_id, name, exc)
    ctx.record.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    outcome.ended_by = "error"
    outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"


def close_record(ctx: CallContext, stats: dict, barge_in_stop_ms: list[float]) -> None:
    record, outcome = ctx.record, ctx.record.outcome
    if ctx.playout.error is not None and outcome.ended_by not in ("transfer", "agent", "error"):
        outcome.ended_by, outcome.end_reason = "caller", "leg_lost"
    if outcome.handoff or ctx.state.pending_intent:
        outcome.resolved = False
    record.duration_s = round(max(ctx.clock.now(), getattr(ctx.leg, "play_end_s", 0.0)), 3)
    if ctx.state.marketing is not None:
        record.campaign = ctx.state.marketing.as_record()
    if not record.language:
        record.language = ctx.language.current()
    record.stats = {**stats, "underruns": ctx.playout.underruns, "late_frames": ctx.playout.late_frames}
    if barge_in_stop_ms:
        record.stats["barge_in_stop_ms"] = max(barge_in_stop_ms)
