"""Tasks that hold their thread over turns: a return, an exchange, an address (size, colour) change,
a cancellation, a parcel or refund question.

Each turn of a task: the turn's values are gathered into the task (read first as the answer to
what the agent just asked: "尺码太小了" is the return reason, "5 Main Street" the new address, "the
dress" picks the order), the order is chosen by what the task needs (order_choice), what is still
missing is asked for, and an action is read back and done only once the caller confirms it. The
shop's data says what is possible: an exchange offers the colours and sizes the product comes in.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ...shop import Order
from .. import templates
from ..slots import COLORS_ZH, reason_category
from . import keypad, order_choice
from .base import FlowResult, StateUpdate, Turn
from .facts import knowledge, order_values, policy
from .finishing import is_question_sentence, sentence_key, split_sentences
from .addresses import ADDRESS_WORDS, answer_as_address, spoken_address
from .answers import DROP, NO, YES, confirms
from .wanted import wanted as _wanted
from .orders import about_the_rules, answer_about_order
from .patterns import AND_THE, CORRECTION, NEVER_MIND, is_question
from .state import ACTION_TASKS, INFO_TASKS, Task

SIZE_WORDS = re.compile(r"尺码|码数|大小|号码|\bsize\b", re.I)
COLOUR_WORDS = re.compile(r"颜色|色的|\bcolou?r\b", re.I)
# A target for an exchange or an order change: "换成蓝色", "改成L码", "for a medium", "to navy"
TARGET_CUE = re.compile(r"换成|改成|改为|换个|换一|换|要|想要|\binstead\b|\bfor an?\b|\bto\b|\binto\b|\bswap\b|"
                        r"\bexchange\b|\bchange\b|\bget\b|\bneed\b|\bwant\b", re.I)
# A question about the rules ("退货运费谁出？", "does changing it cost extra?"), not a request
RULES_WORDS = re.compile(r"政策|规定|规则|运费|邮费|费用|收费|要钱|花钱|耽误|影响|会不会慢|多久|(要|需要|得)几天|几天(能|可以|到|内|之内)|多长时间|怎么(退|换|办|申请|弄)|流程|一般|"
                         r"policy|rule|how long|how many days|who pays|shipping cost|\bcost|\bfee|charge|extra|free|"
                         r"how do i|usually|normally|longer|delay|slow|affect", re.I)
# A refund that is taking long, to be looked into: offered as a refund review (a ticket, once confirmed)
REVIEW_CUE = re.compile(r"催|加急|审核|复核|核实|查一下|查查|帮我看看|跟进|还没(收到|到账|退)|怎么还没|太慢|太久|"
                        r"look into|check on|chase|review|escalate|expedite|speed (it )?up|still (haven't|not|no)|"
                        r"hasn't (come|arrived)|taking (so|too) long|too long", re.I)
REASON_TASKS = {"aftersales.return", "aftersales.exchange"}
# A question of this kind right after a finished task of those kinds is about that task's order
FOLLOWS = {"aftersales.refund": {"aftersales.return", "order.cancel"},
           "logistics.track": {"order.status", "aftersales.exchange", "order.modify"},
           "order.status": {"logistics.track", "order.modify", "aftersales.exchange"}}


def answers_reason(turn: Turn) -> bool:
    """"I just changed my mind, I found one I like more" after "why?": the reason, not a change of mind
    about the return."""
    task = turn.state.open_task()
    return task is not None and task.awaiting == "reason" and reason_category(turn.text) != "other" \
        and not DROP.search(turn.text)


def same_for_another(turn: Turn) -> bool:
    """"And the blender?" after the windbreaker's parcel was answered: that question, about the other
    item the caller bought."""
    last = turn.state.task
    if last is None or last.kind not in INFO_TASKS or turn.state.open_task() is not None \
            or not AND_THE.search(turn.text) or not turn.state.customer_id or "order_id" not in last.slots:
        return False
    others = _others(turn, last.slots["order_id"])
    return bool(order_choice.mentioned(turn.text, others, turn.tools.shop, products_only=True))


def task_for_another(turn: Turn) -> FlowResult:
    return task_turn(replace(turn, intent=turn.state.task.kind))


def names_another_target(turn: Turn) -> bool:
    """"那拉倒吧，那换个米色的": giving up on one size or colour for another, not on the exchange."""
    task = turn.state.open_task()
    return task is not None and task.kind in ("aftersales.exchange", "order.modify") and _wanted(turn.text) != (None, None)


def _product(turn: Turn, order: Order):
    return turn.tools.shop.product(order.sku)


def _canonical_colour(colour: str) -> str:
    return "grey" if colour == "gray" else colour


# -- gathering the turn's values into the task ------------------------------------------------------

def gather(task: Task, turn: Turn) -> tuple[Task, list[str]]:
    """The task with this turn's values added (a correction replaces the slot it corrects). Returns
    the problems to tell the caller (a colour the product does not come in, a sold-out size)."""
    u, text, slots = turn.understanding, turn.text, dict(task.slots)
    task = replace(task, slots=slots, candidates=list(task.candidates))
    problems: list[str] = []
    if "order_id" in u.slots:
        if slots.get("order_id") not in (None, u.slots["order_id"]):
            for key in ("size", "color"):  # the target was for the other order's product
                slots.pop(key, None)
        slots["order_id"] = u.slots["order_id"]
    elif task.awaiting == "order" and task.candidates:
        orders = [o for o in (turn.tools.shop.order(i) for i in task.candidates) if o is not None]
        picked = order_choice.pick(text, orders, turn.tools.shop)
        if picked is not None:
            slots["order_id"] = picked.order_id
    elif turn.state.customer_id and "order_id" in slots and (CORRECTION.search(text) or NO.search(text)):
        # "no, not the suitcase, the blender": the order named instead
        others = _others(turn, slots["order_id"])
        named = order_choice.mentioned(text, others, turn.tools.shop, products_only=True)
        if len(named) == 1:
            slots["order_id"] = named[0].order_id
            for key in ("size", "color"):
                slots.pop(key, None)
    if "phone" in u.slots and task.kind == "order.modify":
        slots["phone"] = u.slots["phone"]
    elif "phone" in u.slots and "order_id" not in slots:
        slots["_phone"] = u.slots["phone"]  # the account's phone: it finds the caller's orders
    if task.kind in REASON_TASKS | {"aftersales.refund"}:
        if task.awaiting == "reason":
            reason = reason_category(text)
            named_order_only = reason == "other" and bool({"product", "order_id", "phone", "tracking_no"} & u.slots.keys())
            if not named_order_only:
                slots["reason"] = reason
        elif (reason := reason_category(text)) != "other":
            slots["reason"] = reason
    if task.kind == "order.modify":
        address = answer_as_address(text) if task.awaiting == "address" else spoken_address(text)
        if address and (task.awaiting == "address" or ADDRESS_WORDS.search(text) or slots.get("change") == "address"
                        or task.awaiting in ("change", "confirm")):
            slots["address"], slots["change"] = address, "address"
        elif ADDRESS_WORDS.search(text) and "change" not in slots:
            slots["change"] = "address"
    if task.kind in ("aftersales.exchange", "order.modify"):
        problems += _gather_target(task, turn, slots)
    return task, problems


def _gather_target(task: Task, turn: Turn, slots: dict) -> list[str]:
    """The size or colour the caller wants (an exchange, a change before shipping), checked against
    what the product comes in; kept aside ("_size", "_color") until the order is known."""
    u, text = turn.understanding, turn.text
    size, colour = _wanted(text)
    if task.kind == "order.modify" and not (size or colour) and "change" not in slots:
        if SIZE_WORDS.search(text):
            slots["change"] = "size"
        elif COLOUR_WORDS.search(text):
            slots["change"] = "color"
    if not (size or colour):
        return []
    awaited = task.awaiting in ("target", "size", "color", "confirm", "change", "change_confirm")
    if not awaited and not TARGET_CUE.search(text):
        return []  # "the black dress" names the item bought, not the one wanted
    if colour:
        slots["_color"] = _canonical_colour(colour)
    if size:
        slots["_size"] = size
    return check_target(turn, slots)


def check_target(turn: Turn, slots: dict) -> list[str]:
    """Move the wanted size and colour into the task once the order's product says they exist."""
    if "order_id" not in slots or not ({"_size", "_color"} & slots.keys()):
        return []
    order = turn.tools.shop.order(slots["order_id"])
    if order is None:
        return []
    product = _product(turn, order)
    problems = []
    colour, size = slots.pop("_color", None), slots.pop("_size", None)
    if colour and not (colour == (order.color_en or "") and not size):
        if product is not None and colour not in product.colors_en:
            problems.append(f"color:{colour}")
            slots.pop("color", None)
        else:
            slots["color"] = colour
    if size and size == (order.size or "") and not colour:
        size = None  # the size it already is: not a change
    if size:
        if product is not None and product.sizes and size not in product.sizes:
            problems.append(f"size:{size}")
            slots.pop("size", None)
        elif product is None or product.sizes:
            slots["size"] = size
    if "change" not in slots and ("size" in slots or "color" in slots):
        slots["change"] = "size" if "size" in slots else "color"
    return problems


