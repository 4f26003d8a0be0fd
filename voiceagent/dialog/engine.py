"""The first dialog step: one caller turn in, one grounded reply out.

Facts come from the shop repository (orders, parcels, products, policies) and are slotted into
the templates of prompts/; each reply lists the records it used (`grounding`). The LLM only
speaks where no fact is needed (small talk, out-of-scope questions in English) and its output is
checked before use. Conversation state (slots gathered so far, failures, anger) carries across
turns, so "it's 38512074" after "where is my parcel?" answers the parcel question.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date

from ..llm import LanguageModel
from ..textnorm import spoken_date
from ..shop import Order, ShopRepository
from . import templates
from .handoff import decide
from .intents import group_probability
from .nlu import NLU, Understanding

# Intents whose answer needs an order; the order can come from any earlier turn.
ORDER_INTENTS = {"order.status", "order.modify", "order.cancel", "logistics.track", "aftersales.return",
                 "aftersales.exchange", "aftersales.refund"}
PRODUCT_INTENTS = {"product.info", "product.size", "product.price", "product.stock", "product.recommend"}
# A turn that only supplies a value (an order number) continues the previous question.
CONTINUATION_INTENTS = {"other", "chitchat.greeting", "order.status"}


@dataclass
class DialogState:
    language: str = "zh"
    customer_id: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    pending_intent: str | None = None  # a question waiting for a slot (e.g. the order number)
    failed_turns: int = 0
    angry_turns: int = 0
    intents: list[str] = field(default_factory=list)


@dataclass
class Reply:
    text: str
    understanding: Understanding
    intent: str
    slots: dict[str, str]
    handoff: bool = False
    handoff_reason: str | None = None
    resolved: bool = False  # the turn answered the caller's question
    source: str = "template"  # "template" or "llm"
    grounding: list[str] = field(default_factory=list)
    llm_first_token_ms: float | None = None
    dialog_ms: float = 0.0


class DialogEngine:
    def __init__(self, nlu: NLU, shop: ShopRepository, llm: LanguageModel | None = None, low_confidence: float = 0.45):
        self.nlu = nlu
        self.shop = shop
        self.llm = llm
        self.low_confidence = low_confidence

    def respond(self, text: str, state: DialogState, language: str | None = None) -> Reply:
        t0 = time.perf_counter()
        u = self.nlu.understand(text, language)
        lang = u.language if u.language in ("zh", "en") else state.language
        state.language = lang
        intent = u.intent
        # A bare order number after "which order?" continues the pending question.
        if state.pending_intent and (intent in CONTINUATION_INTENTS or u.confidence < 0.6) and (
            "order_id" in u.slots or "phone" in u.slots or "tracking_no" in u.slots or "product" in u.slots
        ):
            intent = state.pending_intent
        state.slots.update(u.slots)
        state.intents.append(intent)
        angry_before = state.angry_turns
        if u.emotion == "angry":
            state.angry_turns += 1

        decision = decide(u, angry_turns=angry_before, failed_turns=state.failed_turns)
        reply = Reply("", u, intent, dict(state.slots))
        if decision.handoff:
            key = "handoff_angry" if decision.reason in ("angry", "sensitive_topic") or u.emotion == "angry" else "handoff"
            reply.text = templates.render(lang, key)
            reply.handoff, reply.handoff_reason, reply.resolved = True, decision.reason, False
        elif self._unsure(u, intent):
            reply.text = templates.render(lang, "clarify")
        else:
            self._answer(intent, u, state, reply, lang)
        # Unanswered turns in a row (clarifying questions, unknown orders, out-of-scope requests,
        # asking again for a value): the third one sends the next turn to a person.
        state.failed_turns = 0 if reply.resolved else state.failed_turns + (0 if reply.handoff else 1)
        if reply.resolved or reply.handoff:
            state.pending_intent = None
        reply.slots = dict(state.slots)
        reply.dialog_ms = round((time.perf_counter() - t0) * 1000, 1)
        return reply

    def _unsure(self, u: Understanding, intent: str) -> bool:
        """Ask a clarifying question rather than answer a question the caller may not have asked."""
        if intent != u.intent or intent in ("chitchat.greeting", "chitchat.goodbye", "other"):
            return False
        if u.confidence >= self.low_confidence:
            return False
        # a value the answer needs (an order number, a product) makes the caller's aim plain enough
        if intent in ORDER_INTENTS and {"order_id", "tracking_no"} & u.slots.keys():
            return False
        if intent in PRODUCT_INTENTS and "product" in u.slots:
            return False
        return group_probability(intent, u.scores) < self.low_confidence

    # -- answers --------------------------------------------------------------------------------

    def _answer(self, intent: str, u: Understanding, state: DialogState, reply: Reply, lang: str) -> None:
        customer = self.shop.customer(state.customer_id) if state.customer_id else None
        opening = templates.tier_opening(lang, customer.tier if customer else None)
        if intent in ORDER_INTENTS:
            text = self._order_answer(intent, state, reply, lang)
        elif intent in PRODUCT_INTENTS:
            text = self._product_answer(intent, u, state, reply, lang)
        elif intent == "aftersales.complaint":
            order_id = state.slots.get("order_id")
            text = templates.render(lang, "complaint_order" if order_id else "complaint", order_id=order_id)
            reply.resolved = False
        elif intent in ("aftersales.warranty", "aftersales.invoice", "promo.coupon"):
            key = {"aftersales.warranty": "warranty", "aftersales.invoice": "invoice", "promo.coupon": "coupon"}[intent]
            text = self._policy(key, lang, reply)
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
        elif intent in ("chitchat.greeting", "chitchat.goodbye", "other"):
            key = {"chitchat.greeting": "greeting", "chitchat.goodbye": "goodbye", "other": "other"}[intent]
            text = self._small_talk(u.text, key, lang, reply)
            reply.resolved = intent != "other"
        else:
            text = templates.render(lang, "clarify")
        reply.text = (opening + text) if opening and reply.resolved else text

    def _policy(self, key: str, lang: str, reply: Reply) -> str:
        policy = self.shop.policy(key, lang)
        if policy is None:
            return ""
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
        found = self._find_order(state, reply)
        if found == "ask":
            state.pending_intent = intent
            sep = "" if lang == "zh" else " "
            return (templates.ack(lang, intent) + sep + templates.render(lang, "ask_order_id")).strip()
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
        if intent in ("order.cancel", "order.modify"):
            policy = self._policy("cancel" if intent == "order.cancel" else "shipping", lang, reply)
            verb = "cancel" if intent == "order.cancel" else "modify"
            key = f"can_{verb}" if order.status == "paid" else f"cannot_{verb}"
            return templates.render(lang, key, policy=policy, **v)
        if intent in ("aftersales.return", "aftersales.exchange"):
            policy = self._policy("return" if intent == "aftersales.return" else "exchange", lang, reply)
            window = 7 if intent == "aftersales.return" else 15
            if order.status != "delivered" or not order.delivered_at:
                return templates.render(lang, "return_not_delivered", policy=policy, **v)
            age = (self.shop.today - date.fromisoformat(order.delivered_at)).days
            return templates.render(lang, "return_eligible" if age <= window else "return_expired", policy=policy, **v)
        if intent == "aftersales.refund":
            policy = self._policy("refund", lang, reply)
            key = "refund_status" if order.refund_status else "refund_none"
            return templates.render(lang, key, policy=policy, **v)
        return templates.render(lang, "clarify")

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
        product = next((p for p in self.shop.products() if p.sku == sku), None) if sku else None
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
            "restock_date": product.restock_date or "",
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

    def _small_talk(self, text: str, key: str, lang: str, reply: Reply) -> str:
        fallback = templates.render(lang, key)
        if self.llm is None or lang != "en":  # the embedded LLM speaks English only
            return fallback
        t0 = time.perf_counter()
        first = None
        pieces: list[str] = []
        try:
            for piece in self.llm.stream([{"role": "system", "content": self._LLM_SYSTEM},
                                          {"role": "user", "content": text[:300]}]):
                if first is None:
                    first = time.perf_counter()
                pieces.append(piece)
        except Exception:  # the LLM is an optional voice: a failure falls back to the template
            return fallback
        reply.llm_first_token_ms = round(((first or time.perf_counter()) - t0) * 1000, 1)
        out = " ".join(re.split(r"(?<=[.!?])\s", " ".join("".join(pieces).split()))[:2])  # two sentences at most
        # Keep the LLM's words only when they carry no fact and steer back to the shop's business.
        if not out or len(out.split()) > 30 or self._FACT_WORDS.search(out) or not self._STEERS_BACK.search(out):
            return fallback
        reply.source = "llm"
        return out if key != "other" else f"{out} {fallback}"
