"""The dialog engine: one caller turn in, one grounded reply out.

Facts come from the shop's tools (orders, parcels, products, tickets, coupons) and its knowledge
base (FAQ and policies), slotted into the templates of prompts/; each reply lists the records and
passages it used (`grounding`). The LLM only speaks where no fact is needed (small talk in
English) and its output is checked before use. Conversation state (slots gathered over turns, a
question waiting for a value, failures, anger) carries across turns, so "it's 38512074" after
"where is my parcel?" answers the parcel question, and "no, the other order" switches orders.
Every reply passes the safety filter; attempts to override the rules are refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Iterator

from ..config import EscalationConfig
from ..llm import LanguageModel
from ..perception import CallerEmotion, HeardVoice, LanguageTracker, TextEmotion, TurnEmotion
from ..textnorm import spoken_date
from ..shop import Order, ShopRepository
from . import templates
from .cache import CachedReply, HotCache
from .escalation import Escalation, EscalationPolicy
from .handoff import build_summary
from .safety import filter_output, is_injection
from .intents import group_probability
from .nlu import NLU, Understanding

# Intents whose answer needs an order; the order can come from any earlier turn.
ORDER_INTENTS = {"order.status", "order.modify", "order.cancel", "logistics.track", "aftersales.return",
                 "aftersales.exchange", "aftersales.refund"}
PRODUCT_INTENTS = {"product.info", "product.size", "product.price", "product.stock", "product.recommend"}
# A turn that only supplies a value (an order number) continues the previous question.
CONTINUATION_INTENTS = {"other", "chitchat.greeting", "order.status"}
# Used only when the shop has no return/exchange policy text to read the window from.
DEFAULT_WINDOW_DAYS = {"return": 7, "exchange": 15}
# Intents where callers often ask about the rules rather than about one order.
POLICY_QUESTION_INTENTS = {"aftersales.return", "aftersales.exchange", "aftersales.refund", "order.cancel", "order.modify"}
QUESTION = re.compile(r"[?？]|吗|什么|谁|怎么|多久|几天|哪|能不能|可不可以|是否|\b(who|what|when|where|how|can|do|does|is|are)\b", re.I)
OTHER_ORDER = re.compile(r"另一个订单|另外一个订单|不是这个(订单|单)?|换一个订单|上一个订单|other order|another order|"
                         r"not (that|this) (one|order)|different order|previous order", re.I)
NEVER_MIND = re.compile(r"算了|不用了|不退了|不换了|不要退|先不(退|换|办)|never ?mind|forget it|don't want to return|"
                        r"changed my mind|no longer want to (return|exchange)", re.I)
# Logging a complaint (a ticket, perhaps a coupon) is an action: the classifier must be fairly sure.
ACTION_CONFIDENCE = 0.6
# A transfer on the classifier's word alone, without "转人工"/"a person" in the turn, needs it to be sure.
WANTS_PERSON_CONFIDENCE = 0.7
# Changing the after-sales flow half-way ("actually, exchange it instead of returning it").
AFTER_SALES_FLOWS = {"aftersales.return", "aftersales.exchange"}
SWITCH = re.compile(r"改成|换成|还是(换|退)|instead|rather", re.I)
# A reason ("小了，穿着不合适") sounds like a return to the classifier: switching flows takes the words.
FLOW_WORDS = {"aftersales.return": re.compile(r"退货|退掉|退回|退钱|退了吧|\breturn|send it back|refund", re.I),
              "aftersales.exchange": re.compile(r"换货|换一|换个|换成|调换|exchange|swap|replace", re.I)}
COMPLAINT_CUE = re.compile(r"投诉|差评|12315|complain|report you", re.I)
# A corrected order number after an answer about another order ("不对，是55120963", "no, I meant ...").
CORRECTION = re.compile(r"不对|不是|错了|搞错|说错|我是说|应该是|其实是|\bno\b|wrong|I meant|actually|sorry", re.I)
BARE_VALUE = re.compile(r"[\d\s\W_]|订单|单号|号码|号|就是|是|嗯|哦|啊|\b(order|number|it|is|it's|its|my|the|this|one|that)\b", re.I)
LETTERS = re.compile(r"[A-Za-z\u3040-\u30ff\u4e00-\u9fff]")
# The caller speaks of their own order or item, not of the rules in general.
MY_ORDER = re.compile(r"我的|我买的|我这|我那|我刚|这个|这件|这单|那个单|那件|\b(my|mine|this|these|it)\b", re.I)
COUPON_REQUEST = re.compile(r"(发|给|送|要|领).{0,10}券|补偿|\b(send|give|get|grant|issue) me\b.{0,25}coupon|"
                            r"\bi\s*('d like|would like|want|need)\b.{0,25}coupon|\b(can|could|may) i (get|have)\b.{0,25}coupon|"
                            r"compensat", re.I)
# Code rather than speech ("'; DROP TABLE orders; --"): refused like an attempt to override the rules.
CODE_LIKE = re.compile(r";\s*--|\b(drop|truncate|alter)\s+table\b|\bunion\s+select\b|\bdelete\s+from\b|"
                       r"\binsert\s+into\b|<\s*script|\$\{|\{\{", re.I)


@dataclass
class DialogState:
    language: str = "zh"
    customer_id: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    pending_intent: str | None = None  # a question waiting for a slot (e.g. the order number)
    awaiting: str | None = None  # the slot the last reply asked for, when it is not the order ("reason")
    customer_tier: str | None = None  # looked up once per call ("" when not a known customer)
    failed_turns: int = 0  # unanswered turns in a row
    unclear_turns: int = 0  # turns not understood in a row (a clarifying question asked)
    intents: list[str] = field(default_factory=list)
    emotion: CallerEmotion = field(default_factory=CallerEmotion)  # per turn and running
    languages: LanguageTracker = field(default_factory=LanguageTracker)  # the steady dialect
    apologized: bool = False  # the first dissatisfaction was met with an apology (and a coupon)
    transfer_failures: int = 0
    callback_ticket: str | None = None
    escalations: list[dict] = field(default_factory=list)  # every turn's decision, with its reason
    tried: list[str] = field(default_factory=list)  # what the agent did, for the handoff summary
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), the last turns


@dataclass
class Reply:
    text: str
    understanding: Understanding
    intent: str
    slots: dict[str, str]
    handoff: bool = False
    handoff_reason: str | None = None
    handoff_target: str | None = None
    handoff_summary: dict | None = None
    escalation: Escalation = field(default_factory=Escalation)
    emotion: TurnEmotion | None = None  # the turn's emotion from words and voice
    resolved: bool = False  # the turn answered the caller's question
    source: str = "template"  # "template" or "llm"
    grounding: list[str] = field(default_factory=list)
    llm_first_token_ms: float | None = None
    dialog_ms: float = 0.0
    keeps_pending: bool = False  # answered, and still open for the value it offered to take (an order number)
    streaming: bool = False  # the caller speaks the reply as it comes: an LLM reply arrives in `pieces`
    pieces: Iterator[str] | None = None  # checked clauses of a streamed reply; fills `text` when consumed


class DialogEngine:
    def __init__(self, nlu: NLU, shop: ShopRepository, llm: LanguageModel | None = None, low_confidence: float = 0.45,
                 kb=None, cache: HotCache | None = None, escalation: EscalationPolicy | None = None):
        self.nlu = nlu
        self.escalation = escalation or EscalationPolicy(EscalationConfig())
        self.shop = shop
        self.llm = llm
        self.low_confidence = low_confidence
        self.kb = kb
        self.cache = cache
        self._checker = None  # the grounding checker, for what the LLM says (built on first use)

    def respond_cached(self, text: str, state: DialogState, language: str | None = None,
                       voice: HeardVoice | None = None, at_s: float = 0.0) -> Reply | None:
        """The hot-question path: the cached reply to a context-free question, or None. A dict lookup,
        cheap enough to run on the event loop before handing a miss to a worker thread. A caller
        whose voice is raised goes the full way (the escalation policy may have more to say)."""
        if self.cache is None or state.pending_intent is not None or state.awaiting is not None:
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

    def respond(self, text: str, state: DialogState, language: str | None = None, cache_checked: bool = False,
                stream: bool = False, voice: HeardVoice | None = None, at_s: float = 0.0,
                language_scores: dict[str, float] | None = None) -> Reply:
        """One caller turn. `cache_checked`: the caller already tried respond_cached and missed.
        `stream`: an LLM reply may come as `reply.pieces`, to be spoken clause by clause.
        `voice`: how the turn sounded (a voice call); `at_s`: when it started on the call's timeline;
        `language_scores`: the recogniser's language probabilities (Cantonese, where it knows it)."""
        t0 = time.perf_counter()
        if not cache_checked and (cached := self.respond_cached(text, state, language, voice, at_s)) is not None:
            return cached
        customer = self.shop.customer(state.customer_id) if state.customer_id else None
        tier = customer.tier if customer else None
        state.customer_tier = tier or ""
        lang_hint = language if language in ("zh", "en") else None
        context_free = state.pending_intent is None and state.awaiting is None

        u = self.nlu.understand(text, language, language_scores)
        lang = u.language if u.language in ("zh", "en") else state.language
        if lang_hint is None and (not LETTERS.search(text) or CODE_LIKE.search(text)):
            lang = state.language  # a bare number, emoji or code keeps the call's language
        state.language = lang
        intent = self._in_context(u, state, text)
        state.slots.update(u.slots)
        state.intents.append(intent)
        state.history = (state.history + [("caller", text)])[-20:]
        emotion = self._perceive(u, state, voice, at_s)
        dialect = state.languages.observe_dialect(u.dialect, text) if lang == "zh" else state.languages.dialect
        unsure = self._unsure(u, intent) and not (state.awaiting and intent == state.pending_intent)
        # not understood: a clarifying question, or the classifier unsure and no context to read it by
        low = unsure or (u.confidence < self.low_confidence and intent == u.intent)
        decision = self.escalation.decide(
            wants_person=intent == "handoff.human", text=text, emotion=emotion,
            angry_recent=state.emotion.angry_turns(3), dialect=dialect,
            unclear_in_row=state.unclear_turns + (1 if low else 0), failed_in_row=state.failed_turns,
            apologized=state.apologized)
        reply = Reply("", u, intent, dict(state.slots), streaming=stream, escalation=decision, emotion=emotion)
        unclear = False
        if decision.action == "transfer" and state.transfer_failures >= self.escalation.config.max_transfer_attempts:
            # the human queue did not answer before: the callback stands, the caller is not put on hold again
            reply.text = templates.render(lang, "callback_pending", ticket_id=state.callback_ticket or "")
            reply.escalation = Escalation("none", "transfer_unavailable", decision.reason)
        elif decision.action == "transfer":
            key = {"caller_request": "handoff", "sensitive_topic": "handoff_topic", "dialect": "handoff_dialect",
                   "angry": "handoff_angry", "low_confidence": "handoff_unclear",
                   "repeated_failure": "handoff_unclear"}.get(decision.reason or "", "handoff")
            reply.text = templates.render(lang, key)
            reply.handoff, reply.handoff_reason, reply.resolved = True, decision.reason, False
            reply.handoff_target = decision.target
        elif is_injection(text) or CODE_LIKE.search(text):
            reply.text = templates.render(lang, "injection")
            reply.escalation = Escalation()  # an attempt on the rules earns no goodwill coupon
            state.intents[-1] = "other"  # a refused request is no question to come back to
            reply.resolved = True  # a clear answer, not a failure to understand
        elif state.pending_intent and NEVER_MIND.search(text):
            state.pending_intent = state.awaiting = None
            reply.text = templates.render(lang, "flow_cancelled")
            reply.resolved = True
        elif OTHER_ORDER.search(text) and "order_id" not in u.slots and "order_id" in state.slots:
            reply.text = self._other_order(state, reply, lang)
        elif unsure:
            reply.text = templates.render(lang, "clarify")
            unclear = True
        else:
            self._answer(intent, u, state, reply, lang, customer)
        state.unclear_turns = state.unclear_turns + 1 if low and not reply.handoff else 0
        if unclear:
            state.tried.append("asked to clarify")
        # Unanswered turns in a row (clarifying questions, unknown orders, out-of-scope requests,
        # asking again for a value): the third one sends the next turn to a person.
        state.failed_turns = 0 if reply.resolved else state.failed_turns + (0 if reply.handoff else 1)
        if (reply.resolved and not reply.keeps_pending) or reply.handoff:
            state.pending_intent = state.awaiting = None
        reply.text = self._styled(reply, tier, lang)
        if reply.escalation.action == "apologize":
            self._apologize(reply, state, customer, lang)
        reply.text, masked = filter_output(reply.text)
        if masked:
            reply.grounding.append("safety:masked")
        reply.slots = dict(state.slots)
        if self.cache is not None and context_free and reply.resolved and reply.pieces is None and _context_free(reply) \
                and reply.escalation.action == "none":
            self.cache.put(lang_hint or "auto", tier, text,
                           CachedReply(reply.text, reply.intent, tuple(reply.grounding), reply.resolved, u,
                                       state.pending_intent if reply.keeps_pending else None))
        _cite_tier(reply, state)
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
        _cite_tier(reply, state)
        self._after_turn(reply, state)
        reply.dialog_ms = round((time.perf_counter() - t0) * 1000, 3)
        return reply

    # -- perception and escalation ----------------------------------------------------------------

    def _perceive(self, u: Understanding, state: DialogState, voice: HeardVoice | None, at_s: float) -> TurnEmotion:
        """The turn's emotion from the words (the NLU's reading) and the voice against this caller's
        baseline; the running state moves on. The understanding carries the result."""
        words = TextEmotion(u.text_emotion, u.text_anger, list(u.emotion_cues))
        reading = None
        if voice is not None and voice.features is not None:
            reading = state.emotion.baseline.read(voice.features)
        emotion = state.emotion.observe(words, reading, voice.model if voice is not None else None, at_s)
        u.emotion, u.anger = emotion.label, emotion.anger
        return emotion

    def _apologize(self, reply: Reply, state: DialogState, customer, lang: str) -> None:
        """First clear dissatisfaction: an apology before the answer and, where the shop's coupon
        policy allows (a known customer, not compensated lately, budget left), a goodwill coupon."""
        state.apologized = True
        sep = "" if lang == "zh" else " "
        opening = "" if re.match(r"(非常)?抱歉|对不起|I'm (very |really |so )?sorry", reply.text) else templates.render(lang, "apology")
        compensated = any(g.startswith("coupons:") for g in reply.grounding)
        if self.escalation.config.compensation and customer is not None and not compensated:
            grant = self.shop.issue_coupon(customer, reason="apology")
            if grant.coupon_id:
                reply.grounding.append(f"coupons:{grant.coupon_id}")
                opening += sep + templates.render(lang, "apology_coupon", amount=f"{grant.amount:g}",
                                                  min_spend=f"{grant.min_spend:g}")
                state.tried.append(f"coupon {grant.coupon_id} ({grant.amount:g})")
        opening = opening.strip()
        if not opening:
            return
        if reply.pieces is not None:  # a streamed reply: the apology is said first
            reply.pieces = itertools.chain([opening], reply.pieces)
        reply.text = opening + (sep + reply.text if reply.text else "")
        state.tried.append("apology")

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

    def _styled(self, reply: Reply, tier: str | None, lang: str) -> str:
        """Style by customer tier, as the seeds describe: VIP warmer and fuller, new customers concise."""
        if not reply.resolved or reply.handoff or not reply.text or reply.intent.startswith("chitchat."):
            return reply.text
        if tier == "vip":
            sep = "" if lang == "zh" else " "
            return templates.tier_opening(lang, tier) + reply.text + sep + templates.render(lang, "vip_closing")
        if tier == "new" and len(reply.text) > (80 if lang == "zh" else 260):
            return _first_sentences(reply.text, lang, 2)
        return reply.text

    def _other_order(self, state: DialogState, reply: Reply, lang: str) -> str:
        """"No, the other order": the caller's next most recent order, or ask which one."""
        current = state.slots.pop("order_id")
        if state.customer_id:
            others = [o for o in self.shop.orders_for_customer(state.customer_id) if o.order_id != current]
            if others:
                state.slots["order_id"] = others[0].order_id
                intent = state.pending_intent or next((i for i in reversed(state.intents[:-1]) if i in ORDER_INTENTS),
                                                      "order.status")
                switch = templates.render(lang, "other_order", order_id=others[0].order_id)
                answer = self._order_answer(intent, state, reply, lang)
                reply.intent = intent
                return switch + ("" if lang == "zh" else " ") + answer
        state.pending_intent = state.pending_intent or next(
            (i for i in reversed(state.intents[:-1]) if i in ORDER_INTENTS), "order.status")
        return templates.render(lang, "which_order")

    def _in_context(self, u: Understanding, state: DialogState, text: str) -> str:
        """The turn's intent given the conversation so far: a value continues the question waiting for
        it, a reason answers "why?", a switch between return and exchange moves the flow, and a
        corrected order number re-asks the last order question."""
        intent = u.intent
        if intent == "handoff.human" and u.cue is None and u.confidence < WANTS_PERSON_CONFIDENCE:
            # no words asking for a person and an unsure classifier ("no, I meant 38512074"): not a request
            intent = "other"
        explicit = intent not in CONTINUATION_INTENTS and u.confidence >= 0.6
        gives_order = bool({"order_id", "phone", "tracking_no"} & u.slots.keys())
        pending = state.pending_intent
        # nothing but a value, maybe as a correction ("订单号是32755708", "sorry, I meant 20241108"):
        # whatever the classifier makes of so few words, the caller answers the open question
        bare = not BARE_VALUE.sub("", CORRECTION.sub("", text))
        if state.awaiting == "reason" and pending:
            if NEVER_MIND.search(text) or intent == "handoff.human":
                return intent
            # "actually, exchange it instead": the same order, the other flow (its reason is asked anew)
            if intent in AFTER_SALES_FLOWS and intent != pending and (
                    SWITCH.search(text) or (explicit and FLOW_WORDS[intent].search(text))):
                return intent
            if intent != "aftersales.complaint" or not COMPLAINT_CUE.search(text):
                # the answer to "why do you want to return it?" is the reason, whatever it sounds like
                u.slots.setdefault("reason", _reason_from(text))
                return pending
            return intent
        if pending:
            # a value after "which order?" / "which product?" continues the question, unless the
            # caller plainly asks something else ("I want to return 38512074")
            supplies = gives_order if pending in ORDER_INTENTS else "product" in u.slots
            if supplies and (bare or not (explicit and intent in ORDER_INTENTS | PRODUCT_INTENTS | {"aftersales.complaint"})):
                return pending
            return intent
        last = state.intents[-1] if state.intents else None
        if "order_id" in u.slots and last in ORDER_INTENTS and (bare or (not explicit and CORRECTION.search(text))):
            return last  # "不对，是55120963" / "it's 32755708" after an answer about another order
        if intent in ("other", "chitchat.greeting") and gives_order and u.confidence < 0.6:
            # an order or tracking number with no clear question around it: the caller wants it looked up
            return "logistics.track" if "tracking_no" in u.slots else "order.status"
        return intent

    def _unsure(self, u: Understanding, intent: str) -> bool:
        """Ask a clarifying question rather than answer a question the caller may not have asked."""
        if intent != u.intent or intent == "other":
            return False
        if intent in ("chitchat.greeting", "chitchat.goodbye"):
            return u.confidence < self.low_confidence
        if u.confidence >= self.low_confidence:
            return False
        # a value the answer needs (an order number, a product) makes the caller's aim plain enough
        if intent in ORDER_INTENTS and {"order_id", "tracking_no", "phone"} & u.slots.keys():
            return False
        if intent in PRODUCT_INTENTS and "product" in u.slots:
            return False
        return group_probability(intent, u.scores) < self.low_confidence

    # -- answers --------------------------------------------------------------------------------

    def _answer(self, intent: str, u: Understanding, state: DialogState, reply: Reply, lang: str, customer) -> None:
        if intent in ORDER_INTENTS:
            text = self._order_answer(intent, state, reply, lang)
        elif intent in PRODUCT_INTENTS:
            text = self._product_answer(intent, u, state, reply, lang)
        elif intent == "aftersales.complaint" and u.confidence < ACTION_CONFIDENCE and not COMPLAINT_CUE.search(u.text):
            text = templates.render(lang, "clarify")  # "I ordered a blender two weeks ago": no ticket on a guess
        elif intent == "aftersales.complaint":
            text = self._complaint(state, customer, reply, lang)
        elif intent == "promo.coupon" and COUPON_REQUEST.search(u.text):
            text = self._coupon(customer, u.text, reply, lang)
        elif intent in ("aftersales.warranty", "aftersales.invoice", "promo.coupon"):
            key = {"aftersales.warranty": "warranty", "aftersales.invoice": "invoice", "promo.coupon": "coupon"}[intent]
            text = self._knowledge(u.text, lang, reply, intent) or self._policy(key, lang, reply)
            reply.resolved = True
        elif intent == "account.info":
            policy = self._policy("membership", lang, reply)
            if customer:
                text = templates.render(lang, "account", tier=templates.value(lang, f"tier_{customer.tier}"),
                                        points=customer.points, policy=policy)
                reply.grounding.append(f"customers:{customer.customer_id}")
            else:
                text = policy
            reply.resolved = True
        elif intent == "other" and (found := self._knowledge(u.text, lang, reply)):
            text, reply.resolved = found, True  # a shop question the intents do not name
        elif intent in ("chitchat.greeting", "chitchat.goodbye", "other"):
            key = {"chitchat.greeting": "greeting", "chitchat.goodbye": "goodbye", "other": "other"}[intent]
            text = self._small_talk(u.text, key, lang, reply)
            reply.resolved = intent != "other"
        else:
            text = templates.render(lang, "clarify")
        reply.text = text

    def _knowledge(self, question: str, lang: str, reply: Reply, intent: str | None = None) -> str:
        """A knowledge-base passage that answers the question (among those for `intent` when given),
        cited in the turn record; or ""."""
        if self.kb is None:
            return ""
        hit = self.kb.answer(question, lang, intent)
        if hit is None:
            return ""
        reply.grounding.append(f"kb:{hit.passage.id}")
        return hit.passage.answer

    def _coupon(self, customer, text: str, reply: Reply, lang: str) -> str:
        policy = self._policy("coupon", lang, reply)
        grant = self.shop.issue_coupon(customer, reason="caller request")
        reply.resolved = True
        if grant.coupon_id is None:
            key = {"cooldown": "coupon_cooldown", "budget": "coupon_budget"}.get(grant.refusal or "")
            return templates.render(lang, key, policy=policy, cooldown_days=self.shop.coupon_policy.cooldown_days) \
                if key else policy
        reply.grounding.append(f"coupons:{grant.coupon_id}")
        issued = templates.render(lang, "coupon_issued", amount=f"{grant.amount:g}", min_spend=f"{grant.min_spend:g}",
                                  expires_at=spoken_date(grant.expires_at, lang))
        asked = re.search(r"(\d+)\s*(元|块|yuan|rmb)", text, re.I)
        if asked and float(asked.group(1)) > grant.amount:  # more than policy allows: say so
            issued = templates.render(lang, "coupon_limit", amount=f"{grant.amount:g}") + ("" if lang == "zh" else " ") + issued
        return issued

    def _complaint(self, state: DialogState, customer, reply: Reply, lang: str) -> str:
        """Log the complaint; a known customer also gets the goodwill coupon policy allows."""
        order = self.shop.order(state.slots["order_id"]) if "order_id" in state.slots else None
        if order is not None and state.customer_id and order.customer_id != state.customer_id:
            order = None
        ticket = self.shop.create_ticket("complaint", order, state.slots.get("reason"), detail=reply.understanding.text)
        reply.grounding.append(f"tickets:{ticket.ticket_id}")
        reply.resolved = False  # a person follows it up
        grant = self.shop.issue_coupon(customer, reason="complaint") if customer else None
        if grant is not None and grant.coupon_id:
            reply.grounding.append(f"coupons:{grant.coupon_id}")
            return templates.render(lang, "complaint_coupon", ticket_id=ticket.ticket_id, amount=f"{grant.amount:g}",
                                    min_spend=f"{grant.min_spend:g}")
        return templates.render(lang, "complaint_ticket", ticket_id=ticket.ticket_id)

    def _policy(self, key: str, lang: str, reply: Reply) -> str:
        policy = self.shop.policy(key, lang)
        if policy is None:
            return ""
        if f"policies:{key}" not in reply.grounding:
            reply.grounding.append(f"policies:{key}")
        return policy[1]

    def _find_order(self, state: DialogState, reply: Reply) -> Order | None | str:
        """The order the caller means; 'ask' when we need the number, 'missing'/'foreign' on failure."""
        if "order_id" in state.slots:
            order = self.shop.order(state.slots["order_id"])
            if order is None:
                return "missing"
        elif "tracking_no" in state.slots:
            order = self.shop.order_by_tracking(state.slots["tracking_no"])
            if order is None:
                return "missing"
        elif state.customer_id:
            orders = self.shop.orders_for_customer(state.customer_id)
            order = orders[0] if orders else None
            if order is None:
                return "ask"
        elif "phone" in state.slots:
            customer = self.shop.customer_by_phone(state.slots["phone"])
            orders = self.shop.orders_for_customer(customer.customer_id) if customer else []
            if not orders:
                return "ask"
            order = orders[0]
        else:
            return "ask"
        # Never reveal another customer's order to an identified caller.
        if state.customer_id and order.customer_id != state.customer_id:
            return "foreign"
        reply.grounding.append(f"orders:{order.order_id}")
        return order

    def _order_answer(self, intent: str, state: DialogState, reply: Reply, lang: str) -> str:
        asked = reply.understanding.text
        known = None  # the knowledge base's answer to this turn: looked up at most once, for either use below
        if self._about_the_rules(state, reply):
            known = self._knowledge(asked, lang, reply, intent)
            if known:
                return self._general_answer(intent, state, reply, lang, known)
        found = self._find_order(state, reply)
        if found == "ask":
            state.pending_intent = intent
            sep = "" if lang == "zh" else " "
            # a policy question ("who pays return shipping?") gets its answer before the order is asked for
            if known is None and intent in POLICY_QUESTION_INTENTS and _is_question(asked):
                known = self._knowledge(asked, lang, reply, intent)
            lead = known or templates.ack(lang, intent)
            return (lead + sep + templates.render(lang, "ask_order_id")).strip()
        if found == "missing":
            state.pending_intent = intent
            bad = state.slots.pop("order_id", None) or state.slots.pop("tracking_no", "")
            return templates.render(lang, "order_not_found", order_id=bad)
        if found == "foreign":
            state.slots.pop("order_id", None)
            state.pending_intent = intent
            return templates.render(lang, "order_not_yours")
        order: Order = found
        reply.resolved = True
        v = self._order_values(order, lang)
        if intent == "order.status" or (intent == "logistics.track" and not order.tracking_no):
            if intent == "logistics.track":
                return templates.render(lang, "tracking_none", **v)
            return templates.render(lang, f"order_{order.status}", **v)
        if intent == "logistics.track":
            key = "order_delivered" if order.status == "delivered" else "order_shipped"
            return templates.render(lang, key, **v)
        if order.status in ("cancelled", "returned") and intent in ("order.cancel", "order.modify", "aftersales.return",
                                                                   "aftersales.exchange"):
            return templates.render(lang, f"order_{order.status}", **v)
        if intent in ("order.cancel", "order.modify"):
            policy = self._policy("cancel" if intent == "order.cancel" else "shipping", lang, reply)
            verb = "cancel" if intent == "order.cancel" else "modify"
            key = f"can_{verb}" if order.status == "paid" else f"cannot_{verb}"
            return templates.render(lang, key, policy=policy, **v)
        if intent in ("aftersales.return", "aftersales.exchange"):
            kind = "return" if intent == "aftersales.return" else "exchange"
            policy = self._policy(kind, lang, reply)
            window = self.shop.window_days(kind) or DEFAULT_WINDOW_DAYS[kind]
            if order.status != "delivered" or not order.delivered_at:
                return templates.render(lang, f"{kind}_not_delivered", policy=policy, **v)
            age = (self.shop.today - date.fromisoformat(order.delivered_at)).days
            if age > window:
                return templates.render(lang, f"{kind}_expired", policy=policy, window=window, **v)
            return self._after_sales_ticket(intent, order, state, reply, lang, v)
        if intent == "aftersales.refund":
            policy = self._policy("refund", lang, reply)
            key = "refund_status" if order.refund_status else "refund_none"
            return templates.render(lang, key, policy=policy, **v)
        return templates.render(lang, "clarify")

    @staticmethod
    def _about_the_rules(state: DialogState, reply: Reply) -> bool:
        """A question about the rules ("退货运费谁出", "how soon do you ship?"), not about one order of
        the caller's. An order already on the table ("什么时候能送到" after a parcel answer, "那能取消吗"
        after the caller's latest order was read out) is the one asked about."""
        text = reply.understanding.text
        previous = state.intents[-2] if len(state.intents) > 1 else None
        return not (reply.grounding or {"order_id", "phone", "tracking_no"} & state.slots.keys()
                    or previous in ORDER_INTENTS or not _is_question(text) or MY_ORDER.search(text))

    def _general_answer(self, intent: str, state: DialogState, reply: Reply, lang: str, known: str) -> str:
        """The knowledge base's answer to a rules question; the order flow stays open for a number."""
        reply.resolved = True
        reply.keeps_pending = True
        state.pending_intent = intent
        return known + ("" if lang == "zh" else " ") + templates.render(lang, "policy_offer")

    def _after_sales_ticket(self, intent: str, order: Order, state: DialogState, reply: Reply, lang: str, v: dict) -> str:
        """The seeds' return flow: order, eligibility, reason, then the ticket."""
        kind = "return" if intent == "aftersales.return" else "exchange"
        existing = self.shop.open_ticket(order.order_id, kind)
        if existing is not None:
            reply.grounding.append(f"tickets:{existing.ticket_id}")
            return templates.render(lang, "ticket_exists", ticket_id=existing.ticket_id, **v)
        if "reason" not in state.slots:
            reply.resolved = False
            state.pending_intent, state.awaiting = intent, "reason"
            return templates.render(lang, "ask_reason", **v)
        ticket = self.shop.create_ticket(kind, order, state.slots["reason"])
        reply.grounding.append(f"tickets:{ticket.ticket_id}")
        # what happens next is the policy's: refund times after a return, shipping the new item after an exchange
        policy = self._policy("refund" if kind == "return" else "exchange", lang, reply)
        return templates.render(lang, f"{kind}_ticket", ticket_id=ticket.ticket_id, policy=policy, **v)

    def _order_values(self, order: Order, lang: str) -> dict:
        events = self.shop.tracking(order.tracking_no, lang) if order.tracking_no else []
        last = events[-1] if events else None
        last_event = f"{spoken_date(last.at[:10], lang)}{last.location}{last.event}" if last else ""
        if lang == "en" and last:
            last_event = f"{last.event} in {last.location} on {spoken_date(last.at[:10], lang)}"
        return {
            "order_id": order.order_id,
            "product": order.product(lang),
            "ship_by": spoken_date(order.ship_by, lang),
            "shipped_at": spoken_date(order.shipped_at, lang),
            "delivered_at": spoken_date(order.delivered_at, lang),
            "carrier": order.carrier(lang),
            "tracking_no": order.tracking_no,
            "last_event": last_event,
            "status": templates.value(lang, f"status_{order.status}"),
            "refund_status": templates.value(lang, f"refund_{order.refund_status}") if order.refund_status else "",
            "amount": f"{order.amount:g}",
        }

    def _product_answer(self, intent: str, u: Understanding, state: DialogState, reply: Reply, lang: str) -> str:
        sku = state.slots.get("product")
        product = self.shop.product(sku) if sku else None
        if product is None and intent == "product.size":
            reply.resolved = True
            return templates.render(lang, "size_general", policy=self._policy("size_guide", lang, reply))
        if product is None and intent == "product.recommend":
            product = next((p for p in self.shop.products() if p.stock > 0), None)
        if product is None:
            state.pending_intent = intent
            return templates.render(lang, "product_ask")
        reply.grounding.append(f"products:{product.sku}")
        reply.resolved = True
        sep = "、" if lang == "zh" else ", "
        values = {
            "product": product.name(lang),
            "price": f"{product.price:g}",
            "stock": product.stock,
            "restock_date": spoken_date(product.restock_date, lang),
            "material": product.material_zh if lang == "zh" else product.material_en,
            "colors": sep.join(product.colors_zh if lang == "zh" else product.colors_en),
            "sizes": sep.join(product.sizes) if product.sizes else ("均码" if lang == "zh" else "one size"),
            "advice": product.size_advice_zh if lang == "zh" else product.size_advice_en,
        }
        if intent == "product.size":
            return templates.render(lang, "size_product", **values)
        if intent == "product.price":
            return templates.render(lang, "price", **values)
        if intent == "product.stock":
            return templates.render(lang, "stock_in" if product.stock > 0 else "stock_out", **values)
        if intent == "product.recommend":
            return templates.render(lang, "recommend", **values)
        return templates.render(lang, "product_info", **values)

    # -- small talk through the LLM ---------------------------------------------------------------

    _LLM_SYSTEM = ("You are a phone customer-service agent for an online shop selling clothes, shoes and home goods. "
                   "Reply to the caller in one short, polite sentence and offer help with orders, deliveries, returns "
                   "or products. Never state prices, dates, numbers, weather, news or any other facts.")
    _STEERS_BACK = re.compile(r"\b(help|assist|order|deliver|return|product|shop|support|service)\w*", re.I)
    _FACT_WORDS = re.compile(r"\d|weather|sunny|rain|temperature|degrees|price|cost|yuan|dollar|\$|free|discount|"
                             r"tomorrow|today is|stock market|percent|%", re.I)

    def _grounding_checker(self):
        if self._checker is None:
            from .grounding import GroundingChecker

            self._checker = GroundingChecker(self.shop, self.kb)
        return self._checker

    def _small_talk(self, text: str, key: str, lang: str, reply: Reply) -> str:
        fallback = templates.render(lang, key)
        if self.llm is None or lang != "en":  # the embedded LLM speaks English only
            return fallback
        if key == "goodbye":
            return fallback  # nothing to add to a goodbye (and a 135M model adds condolences)
        pieces = self._small_talk_pieces(text, key, lang, reply, fallback, strict=not reply.streaming)
        if reply.streaming:
            reply.pieces = pieces  # the caller's session speaks each piece as soon as it is checked
            return ""
        return " ".join(pieces)

    # A clause worth speaking on its own: a sentence, or a comma-clause of a few words (shorter ones
    # sound choppy when synthesised apart).
    _CLAUSE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[.!?;])$|(?<=,)\s+(?=\S)")

    def _next_clause(self, buffer: str) -> tuple[str, str] | None:
        for m in self._CLAUSE_END.finditer(buffer):
            clause = " ".join(buffer[: m.start()].split())
            if re.search(r"[.!?;]$", clause) or len(clause.split()) >= 4:
                return clause, buffer[m.end():]
        return None

    def _small_talk_pieces(self, text: str, key: str, lang: str, reply: Reply, fallback: str,
                           strict: bool = False) -> Iterator[str]:
        """The LLM's words cut into clauses as they stream, each checked before it is let out: no
        fact without a record behind it (the grounding checker finds any number, date, price,
        product or policy term), at most two sentences and 30 words. A clause that fails ends the
        LLM's part; the fixed reply covers what it did not say. `strict` (nothing is spoken until
        the end): a failing clause discards the LLM's words altogether. Sets reply.text when consumed."""
        t0 = time.perf_counter()
        said: list[str] = []
        out: list[str] = []
        words = sentences = 0
        checker = self._grounding_checker()

        def admit(clause: str) -> bool:
            nonlocal words, sentences
            words += len(clause.split())
            if words > 30 or sentences >= 2 or self._FACT_WORDS.search(clause):
                return False
            key_words = re.sub(r"\W+", " ", clause.lower()).strip()
            if any(key_words in prev or prev in key_words for prev in (re.sub(r"\W+", " ", s.lower()).strip() for s in said)):
                return False  # a small model looping on itself
            if not checker.check(clause, lang, reply.grounding, caller_said=[text]).ok:
                return False
            sentences += bool(re.search(r"[.!?]$", clause))
            return True

        stream = self.llm.stream([{"role": "system", "content": self._LLM_SYSTEM},
                                  {"role": "user", "content": text[:300]}])
        buffer = ""
        stopped = False
        try:
            for token in stream:
                if reply.llm_first_token_ms is None:
                    reply.llm_first_token_ms = round((time.perf_counter() - t0) * 1000, 1)
                buffer += token
                while (cut := self._next_clause(buffer)) is not None:
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
        if not said or key == "other" or not self._STEERS_BACK.search(full):
            out.append(fallback)
            yield fallback
        reply.text = " ".join(out)