# -- the task's turn --------------------------------------------------------------------------------

def task_turn(turn: Turn) -> FlowResult:
    """The turn of a task: gather, choose the order, ask what is missing, read back, act."""
    state, kind = turn.state, turn.intent
    current = state.open_task()
    last = state.task
    suspend: list[Task] = []
    resumed = None
    if current is not None and current.kind != kind and kind in INFO_TASKS and is_question(turn.text) \
            and "order_id" in current.slots and "order_id" not in turn.understanding.slots \
            and not order_choice.mentioned(turn.text, _others(turn, current.slots["order_id"]), turn.tools.shop):
        # "取消了钱多久能退回来？" while the cancellation waits for a yes: answered, and the task goes on
        aside = _side_answer(current, turn) or _policy_aside(current, turn) or _follow_up(current, turn)
        return replace(aside, keeps_pending=True, state=aside.state.then(StateUpdate(task=current)))
    if current is None and kind == "aftersales.refund" and last is not None and last.kind == kind \
            and "order_id" in last.slots and REVIEW_CUE.search(turn.text):
        current = replace(last, done=False, awaiting=None)  # "can someone look into it?": the same refund
    if current is not None and current.kind != kind and is_question(turn.text) and RULES_WORDS.search(turn.text) \
            and not NEVER_MIND.search(turn.text) and not NO.search(turn.text) and not (
                "order_id" in current.slots and order_choice.mentioned(turn.text, _others(turn, current.slots["order_id"]),
                                                                        turn.tools.shop)):
        # "does changing it cost extra?" while an address change is open: a question about it, not a new task
        return _side_answer(current, turn) or _result(
            current, templates.render(turn.language, "not_sure") + turn.sep + (current.asked or ""),
            [f"orders:{current.slots['order_id']}"] if "order_id" in current.slots else [], keeps=True)
    if current is not None and current.kind == "order.modify" and kind == "aftersales.exchange":
        kind = current.kind  # an exchange asked before shipping became an order change: still that
    if current is not None and current.kind == kind:
        task = current
    else:
        if current is None and last is not None and last.done and kind == last.kind and kind in ACTION_TASKS \
                and "order_id" in last.slots and is_question(turn.text) and "order_id" not in turn.understanding.slots \
                and not order_choice.mentioned(turn.text, _others(turn, last.slots["order_id"]), turn.tools.shop, True):
            # "那换的那条好久能寄到？" after the exchange was booked: about it, not a second one
            aside = _side_answer(replace(last, asked=None), turn)
            if aside is not None:
                return replace(aside, keeps_pending=False, state=StateUpdate(task=last))
        if current is None and last is not None and kind in INFO_TASKS and "order_id" in last.slots \
                and (kind == last.kind or FOLLOWS.get(kind, set()) & {last.kind}) \
                and "order_id" not in turn.understanding.slots and is_question(turn.text) \
                and not order_choice.mentioned(turn.text, _others(turn, last.slots["order_id"]), turn.tools.shop):
            return _follow_up(last, turn)
        resumed = next((t for t in reversed(state.suspended) if t.kind == kind), None)
        if resumed is not None and resumed.awaiting == "confirm":
            resumed = replace(resumed, awaiting=None)  # taken up again: read back before it is done
        if resumed is None and current is None and RULES_WORDS.search(turn.text) and about_the_rules(turn, []) and not (
                state.customer_id and order_choice.mentioned(turn.text, turn.tools.shop.orders_for_customer(
                    state.customer_id), turn.tools.shop)):
            return answer_about_order(turn, kind)  # "退货运费谁出？": the rules, and the order asked for if it is one
        task = resumed or _new_task(kind, turn, last)
        replaced = {current.kind, kind} <= REASON_TASKS if current is not None else False
        if current is not None and current.kind != kind and (current.slots or current.awaiting) and not replaced:
            suspend.append(current)  # a change of mind: the old task is kept to come back to
        if replaced and "order_id" in current.slots and "order_id" not in task.slots:
            task = replace(task, slots={"order_id": current.slots["order_id"]})  # "exchange it instead": same order
    others = [t for t in state.suspended if t is not task] + suspend
    before = (dict(task.slots), task.awaiting)
    task, problems = gather(task, turn)
    if task.awaiting is not None and (dict(task.slots), task.awaiting) == before and not problems \
            and is_question(turn.text) and not YES.search(turn.text):
        aside = _side_answer(task, turn)
        if aside is not None:
            return replace(aside, state=StateUpdate(suspended=tuple(others)).then(aside.state))
    result = _advance(task, turn, problems)
    if result.state.task is not None and not result.resolved:
        after = result.state.task
        grew = set(after.slots) - set(before[0]) - {"change"}
        moved = after.awaiting != before[1] and after.awaiting not in (None, "order_id")
        result = replace(result, progress=result.progress or bool(grew) or moved)
    lang, sep = turn.language, turn.sep
    text = result.text
    if task is resumed and resumed is not None:
        text = templates.render(lang, "resumed", task=templates.value(lang, f"task_{kind}")) + sep + text
    finished = result.state.task
    if others and finished is not None and finished.done:
        # the task switched to is done: offer the one left behind
        text += sep + templates.render(lang, "resume_offer", task=templates.value(lang, f"task_{others[-1].kind}"))
    return replace(result, text=text, state=StateUpdate(suspended=tuple(others)).then(result.state))


