"""The dialog's flows: small units that each answer one kind of turn, chosen by a router.

A turn reaches a flow as a `Turn` (the words, the NLU's `Understanding`, the intent read in
context, the language, the customer, the escalation decision, the dialog state to read, and the
shop's `Tools`). The flow returns a `FlowResult`: the reply text, the records it cites, whether it
answered, and a `StateUpdate` with the slots and fields it changes. Flows write neither the state
nor the reply; `DialogEngine` applies the result in one place (`base.apply`).

Layout:
    state.py             DialogState (carried across turns) and Reply (one turn's answer)
    base.py              Turn, Tools, FlowResult, StateUpdate, Route, Router, apply
    context.py           the turn read in context: first as the answer to the open task's question
                         ("尺码太小了" is the reason, "对" the go-ahead), then as a new request
    customer_service.py  the routing table of the customer-service conversation
    tasks.py             tasks over turns (return, exchange, order change, cancel, parcel, refund):
                         gather the slots, pick the order, read back, act once confirmed; change of
                         mind, resume, questions on the side, follow-ups
    order_choice.py      which of the caller's orders a task means, and naming them when two fit
    wanted.py            the size and colour a caller asks for ("换成30码的 要黑色", "a forty three")
    addresses.py         addresses as callers say them, zh and en
    answers.py           yes, no, goodbye and "drop it" as callers answer a read-back
    control.py           transfer, callback, refusal, never mind, clarify
    orders.py            status, tracking, cancel/modify, return/exchange ticket, refund, other order
    products.py          size, price, stock, recommendation, product info
    service.py           complaint, coupon, warranty/invoice rules, account, knowledge-base questions
    small_talk.py        greetings, goodbyes, out-of-scope turns (template or checked LLM words)
    facts.py             lookups the flows share (policy, knowledge base, the caller's order)
    finishing.py         after the flow: tier style, apology, tier citation, cacheability

    marketing.py         the campaign call: disclosure and pitch, objections, acceptance (the coupon
                         issued), opt-out, callback, transfer to sales; routes placed first, taking
                         only the turns of a call that carries a MarketingCall

Adding a conversation type (like the marketing call: pitch, objections, acceptance, opt-out):
write its flows in a module of their own (functions `Turn -> FlowResult`), list them as
`Route(name, condition, flow)` in that module's `ROUTES`, and give the engine a router over them:

    DialogEngine(nlu, shop, routes=[*marketing.ROUTES, *customer_service.ROUTES])

Routes are tried in order and the first whose condition holds answers the turn, so a campaign's
routes placed first take the turns they recognise and leave the rest to customer service. New
state a flow needs goes in `DialogState` and in `StateUpdate` (and `apply`), nowhere else.
"""

from .base import UNCHANGED, FlowResult, Route, Router, StateUpdate, Tools, Turn, apply, update_state
from . import marketing
from .customer_service import ROUTES as CUSTOMER_SERVICE_ROUTES
from .state import DialogState, Reply

__all__ = ["CUSTOMER_SERVICE_ROUTES", "marketing", "DialogState", "FlowResult", "Reply", "Route", "Router", "StateUpdate", "Tools",
           "Turn", "UNCHANGED", "apply", "update_state"]