_REASON_WORDS = [("尺码", "does_not_fit"), ("大了", "too_big"), ("小了", "too_small"), ("质量", "quality"), ("坏", "damaged"),
                 ("不喜欢", "changed_mind"), ("size", "does_not_fit"), ("big", "too_big"), ("small", "too_small"),
                 ("quality", "quality"), ("broken", "damaged"), ("don't like", "changed_mind"), ("fit", "does_not_fit")]


def _reason_from(text: str) -> str:
    lowered = text.lower()
    return next((reason for word, reason in _REASON_WORDS if word in lowered), "other")


def _cite_tier(reply: Reply, state: DialogState) -> None:
    """A reply styled for the caller's tier ("Thank you for being a VIP member") states the tier: it
    cites the caller's customer record."""
    opening = templates.tier_opening(state.language, state.customer_tier) if state.customer_tier else ""
    cite = f"customers:{state.customer_id}"
    if opening and reply.text.startswith(opening) and cite not in reply.grounding:
        reply.grounding.append(cite)


def _context_free(reply: Reply) -> bool:
    """Cacheable: grounded only in policies and the knowledge base (or in nothing), no actions."""
    return all(g.startswith(("policies:", "kb:")) for g in reply.grounding) and reply.source != "llm"


def _first_sentences(text: str, lang: str, n: int) -> str:
    parts = re.split(r"(?<=[。！？])" if lang == "zh" else r"(?<=[.!?])\s+", text)
    return ("" if lang == "zh" else " ").join(p for p in parts[:n] if p).strip()


def _is_question(text: str) -> bool:
    return bool(QUESTION.search(text))