def _others(turn: Turn, order_id: str) -> list[Order]:
    customer_id = turn.state.customer_id
    return [o for o in turn.tools.shop.orders_for_customer(customer_id) if o.order_id != order_id] if customer_id else []


def _new_task(kind: str, turn: Turn, last: Task | None) -> Task:
    """A new task, on the order the conversation is on when that order can be meant: an anonymous
    caller has only the one they named; an identified caller's is kept when it fits the new task."""
    order_id = (last.slots.get("order_id") if last is not None else None) or turn.state.slots.get("order_id")
    if order_id is None or "order_id" in turn.understanding.slots:
        return Task(kind)
    if turn.state.customer_id is not None:
        order = turn.tools.shop.order(order_id)
        named = order_choice.mentioned(turn.text, _others(turn, order_id), turn.tools.shop)
        unshipped_exchange = kind == "aftersales.exchange" and order is not None and order.status == "paid"
        if order is None or named or not (order_choice.fits(kind, order, turn.tools.shop) or unshipped_exchange):
            return Task(kind)
    return Task(kind, slots={"order_id": order_id})


def _follow_up(last: Task, turn: Turn) -> FlowResult:
    """"那大概什么时候能到" after the order was answered: the same order, the question's answer; the
    conversation stays on the task it was on."""
    slots = {**turn.slots, "order_id": last.slots["order_id"]}
    answer = answer_about_order(replace(turn, slots=slots), turn.intent)
    said = set(turn.state.said)
    sentences = split_sentences(answer.text, turn.language)
    if turn.intent == "aftersales.refund" and sentences and sentence_key(sentences[0]) in said:
        # the refund's status was said already: "几天到账" wants what the rules say (a parcel's answer
        # says when it ships or where it is, even said twice)
        cites: list[str] = []
        known = knowledge(turn.tools, turn.text, turn.language, cites, turn.intent)
        if known:  # still about that order: its record stays cited
            return FlowResult(known, resolved=True, grounding=(f"orders:{last.slots['order_id']}", *cites),
                              state=StateUpdate(task=last))
    return replace(answer, state=StateUpdate(task=last))


