"""What every reply goes through after its flow: the caller's tier style, the apology (and goodwill
coupon) the escalation policy asks for, citing the tier, and whether the reply may be cached."""

from __future__ import annotations

import re

from .. import templates
from .base import FlowResult, StateUpdate, Tools
from .state import DialogState, Reply


def styled(reply: Reply, tier: str | None, lang: str) -> str:
    """Style by customer tier, as the seeds describe: VIP warmer and fuller, new customers concise."""
    if not reply.resolved or reply.handoff or not reply.text or reply.intent.startswith("chitchat."):
        return reply.text
    if tier == "vip":
        sep = "" if lang == "zh" else " "
        return templates.tier_opening(lang, tier) + reply.text + sep + templates.render(lang, "vip_closing")
    if tier == "new" and len(reply.text) > (80 if lang == "zh" else 260):
        return first_sentences(reply.text, lang, 2)
    return reply.text


def apology(reply: Reply, customer, lang: str, tools: Tools) -> FlowResult:
    """First clear dissatisfaction: an apology to say before the answer (its `text`) and, where the
    shop's coupon policy allows (a known customer, not compensated lately, budget left), a goodwill
    coupon."""
    sep = "" if lang == "zh" else " "
    opening = "" if re.match(r"(非常)?抱歉|对不起|I'm (very |really |so )?sorry", reply.text) else templates.render(lang, "apology")
    compensated = any(g.startswith("coupons:") for g in reply.grounding)
    cites: tuple[str, ...] = ()
    tried: tuple[str, ...] = ()
    if tools.escalation.compensation and customer is not None and not compensated:
        grant = tools.shop.issue_coupon(customer, reason="apology")
        if grant.coupon_id:
            cites = (f"coupons:{grant.coupon_id}",)
            opening += sep + templates.render(lang, "apology_coupon", amount=f"{grant.amount:g}",
                                              min_spend=f"{grant.min_spend:g}")
            tried = (f"coupon {grant.coupon_id} ({grant.amount:g})",)
    opening = opening.strip()
    if opening:
        tried += ("apology",)
    return FlowResult(opening, grounding=cites, state=StateUpdate(apologized=True, tried=tried))


def cite_tier(reply: Reply, state: DialogState) -> None:
    """A reply styled for the caller's tier ("Thank you for being a VIP member") states the tier: it
    cites the caller's customer record."""
    opening = templates.tier_opening(state.language, state.customer_tier) if state.customer_tier else ""
    cite = f"customers:{state.customer_id}"
    if opening and reply.text.startswith(opening) and cite not in reply.grounding:
        reply.grounding.append(cite)


def context_free(reply: Reply) -> bool:
    """Cacheable: grounded only in policies and the knowledge base (or in nothing), no actions."""
    return all(g.startswith(("policies:", "kb:")) for g in reply.grounding) and reply.source != "llm"


def first_sentences(text: str, lang: str, n: int) -> str:
    parts = re.split(r"(?<=[。！？])" if lang == "zh" else r"(?<=[.!?])\s+", text)
    return ("" if lang == "zh" else " ").join(p for p in parts[:n] if p).strip()
