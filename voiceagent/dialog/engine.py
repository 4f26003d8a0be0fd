"""The dialog engine: one caller turn in, one grounded reply out.

Facts come from the shop's tools (orders, parcels, products, tickets, coupons) and its knowledge
base (FAQ and policies), slotted into the templates of prompts/; each reply lists the records and
passages it used (`grounding`). The LLM only speaks where no fact is needed (small talk in
English) and its output is checked before use. Conversation state (slots gathered over turns, a
question waiting for a value, failures, anger) carries across turns, so "it's 38512074" after
"where is my parcel?" answers the parcel question, and "no, the other order" switches orders.
Every reply passes the safety filter; attempts to override the rules are refused.

This module conducts a turn: it reads the turn in context, asks the escalation policy, lets the
router pick a flow (flows/customer_service.py lists them in order), applies the flow's result to
the reply and the state (flows.base.apply), then styles, filters, caches and records the reply.
The answers themselves live in flows/; flows/__init__.py says how to add a conversation type.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import time
from typing import Iterable

from ..config import EscalationConfig
from ..llm import LanguageModel
from ..perception import HeardVoice, TextEmotion, TurnEmotion
from ..shop import ShopRepository
from .cache import CachedReply, HotCache
from .escalation import EscalationPolicy
from .flows import CUSTOMER_SERVICE_ROUTES, Route, Router, Tools, Turn, apply, marketing, update_state
from .flows import ownership
from .flows.context import is_unsure, read_in_context
from .flows.finishing import apology, cite_tier, context_free, for_the_ear, styled
from .flows.patterns import CODE_LIKE, LETTERS, ORDER_INTENTS, PRODUCT_INTENTS  # noqa: F401  (their old home)
from .flows.state import DialogState, Reply
from .handoff import build_summary
from . import templates
from .nlu import NLU, Understanding
from .safety import filter_output

log = logging.getLogger(__name__)

__all__ = ["DialogEngine", "DialogState", "Reply"]


class DialogEngine:
    def __init__(self, nlu: NLU, shop: ShopRepository, llm: LanguageModel | None = None, low_confidence: float = 0.45,
                 kb=None, cache: HotCache | None = None, escalation: EscalationPolicy | None = None,
                 routes: Iterable[Route] | None = None):
        """`routes`: the conversation's routing table (flows/); unless given, customer service with
        the marketing call's routes first (they take only the turns of a campaign call)."""
        self.nlu = nlu
        self.escalation = escalation or EscalationPolicy(EscalationConfig())
        self.shop = shop
        self.llm = llm
        self.low_confidence = low_confidence
        self.kb = kb
        self.cache = cache
        self.router = Router([*marketing.ROUTES, *CUSTOMER_SERVICE_ROUTES] if routes is None else routes)
        self._checker = None  # the grounding checker, for what the LLM says (built on first use)

    def respond_cached(self, text: str, state: DialogState, language: str | None = None,
                       voice: HeardVoice | None = None, at_s: float = 0.0) -> Reply | None:
        """The hot-question path: the cached reply to a context-free question, or None. A dict lookup,
        cheap enough to run on the event loop before handing a miss to a worker thread. A caller
        whose voice is raised goes the full way (the escalation policy may have more to say)."""
        if self.cache is None or state.pending_intent is not None or state.awaiting is not None \
                or state.marketing is not None or state.proof is not None:  # a campaign call's "好的" takes the offer
            return None
        if voice is not None and voice.model and voice.model.get("angry", 0.0) >= 0.25:
            return None
        t0 = time.perf_counter()
        if state.customer_id and state.customer_tier is None:
            customer = self.shop.customer(state.customer_id)
            state.customer_tier = customer.tier if customer else ""
        lang_hint = language if language in ("zh", "en") else None
        hit = self.cache.get(lang_hint or "auto", state.customer_tier or None, text)
        if hit is None:
            return None
        reading = state.emotion.baseline.read(voice.features) if voice is not None and voice.features else None
        if reading is not None and (reading.anger or 0.0) >= 0.25:
            return None
        return self._from_cache(hit, state, t0, voice, at_s)

    def prepare(self, text: str) -> None:
        """The turn's encoding done ahead (NLU.prepare), e.g. on the recogniser's transcript at a pause
        while the silence window runs: when the final transcript says the same, respond() finds the
        embeddings ready. What respond() says does not change. Blocking: for a worker thread."""
        self.nlu.prepare(text)
        if self.kb is not None:
            self.kb.prepare(text)

    def respond(self, text: str, state: DialogState, language: str | None = None, cache_checked: bool = False,
                stream: bool = False, voice: HeardVoice | None = None, at_s: float = 0.0,
                language_scores: dict[str, float] | None = None) -> Reply:
        with templates.channel(state.channel):  # a voice call gets the short templates
            return self._respond(text, state, language, cache_checked, stream, voice, at_s, language_scores)

    def _respond(self, text: str, state: DialogState, language: str | None, cache_checked: bool, stream: bool,
                 voice: HeardVoice | None, at_s: float, language_scores: dict[str, float] | None,
                 replay: bool = False) -> Reply:
        """One caller turn. `cache_checked`: the caller already tried respond_cached and missed.
        `stream`: an LLM reply may come as `reply.pieces`, to be spoken clause by clause.
        `voice`: how the turn sounded (a voice call); `at_s`: when it started on the call's timeline;
        `language_scores`: the recogniser's language probabilities (Cantonese, where it knows it)."""
        t0 = time.perf_counter()
        if not cache_checked and (cached := self.respond_cached(text, state, language, voice, at_s)) is not None:
            return cached
        if state.proof is not None and (digits := ownership.digits_given(text)) is not None:
            return self._proof_answered(digits, text, state, language, stream, voice, at_s, language_scores)
        state.proof = None  # not the digits asked for: the conversation moved on (asked again if needed)
        customer = self.shop.customer(state.customer_id) if state.customer_id else None
        tier = customer.tier if customer else None
        state.customer_tier = tier or ""
        lang_hint = language if language in ("zh", "en") else None
        context_free_turn = state.pending_intent is None and state.awaiting is None

        # -- the turn read in context -------------------------------------------------------------
        u = self.nlu.understand(text, language, language_scores)
        if "phone" in u.slots and state.customer_id is None and state.phone_said_identifies:
            # a call: the account's whole phone number said is more than its last four digits
            owner = self.shop.customer_by_phone(u.slots["phone"])
            if owner is not None:
                state.verified_customers.add(owner.customer_id)
        lang = u.language if u.language in ("zh", "en") else state.language
        if lang_hint is None and (not LETTERS.search(text) or CODE_LIKE.search(text)):
            lang = state.language  # a bare number, emoji or code keeps the call's language
        state.language = lang
        reading = read_in_context(u, state, text)
        intent = reading.intent
        if reading.reason is not None:
            u.slots.setdefault("reason", reading.reason)
        state.slots.update(u.slots)
        state.intents.append(intent)
        if replay:
            # the held question answered after the proof: its words were heard (emotion, dialect,
            # history) when it was asked; this turn said only the digits
            emotion = self._perceive(u, state, voice, at_s, words=TextEmotion("neutral", 0.0, []))
            dialect = state.languages.dialect
        else:
            state.history = (state.history + [("caller", text)])[-20:]
            emotion = self._perceive(u, state, voice, at_s)
            dialect = state.languages.observe_dialect(u.dialect, text) if lang == "zh" else state.languages.dialect
        unsure = is_unsure(u, intent, self.low_confidence) and not (state.awaiting and intent == state.pending_intent)
        # not understood: a clarifying question, or the classifier unsure and no context to read it by
        low = unsure or (u.confidence < self.low_confidence and intent == u.intent)
        decision = self.escalation.decide(
            wants_person=intent == "handoff.human", text=text, emotion=emotion,
            angry_recent=state.emotion.angry_turns(3), dialect=dialect,
            unclear_in_row=state.unclear_turns + (1 if low else 0), failed_in_row=state.failed_turns,
            apologized=state.apologized)

        # -- the flow's answer, applied in one place ---------------------------------------------
        reply = Reply("", u, intent, dict(state.slots), streaming=stream, escalation=decision, emotion=emotion)
        tools = Tools(self.shop, self.kb, self.llm, self._grounding_checker, self.escalation.config)
        turn = Turn(text, u, intent, lang, customer, state, dict(state.slots), tools, decision, unsure, stream)
        apply(self.router.choose(turn).flow(turn), reply, state)

        # -- the call's counters, style, apology, safety, cache and record -----------------------
        state.unclear_turns = state.unclear_turns + 1 if low and not reply.handoff else 0
        # Unanswered turns in a row (clarifying questions, unknown orders, out-of-scope requests,
        # asking again for a value): the third one sends the next turn to a person.
        state.failed_turns = 0 if reply.resolved or reply.progress else state.failed_turns + (0 if reply.handoff else 1)
        if (reply.resolved and not reply.keeps_pending) or reply.handoff:
            state.pending_intent = state.awaiting = None
        task = state.open_task()
        if task is not None and state.pending_intent is None and not reply.handoff:
            # a question on the side was answered: the open task is still what the next answer is for
            state.pending_intent = task.kind
            state.awaiting = task.awaiting if task.awaiting not in ("order", "order_id") else None
        plain = reply.text
        reply.text = styled(reply, state, tier, lang)
        greeted = reply.text != plain
        if reply.escalation.action == "apologize" and state.marketing is None:  # a sales call offers no goodwill coupon
            self._apologize(reply, state, customer, lang, tools)
        reply.text, masked = filter_output(reply.text)
        if masked:
            reply.grounding.append("safety:masked")
        reply.slots = dict(state.slots)
        if self.cache is not None and context_free_turn and state.marketing is None and reply.resolved and reply.pieces is None \
                and context_free(reply) and reply.escalation.action == "none" and not greeted:
            self.cache.put(lang_hint or "auto", tier, text,
                           CachedReply(reply.text, reply.intent, tuple(reply.grounding), reply.resolved, u,
                                       state.pending_intent if reply.keeps_pending else None))
        if reply.pieces is None and reply.end_call is None:  # a closing sentence is said whole
            reply.text, more = for_the_ear(reply.text, state, lang)
            if more or reply.resolved:
                state.more, state.more_grounding = more, list(reply.grounding) if more else []
        cite_tier(reply, state)
        self._after_turn(reply, state)
        reply.dialog_ms = round((time.perf_counter() - t0) * 1000, 1)
        return reply

    def _from_cache(self, hit: CachedReply, state: DialogState, t0: float, voice: HeardVoice | None = None,
                    at_s: float = 0.0) -> Reply:
        u = dataclasses.replace(hit.understanding)  # this turn's emotion is its own; the cached one stays
        state.language = u.language if u.language in ("zh", "en") else state.language
        state.intents.append(hit.intent)
        state.history = (state.history + [("caller", u.text)])[-20:]
        state.failed_turns = state.unclear_turns = 0
        state.pending_intent = hit.pending_intent
        emotion = self._perceive(u, state, voice, at_s)
        reply = Reply(hit.text, u, hit.intent, dict(state.slots), resolved=hit.resolved, grounding=list(hit.grounding),
                      source="cache", keeps_pending=hit.pending_intent is not None, emotion=emotion)
        lang = state.language
        reply.text = styled(reply, state, state.customer_tier, lang)
        reply.text, state.more = for_the_ear(reply.text, state, lang)
        cite_tier(reply, state)
        self._after_turn(reply, state)
        reply.dialog_ms = round((time.perf_counter() - t0) * 1000, 3)
        return reply

    def _proof_answered(self, digits: str, text: str, state: DialogState, language: str | None, stream: bool,
                        voice: HeardVoice | None, at_s: float, language_scores: dict[str, float] | None) -> Reply:
        """The last four digits given: the held question answered when they match the account's phone;
        refused otherwise, and after ownership.MAX_TRIES wrong answers the order is let go."""
        proof, lang = state.proof, state.language
        customer = self.shop.customer(proof.customer_id)
        if customer is not None and ownership.matches(digits, customer.phone) and \
                not ownership.GUESSES.locked(proof.order_id):
            state.verified_customers.add(proof.customer_id)
            state.proof = None
            state.history = (state.history + [("caller", text)])[-20:]
            whole = re.sub(r"\D", "", text)
            if 10 <= len(whole) <= 15:  # the whole phone number given: it also verifies an address change
                state.slots["phone"] = whole
                if state.task is not None and state.task.kind == "order.modify":
                    state.task = dataclasses.replace(state.task, slots={**state.task.slots, "phone": whole})
            reply = self._respond(proof.text, state, language, True, stream, voice, at_s, language_scores, replay=True)
            lead = templates.render(state.language, "last4_ok")
            if reply.pieces is not None:
                reply.pieces = itertools.chain([lead], reply.pieces)
            reply.text = lead + (("" if state.language == "zh" else " ") + reply.text if reply.text else "")
            return reply
        state.proof_failures += 1
        guessed = ownership.GUESSES.wrong(proof.order_id)  # across conversations: new sessions do not reset it
        if guessed >= ownership.ORDER_MAX_TRIES:
            log.warning("order %s: %d wrong ownership answers: locked", proof.order_id, guessed)
        u = self.nlu.understand(text, language, language_scores)
        state.history = (state.history + [("caller", text)])[-20:]
        state.intents.append(state.intents[-1] if state.intents else u.intent)
        emotion = self._perceive(u, state, voice, at_s)
        if state.proof_failures >= ownership.MAX_TRIES or guessed >= ownership.ORDER_MAX_TRIES:
            update_state(ownership.forget_order(state), state)
            key = "last4_locked"
        else:
            key = "last4_wrong_keypad" if state.keypad else "last4_wrong"  # a call: keyed again (flows/keypad.py)
        if u.language in ("zh", "en") and LETTERS.search(text):
            lang = state.language = u.language  # "the last four are 1234" answers in its own language
        reply = Reply(templates.render(lang, key), u, state.intents[-1], dict(state.slots), emotion=emotion)
        state.failed_turns += 1
        self._after_turn(reply, state)
        return reply

    # -- perception, apology and the record -----------------------------------------------------

    def _perceive(self, u: Understanding, state: DialogState, voice: HeardVoice | None, at_s: float,
                  words: TextEmotion | None = None) -> TurnEmotion:
        """The turn's emotion from the words (the NLU's reading) and the voice against this caller's
        baseline; the running state moves on. The understanding carries the result."""
        words = words or TextEmotion(u.text_emotion, u.text_anger, list(u.emotion_cues))
        reading = None
        if voice is not None and voice.features is not None:
            reading = state.emotion.baseline.read(voice.features)
        emotion = state.emotion.observe(words, reading, voice.model if voice is not None else None, at_s)
        u.emotion, u.anger = emotion.label, emotion.anger
        return emotion

    def _apologize(self, reply: Reply, state: DialogState, customer, lang: str, tools: Tools) -> None:
        """The apology (finishing.apology) said before the answer; a streamed reply says it first."""
        said = apology(reply, customer, lang, tools)
        update_state(said.state, state)
        reply.grounding.extend(said.grounding)
        if said.text:
            if reply.pieces is not None:
                reply.pieces = itertools.chain([said.text], reply.pieces)
            reply.text = said.text + (("" if lang == "zh" else " ") + reply.text if reply.text else "")

    def _after_turn(self, reply: Reply, state: DialogState) -> None:
        """Keep the record of the turn: its escalation decision, what was tried, and the summary a
        person gets when the call is handed over."""
        state.escalations.append({"turn": len(state.intents), **reply.escalation.to_dict()})
        for ref in reply.grounding:
            kind, _, ident = ref.partition(":")
            if kind == "tickets":
                state.tried.append(f"ticket {ident}")
            elif kind in ("orders", "kb", "policies") and f"answered {reply.intent}" not in state.tried[-1:]:
                state.tried.append(f"answered {reply.intent}")
        if reply.text:
            state.history = (state.history + [("agent", reply.text)])[-20:]
        if reply.handoff:
            e = reply.escalation
            reply.handoff_summary = build_summary(state, self.shop, e.reason, e.detail, e.target)

    def callback_ticket(self, state: DialogState, summary: dict, lang: str) -> str:
        """The transfer failed: book a callback (once a call) carrying the handoff summary's brief,
        and say so; the caller stays with the agent."""
        state.transfer_failures += 1
        if state.callback_ticket is None:
            try:
                order = self.shop.order(state.slots["order_id"]) if "order_id" in state.slots else None
                ticket = self.shop.create_ticket("callback", order, summary.get("reason"), detail=summary.get("brief", ""))
                state.callback_ticket = ticket.ticket_id
                state.tried.append(f"callback {ticket.ticket_id}")
            except Exception:  # no ticket system: still tell the caller, and keep them
                return templates.render(lang, "transfer_failed_no_ticket")
        text = templates.render(lang, "transfer_failed", ticket_id=state.callback_ticket)
        state.history = (state.history + [("agent", text)])[-20:]
        return text

    def _grounding_checker(self):
        if self._checker is None:
            from .grounding import GroundingChecker

            self._checker = GroundingChecker(self.shop, self.kb)
        return self._checker