def _side_answer(task: Task, turn: Turn) -> FlowResult | None:
    """A question on the side of an open task ("退货运费谁出？"): the knowledge base's answer, then the
    task's question again, shortly. None when the knowledge base has no answer."""
    cites: list[str] = []
    known = knowledge(turn.tools, turn.text, turn.language, cites, task.kind) or knowledge(
        turn.tools, turn.text, turn.language, cites)
    if not known:
        return None
    again = task.asked or templates.render(turn.language, "back_to_task", task=templates.value(turn.language, f"task_{task.kind}"))
    if task.asked and "order_id" in task.slots:
        cites.append(f"orders:{task.slots['order_id']}")  # the question asked again names the order's item
    return FlowResult(known + turn.sep + again, resolved=True, keeps_pending=True, grounding=tuple(cites),
                      state=StateUpdate(task=task))


# The policy that answers a question about money or delivery beside an open task of this kind
ASIDE_POLICY = {"order.cancel": "cancel", "aftersales.return": "refund", "aftersales.exchange": "exchange",
                "order.modify": "shipping"}


def _policy_aside(task: Task, turn: Turn) -> FlowResult | None:
    """"will I get the money back on my card?" while a cancellation waits: the task's policy, then its question."""
    key = ASIDE_POLICY.get(task.kind)
    cites: list[str] = []
    rules = policy(turn.tools, key, turn.language, cites) if key else ""
    if not rules:
        return None
    if task.asked and "order_id" in task.slots:
        cites.append(f"orders:{task.slots['order_id']}")
    return FlowResult(rules + turn.sep + (task.asked or ""), resolved=True, keeps_pending=True, grounding=tuple(cites),
                      state=StateUpdate(task=task))


