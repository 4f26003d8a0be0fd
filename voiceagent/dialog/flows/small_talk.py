"""Small talk: greetings, goodbyes and turns out of the shop's scope. The fixed reply, or in English
the LLM's words, each clause checked before it is let out (no fact without a record behind it)."""

from __future__ import annotations

import re
import time
from functools import partial
from typing import Iterator

from .. import templates
from ..safety import filter_output
from .base import FlowResult, Tools, Turn
from .state import Reply

LLM_SYSTEM = ("You are a phone customer-service agent for an online shop selling clothes, shoes and home goods. "
              "Reply to the caller in one short, polite sentence and offer help with orders, deliveries, returns "
              "or products. Never state prices, dates, numbers, weather, news or any other facts.")
STEERS_BACK = re.compile(r"\b(help|assist|order|deliver|return|product|shop|support|service)\w*", re.I)
FACT_WORDS = re.compile(r"\d|weather|sunny|rain|temperature|degrees|price|cost|yuan|dollar|\$|free|discount|"
                        r"tomorrow|today is|stock market|percent|%", re.I)
# A clause worth speaking on its own: a sentence, or a comma-clause of a few words (shorter ones
# sound choppy when synthesised apart).
CLAUSE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[.!?;])$|(?<=,)\s+(?=\S)")
CHITCHAT_TEMPLATE = {"chitchat.greeting": "greeting", "chitchat.goodbye": "goodbye"}


def chitchat(turn: Turn) -> FlowResult:
    return small_talk(turn, CHITCHAT_TEMPLATE[turn.intent], resolved=True)


def small_talk(turn: Turn, key: str, resolved: bool) -> FlowResult:
    """The template `key`, or the LLM's checked words with it (English only: the embedded LLM speaks
    no Chinese; nothing to add to a goodbye, and a 135M model adds condolences)."""
    fallback = templates.render(turn.language, key)
    if turn.tools.llm is None or turn.language != "en" or key == "goodbye":
        return FlowResult(fallback, resolved=resolved)
    return FlowResult(resolved=resolved, llm_reply=partial(llm_pieces, turn.tools, turn.understanding.text, key,
                                                           turn.language, fallback))


def next_clause(buffer: str) -> tuple[str, str] | None:
    for m in CLAUSE_END.finditer(buffer):
        clause = " ".join(buffer[: m.start()].split())
        if re.search(r"[.!?;]$", clause) or len(clause.split()) >= 4:
            return clause, buffer[m.end():]
    return None


def llm_pieces(tools: Tools, text: str, key: str, lang: str, fallback: str, reply: Reply) -> Iterator[str]:
    """The LLM's words cut into clauses as they stream, each checked before it is let out: no
    fact without a record behind it (the grounding checker finds any number, date, price,
    product or policy term), at most two sentences and 30 words. A clause that fails ends the
    LLM's part; the fixed reply covers what it did not say. Not streaming (nothing is spoken until
    the end): a failing clause discards the LLM's words altogether. Sets the reply's text, source
    and first-token time when consumed."""
    strict = not reply.streaming
    t0 = time.perf_counter()
    said: list[str] = []
    out: list[str] = []
    words = sentences = 0
    checker = tools.grounding_checker()

    def admit(clause: str) -> bool:
        nonlocal words, sentences
        words += len(clause.split())
        if words > 30 or sentences >= 2 or FACT_WORDS.search(clause):
            return False
        key_words = re.sub(r"\W+", " ", clause.lower()).strip()
        if any(key_words in prev or prev in key_words for prev in (re.sub(r"\W+", " ", s.lower()).strip() for s in said)):
            return False  # a small model looping on itself
        if not checker.check(clause, lang, reply.grounding, caller_said=[text]).ok:
            return False
        sentences += bool(re.search(r"[.!?]$", clause))
        return True

    stream = tools.llm.stream([{"role": "system", "content": LLM_SYSTEM},
                               {"role": "user", "content": text[:300]}])
    buffer = ""
    stopped = False
    try:
        for token in stream:
            if reply.llm_first_token_ms is None:
                reply.llm_first_token_ms = round((time.perf_counter() - t0) * 1000, 1)
            buffer += token
            while (cut := next_clause(buffer)) is not None:
                clause, buffer = cut
                if not admit(clause):
                    stopped = True
                    break
                said.append(clause)
                if not strict:
                    out.append(filter_output(clause)[0])
                    yield out[-1]
            if stopped:
                break
        tail = " ".join(buffer.split())
        if not stopped and tail:
            if admit(tail):
                said.append(tail)
                if not strict:
                    out.append(filter_output(tail)[0])
                    yield out[-1]
            else:
                stopped = True
    except Exception:  # the LLM is an optional voice: a failure falls back to the template
        pass
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a generator left half-read would keep the model locked
        if reply.llm_first_token_ms is None:
            reply.llm_first_token_ms = round((time.perf_counter() - t0) * 1000, 1)
    if strict:
        said = [] if stopped else said
        out = [filter_output(c)[0] for c in said]
        yield from out
    full = " ".join(said)
    if said:
        reply.source = "llm"
    # Keep to the shop's business: when the LLM's words do not steer back to it (or the turn was
    # out of scope), the fixed reply follows.
    if not said or key == "other" or not STEERS_BACK.search(full):
        out.append(fallback)
        yield fallback
    reply.text = " ".join(out)
