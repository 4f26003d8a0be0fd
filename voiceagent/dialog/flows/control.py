"""Flows that steer the conversation rather than answer it: a transfer to a person (or the callback
already booked), refusing an attempt on the rules, dropping the open task, asking to clarify."""

from __future__ import annotations

from .. import templates
from ..escalation import Escalation
from .base import FlowResult, StateUpdate, Turn

HANDOFF_TEMPLATE = {"caller_request": "handoff", "sensitive_topic": "handoff_topic", "dialect": "handoff_dialect",
                    "angry": "handoff_angry", "low_confidence": "handoff_unclear", "repeated_failure": "handoff_unclear"}


def transfer_exhausted(turn: Turn) -> bool:
    return turn.state.transfer_failures >= turn.tools.escalation.max_transfer_attempts


def callback_pending(turn: Turn) -> FlowResult:
    """The human queue did not answer before: the callback stands, the caller is not put on hold again."""
    return FlowResult(templates.render(turn.language, "callback_pending", ticket_id=turn.state.callback_ticket or ""),
                      escalation=Escalation("none", "transfer_unavailable", turn.decision.reason))


def handoff(turn: Turn) -> FlowResult:
    decision = turn.decision
    return FlowResult(templates.render(turn.language, HANDOFF_TEMPLATE.get(decision.reason or "", "handoff")),
                      handoff=True, handoff_reason=decision.reason, handoff_target=decision.target)


def refuse(turn: Turn) -> FlowResult:
    """An attempt to override the rules (or code): refused, clearly. It earns no goodwill coupon and
    is no question to come back to."""
    return FlowResult(templates.render(turn.language, "injection"), resolved=True, escalation=Escalation(),
                      state=StateUpdate(turn_intent="other"))


def never_mind(turn: Turn) -> FlowResult:
    """"算了，不退了": the open task is dropped."""
    return FlowResult(templates.render(turn.language, "flow_cancelled"), resolved=True,
                      state=StateUpdate(pending_intent=None, awaiting=None, task=None))


def ask_to_clarify(turn: Turn) -> FlowResult:
    """Not understood: a clarifying question, counted as tried for the handoff summary."""
    return FlowResult(templates.render(turn.language, "clarify"), state=StateUpdate(tried=("asked to clarify",)))


def clarify(turn: Turn) -> FlowResult:
    """Understood, but not something to act on (a complaint on a guess) or no flow for it."""
    return FlowResult(templates.render(turn.language, "clarify"))


def details(turn: Turn) -> FlowResult:
    """"详细说说": the part of the last answer a voice reply left out."""
    return FlowResult(turn.state.more or "", resolved=True, grounding=tuple(turn.state.more_grounding),
                      state=StateUpdate(more=None))