def _result(task: Task, text: str, cites: list[str], *, resolved: bool = False, keeps: bool = False,
            **changes) -> FlowResult:
    task = replace(task, **changes)
    if not keeps:  # the question this reply ends on, to ask again after a question on the side
        last = split_sentences(text, "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en")
        task.asked = last[-1] if last and is_question_sentence(last[-1]) and not task.done else None
    pending = None if task.done else task.kind
    awaiting = task.awaiting if not task.done and task.awaiting not in ("order", "order_id") else None
    slots = {"order_id": task.slots["order_id"]} if "order_id" in task.slots else {}
    for key in ("reason", "size", "color", "address"):
        if key in task.slots:
            slots[key] = task.slots[key]
    return FlowResult(text, resolved=resolved, grounding=tuple(cites), keeps_pending=not task.done,
                      state=StateUpdate(pending_intent=pending, awaiting=awaiting, slots=slots, task=task))


def _advance(task: Task, turn: Turn, problems: list[str]) -> FlowResult:
    lang, shop, state = turn.language, turn.tools.shop, turn.state
    cites: list[str] = []
    # -- which order -------------------------------------------------------------------------
    if "order_id" not in task.slots and "tracking_no" in turn.understanding.slots:
        by_tracking = shop.order_by_tracking(turn.understanding.slots["tracking_no"])
        if by_tracking is None:
            text, moved = keypad.order_not_found(state, lang, turn.understanding.slots["tracking_no"])
            return replace(_result(task, text, cites, awaiting="order_id"), progress=moved)
        task = replace(task, slots={**task.slots, "order_id": by_tracking.order_id}, candidates=[])
    if "order_id" not in task.slots:
        customer_id = state.customer_id
        phone = task.slots.get("_phone") or task.slots.get("phone") or turn.slots.get("phone")
        if customer_id is None and phone and state.phone_said_identifies:  # typed in a chat, it proves nothing
            owner = shop.customer_by_phone(phone)
            customer_id = owner.customer_id if owner else None
        if customer_id is None:
            lead = "" if task.awaiting == "order_id" else templates.ack(lang, task.kind)  # acknowledged once
            # a phone number said is no proof of whose orders they are: the order number is asked for
            ask = "ask_order_id_not_phone" if phone else "ask_order_id"
            # asked already, or a number tried and none usable heard: a failed spoken try (a call offers keys)
            failed = task.awaiting == "order_id" or keypad.number_attempt(turn.text, turn.understanding.slots)
            text, moved = keypad.ask_order_id(state, lang, failed and not phone, ask)
            return replace(_result(task, (lead + turn.sep + text).strip(), cites, awaiting="order_id"), progress=moved)
        orders = shop.orders_for_customer(customer_id)
        choice = order_choice.choose(task.kind, orders, turn.text, shop) if task.awaiting != "order" else \
            order_choice.Choice(candidates=tuple(o for o in orders if o.order_id in task.candidates))
        if choice.candidates:
            named = [order_choice.brief(o, lang, list(choice.candidates)) for o in choice.candidates[:3]]
            options = ("、" if lang == "zh" else ", ").join(named[:-1]) + ("还是" if lang == "zh" else " or ") + named[-1]
            for o in choice.candidates[:3]:  # the three latest are named; any of them all can be picked
                cites.append(f"orders:{o.order_id}")
            return _result(task, templates.render(lang, "which_of", options=options), cites, awaiting="order",
                           candidates=[o.order_id for o in choice.candidates])
        order = choice.order or choice.fallback
        if order is None:
            return _result(task, templates.render(lang, "no_orders"), cites, done=True)
        task = replace(task, slots={**task.slots, "order_id": order.order_id}, candidates=[])
        if choice.order is None:  # nothing fits: the answer on the most relevant order says why
            return _explain(task, turn, cites)
    order = shop.order(task.slots["order_id"])
    if order is None:
        bad = task.slots.pop("order_id")
        text, moved = keypad.order_not_found(state, lang, bad)
        return replace(_result(task, text, cites, awaiting="order_id"), progress=moved)
    if state.customer_id and order.customer_id != state.customer_id:
        task.slots.pop("order_id")
        return _result(task, templates.render(lang, "order_not_yours"), cites, awaiting="order_id")
    cites.append(f"orders:{order.order_id}")
    if task.kind == "order.modify" and task.slots.get("change") in ("size", "color") and order.status == "delivered":
        task = replace(task, kind="aftersales.exchange")  # delivered: a new size or colour is an exchange
    if task.kind == "aftersales.exchange" and order.status == "paid":
        # not shipped yet: the order itself is changed (no reason needed for that)
        task = replace(task, kind="order.modify", slots={k: v for k, v in task.slots.items() if k != "reason"})
    problems = problems + check_target(turn, task.slots)
    if task.kind in INFO_TASKS or not order_choice.fits(task.kind, order, shop):
        return _explain(task, turn, cites)
    return _action(task, turn, order, problems, cites)


