"""What every reply goes through after its flow: the caller's tier style, the apology (and goodwill
coupon) the escalation policy asks for, citing the tier, and whether the reply may be cached."""

from __future__ import annotations

import re
from functools import lru_cache

from .. import templates
from .base import FlowResult, StateUpdate, Tools
from .state import DialogState, Reply


def styled(reply: Reply, state: DialogState, tier: str | None, lang: str) -> str:
    """Style by customer tier, as the seeds describe: the VIP touch ("尊敬的VIP会员") once a call, on
    the first answer (every turn, it is seconds of speech the caller did not ask for); new customers
    concise."""
    if not reply.resolved or reply.handoff or not reply.text or reply.intent.startswith("chitchat."):
        return reply.text
    if tier == "vip" and not state.tier_greeted:
        state.tier_greeted = True
        return templates.tier_opening(lang, tier) + reply.text
    if tier == "new" and len(reply.text) > (80 if lang == "zh" else 260):
        return first_sentences(reply.text, lang, 2)
    return reply.text


# What one spoken reply may hold before the rest waits for "详细说说" / "tell me more".
VOICE_BUDGET = {"zh": 40, "en": 25}  # Chinese characters / English words


def for_the_ear(text: str, state: DialogState, lang: str) -> tuple[str, str | None]:
    """The reply as said on this channel: no sentence the agent already said in this call (when
    something else remains), and on a voice call the first sentences within the budget plus a closing
    question; what is left out is returned, to be said on request."""
    sentences = split_sentences(text, lang)
    said = set(state.said)
    # the agent's stock sentences ("还有其他可以帮您的吗" and the like) are not said twice in a call; a
    # fact asked for again is (the caller asked), and so is a question
    stock = _stock_sentences(lang)
    fresh = [x for x in sentences if not (sentence_key(x) in said and sentence_key(x) in stock)
             or is_question_sentence(x)]
    if fresh and len(fresh) < len(sentences):
        sentences = fresh
    left: list[str] = []
    if state.channel == "voice" and len(sentences) > 1:
        size = (lambda x: len(x)) if lang == "zh" else (lambda x: len(x.split()))
        question = sentences[-1] if is_question_sentence(sentences[-1]) else None
        body = sentences[:-1] if question else sentences
        budget = VOICE_BUDGET["zh" if lang == "zh" else "en"] - (size(question) if question else 0)
        kept, used = [], 0
        for x in body:
            if kept and used + size(x) > budget:
                left.append(x)
                continue
            kept.append(x)
            used += size(x)
        sentences = kept + ([question] if question else [])
    state.said.extend(sentence_key(x) for x in sentences)
    sep = "" if lang == "zh" else " "
    return sep.join(sentences), (sep.join(left) or None)


@lru_cache(maxsize=4)
def _stock_sentences(lang: str) -> frozenset[str]:
    return frozenset(sentence_key(x) for reply in templates.fixed_replies(lang) for x in split_sentences(reply, lang))


def split_sentences(text: str, lang: str) -> list[str]:
    parts = re.split(r"(?<=[。！？!?])" if lang == "zh" else r"(?<=[.!?])\s+", text.strip())
    return [p.strip() for p in parts if p.strip()]


def is_question_sentence(sentence: str) -> bool:
    return sentence.rstrip().endswith(("？", "?"))


def sentence_key(sentence: str) -> str:
    """A sentence as compared for repeats: lower case, letters and digits only."""
    return re.sub(r"[\W_]+", "", sentence.lower())


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
    if opening and opening.strip() in reply.text and cite not in reply.grounding:  # after an apology too
        reply.grounding.append(cite)


def context_free(reply: Reply) -> bool:
    """Cacheable: grounded only in policies and the knowledge base (or in nothing), no actions."""
    return all(g.startswith(("policies:", "kb:")) for g in reply.grounding) and reply.source != "llm"


def first_sentences(text: str, lang: str, n: int) -> str:
    parts = re.split(r"(?<=[。！？])" if lang == "zh" else r"(?<=[.!?])\s+", text)
    return ("" if lang == "zh" else " ").join(p for p in parts[:n] if p).strip()