def _explain(task: Task, turn: Turn, cites: list[str]) -> FlowResult:
    """A question answered (status, parcel, refund), or an action the order does not allow, said why."""
    if task.kind == "aftersales.refund":
        reviewed = _refund_review(task, turn, cites)
        if reviewed is not None:
            return reviewed
    slots = {**turn.slots, "order_id": task.slots["order_id"]}
    answer = answer_about_order(replace(turn, slots=slots), task.kind)
    return _result(task, answer.text, [*cites, *(c for c in answer.grounding if c not in cites)], resolved=True,
                   done=True, awaiting=None)


def _refund_review(task: Task, turn: Turn, cites: list[str]) -> FlowResult | None:
    """A refund still processing that the caller wants looked into: a review offered, and booked once
    the caller says yes. None: not that case (the refund's status is the answer)."""
    lang, shop = turn.language, turn.tools.shop
    order = shop.order(task.slots["order_id"])
    if order is None or order.refund_status != "processing":
        return None
    v = order_values(turn.tools, order, lang)
    if task.awaiting == "confirm":
        if confirms(turn.text):
            ticket = shop.create_ticket("refund_review", order, task.slots.get("reason"), detail=turn.text)
            cites.append(f"tickets:{ticket.ticket_id}")
            return _result(task, templates.render(lang, "refund_review_done", ticket_id=ticket.ticket_id, **v), cites,
                           resolved=True, done=True, awaiting=None, result=ticket.ticket_id)
        if NO.search(turn.text):
            return _result(task, templates.render(lang, "refund_review_declined"), cites, resolved=True, done=True,
                           awaiting=None)
    if not REVIEW_CUE.search(turn.text):
        return None
    existing = shop.open_ticket(order.order_id, "refund_review")
    if existing is not None:
        cites.append(f"tickets:{existing.ticket_id}")
        return _result(task, templates.render(lang, "ticket_exists", ticket_id=existing.ticket_id, **v), cites,
                       resolved=True, done=True, awaiting=None)
    status = answer_about_order(replace(turn, slots={**turn.slots, "order_id": order.order_id}), task.kind)
    cites.extend(c for c in status.grounding if c not in cites)
    return _result(task, status.text + turn.sep + templates.render(lang, "refund_review_offer"), cites,
                   awaiting="confirm")


def _action(task: Task, turn: Turn, order: Order, problems: list[str], cites: list[str]) -> FlowResult:
    lang, shop, state = turn.language, turn.tools.shop, turn.state
    v = order_values(turn.tools, order, lang)
    product = _product(turn, order)
    if task.kind in REASON_TASKS:
        existing = shop.open_ticket(order.order_id, "return" if task.kind == "aftersales.return" else "exchange")
        if existing is not None:
            cites.append(f"tickets:{existing.ticket_id}")
            return _result(task, templates.render(lang, "ticket_exists", ticket_id=existing.ticket_id, **v), cites,
                           resolved=True, done=True, awaiting=None)
    if problems:
        return _result(task, _unavailable(problems, product, lang, cites), cites, awaiting="target")
    missing = _missing(task, turn, order)
    if missing == "phone_mismatch":
        task.slots.pop("phone", None)
        return _result(task, templates.render(lang, "phone_mismatch"), cites, awaiting="phone")
    if missing:
        return _result(task, _ask(missing, task, product, lang, v, cites), cites, awaiting=missing)
    if task.awaiting == "confirm" and confirms(turn.text):
        return _act(task, turn, order, v, cites)
    if task.awaiting == "confirm" and NO.search(turn.text) and not _changed(turn):
        return _result(task, templates.render(lang, "what_to_change"), cites, awaiting="change_confirm")
    # on a call, the order number the caller gave is said back first, in groups (no turn added: the
    # read-back's "对吗？" takes a misheard digit too)
    lead = keypad.read_back_lead(state, lang, order.order_id)
    text = _read_back(task, lang, v, _target(task, product, lang))
    return _result(task, (lead + turn.sep + text).strip(), cites, awaiting="confirm")


def _changed(turn: Turn) -> bool:
    """The turn carries a new value (a correction), not just a "no"."""
    u = turn.understanding
    return bool({"order_id", "size", "color", "address", "phone", "product"} & u.slots.keys()) or \
        _wanted(turn.text) != (None, None) or \
        reason_category(turn.text) != "other" or (CORRECTION.search(turn.text) and spoken_address(turn.text) is not None)


def _missing(task: Task, turn: Turn, order: Order) -> str | None:
    slots = task.slots
    if task.kind == "aftersales.return" and "reason" not in slots:
        return "reason"
    if task.kind == "aftersales.exchange" and not ({"size", "color"} & slots.keys()):
        return "target"
    if task.kind == "order.modify":
        change = slots.get("change")
        if change is None:
            return "change"
        if change == "address":
            if turn.state.customer_id is None:  # an anonymous caller redirecting a parcel proves the account first
                if "phone" not in slots:
                    return "phone"
                owner = turn.tools.shop.customer(order.customer_id)
                if owner is None or owner.phone != slots["phone"]:
                    return "phone_mismatch"
            if "address" not in slots:
                return "address"
        elif change in ("size", "color") and not ({"size", "color"} & slots.keys()):
            return "target"
    return None


def _ask(missing: str, task: Task, product, lang: str, v: dict, cites: list[str]) -> str:
    if missing == "target" and product is not None:
        cites.append(f"products:{product.sku}")
        return templates.render(lang, "ask_target" if product.sizes else "ask_target_colours", **_options(product, lang))
    key = {"reason": "ask_reason_short", "change": "ask_change", "address": "ask_address", "phone": "ask_phone_verify",
           "target": "ask_target_plain"}[missing]
    return templates.render(lang, key, **v)


def _options(product, lang: str) -> dict:
    sep = "、" if lang == "zh" else ", "
    colours = product.colors_zh if lang == "zh" else product.colors_en
    return {"product": product.name(lang), "colors": sep.join(colours),
            "sizes": sep.join(product.sizes) if product.sizes else ("均码" if lang == "zh" else "one size")}


def _unavailable(problems: list[str], product, lang: str, cites: list[str]) -> str:
    """"换成蓝色的" for a dress that comes in black, white and navy: say what it does come in."""
    cites.append(f"products:{product.sku}")
    kind, _, asked = problems[0].partition(":")
    if kind == "color":
        asked = next((zh for zh, en in COLORS_ZH.items() if en == asked), asked) if lang == "zh" else asked
        return templates.render(lang, "no_such_color", asked=asked, **_options(product, lang))
    return templates.render(lang, "no_such_size", asked=asked, **_options(product, lang))


def _target(task: Task, product, lang: str) -> str:
    """The size and colour asked for, as said to the caller ("藏青色、L码", "navy, size L")."""
    parts = []
    if "color" in task.slots:
        en = task.slots["color"]
        if product is not None and en in product.colors_en:
            parts.append(product.colors_zh[product.colors_en.index(en)] if lang == "zh" else en)
    if "size" in task.slots:
        parts.append(f"{task.slots['size']}码" if lang == "zh" else f"size {task.slots['size']}")
    return ("、" if lang == "zh" else ", ").join(parts)


def _read_back(task: Task, lang: str, v: dict, target: str) -> str:
    """What will be done, said back before it is done."""
    kind = task.kind
    if kind == "aftersales.return":
        return templates.render(lang, "confirm_return", reason=templates.value(lang, f"reason_{task.slots['reason']}"), **v)
    if kind == "order.cancel":
        return templates.render(lang, "confirm_cancel", **v)
    if kind == "order.modify" and task.slots.get("change") == "address":
        return templates.render(lang, "confirm_address", address=task.slots["address"], **v)
    return templates.render(lang, "confirm_exchange" if kind == "aftersales.exchange" else "confirm_modify",
                            target=target, **v)


def _act(task: Task, turn: Turn, order: Order, v: dict, cites: list[str]) -> FlowResult:
    """The caller said yes: the shop is changed, and the reply says what was done."""
    lang, tools, shop = turn.language, turn.tools, turn.tools.shop
    kind, slots = task.kind, task.slots
    target = _target(task, _product(turn, order), lang)
    if kind in REASON_TASKS:
        ticket_kind = "return" if kind == "aftersales.return" else "exchange"
        detail = "" if kind == "aftersales.return" else f"to {slots.get('size', '')} {slots.get('color', '')}".strip()
        ticket = shop.create_ticket(ticket_kind, order, slots.get("reason"), detail=detail)
        cites.append(f"tickets:{ticket.ticket_id}")
        rules = policy(tools, "refund" if kind == "aftersales.return" else "exchange", lang, cites)
        text = templates.render(lang, f"{ticket_kind}_done", ticket_id=ticket.ticket_id, target=target, policy=rules, **v)
        return _result(task, text, cites, resolved=True, done=True, awaiting=None, result=ticket.ticket_id)
    if kind == "order.cancel":
        shop.cancel_order(order.order_id)
        policy(tools, "cancel", lang, cites)
        return _result(task, templates.render(lang, "cancel_done", **v), cites, resolved=True, done=True,
                       awaiting=None, result="cancelled")
    change = slots.get("change")
    if change == "address":
        shop.change_order(order.order_id, "address", slots["address"])
        text = templates.render(lang, "address_done", address=slots["address"], **v)
    else:
        product = _product(turn, order)
        if "color" in slots and product is not None and slots["color"] in product.colors_en:
            i = product.colors_en.index(slots["color"])
            shop.change_order(order.order_id, "color", (product.colors_zh[i], product.colors_en[i]))
        if "size" in slots:
            shop.change_order(order.order_id, "size", slots["size"])
        text = templates.render(lang, "modify_done", target=target, **v)
    return _result(task, text, cites, resolved=True, done=True, awaiting=None, result=f"{change} changed")
