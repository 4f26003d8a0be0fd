"""Reading a turn in the conversation's context, before a flow is chosen: which intent the turn
carries on ("it's 38512074" after "where is my parcel?"), and whether the classifier is too unsure
to act on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..intents import group_probability
from ..nlu import Understanding
from ..slots import reason_category
from .patterns import is_question
from .patterns import (AFTER_SALES_FLOWS, BARE_VALUE, COMPLAINT_CUE, CONTINUATION_INTENTS, CORRECTION, FLOW_WORDS,
                       NEVER_MIND, ORDER_INTENTS, PRODUCT_INTENTS, SWITCH, WANTS_PERSON_CONFIDENCE)
from .addresses import ADDRESS_WORDS, answer_as_address, spoken_address
from .answers import DROP, NO, YES
from .keypad import number_attempt
from .state import DialogState
from .wanted import wanted as _wanted


@dataclass(frozen=True)
class InContext:
    intent: str
    reason: str | None = None  # the turn answers "why do you want to return it?"
    resume: bool = False  # the caller comes back to a task left for another ("继续刚才的退货")


RESUME = re.compile(r"继续|接着|回到刚才|刚才(那个|的)(退|换|改|取消|事)|还是(先)?(把|办)|back to|continue|go on with|resume|"
                    r"finish (the|my|that)|where were we", re.I)


def read_for_task(u: Understanding, state: DialogState, text: str) -> InContext | None:
    """The turn read as the answer to what the open task asked, before anything else: "尺码太小了"
    is the return's reason, "5 Main Street" the new address, "the dress" the order, "对" the go-ahead.
    None: the turn is not about the open task (a new request, a question on the side)."""

    task = state.open_task()
    if task is None:
        done = state.task
        if done is not None and done.kind == "aftersales.complaint" and LOG_IT.search(text):
            return InContext("aftersales.complaint")  # "对，给我登记一下": the complaint, not a new question
        if done is not None and done.kind == "aftersales.refund" and "order_id" in done.slots:
            from .tasks import REVIEW_CUE

            if REVIEW_CUE.search(text) and u.intent in ("aftersales.refund", "aftersales.complaint", "other",
                                                         "order.status", "logistics.track"):
                return InContext("aftersales.refund")
        if state.suspended and (RESUME.search(text) or (done is not None and done.done and YES.search(text)
                                                        and state.history and _offered_resume(state))):
            named = next((t for t in reversed(state.suspended) if FLOW_WORDS.get(t.kind, _NEVER).search(text)), None)
            return InContext((named or state.suspended[-1]).kind, resume=True)
        return None
    if task.awaiting == "reason" and reason_category(text) != "other" and not DROP.search(text):
        return InContext(task.kind, reason_category(text))  # "I just changed my mind": the reason
    if NEVER_MIND.search(text) and task.kind in ("aftersales.exchange", "order.modify") and _wanted(text) != (None, None):
        return InContext(task.kind)  # "那拉倒吧，换个米色的": another colour, the same exchange
    if u.cue is not None or NEVER_MIND.search(text):
        return None  # a person asked for, or the task dropped (maybe for another: the router sees the rest)
    if state.suspended and RESUME.search(text) and u.intent != task.kind:
        named = next((t for t in reversed(state.suspended) if FLOW_WORDS.get(t.kind, _NEVER).search(text)), None)
        if named is not None:
            return InContext(named.kind, resume=True)
    explicit_other = u.intent != task.kind and u.intent not in CONTINUATION_INTENTS and u.confidence >= 0.6
    awaiting = task.awaiting
    values = {"order_id", "phone", "tracking_no", "size", "color", "address"} & u.slots.keys()
    if awaiting == "confirm" or awaiting == "change_confirm":
        if task.kind in ("aftersales.exchange", "order.modify") and _wanted(text) != (None, None) \
                and not is_question(text):
            return InContext(task.kind)  # "actually make it a twenty nine": the target corrected
        if u.intent == "aftersales.complaint" and not COMPLAINT_CUE.search(text):
            return InContext(task.kind)  # "I found it cheaper elsewhere": why, not a complaint to log
        if explicit_other and u.intent in TASK_OR_QUESTION and not values and not YES.search(text):
            return None  # "先别整，你先帮我查查羽绒服到哪了": another request, not an answer
        if YES.search(text) or NO.search(text) or values or reason_category(text) != "other":
            return InContext(task.kind)
    if awaiting == "order" and ("product" in u.slots or values or _points_at_one(text) or _wanted(text) != (None, None)):
        return InContext(task.kind)
    if awaiting == "order_id" and ({"order_id", "phone", "tracking_no"} & u.slots.keys()
                                   or (not explicit_other and number_attempt(text, u.slots))):
        return InContext(task.kind)  # a number, or a try at one ("三八五一二零七"): asked again (flows/keypad.py)
    if awaiting == "reason":
        if u.intent in AFTER_SALES_FLOWS and u.intent != task.kind and (
                SWITCH.search(text) or (explicit_other and FLOW_WORDS[u.intent].search(text))):
            return InContext(u.intent)
        other_flow = next((k for k in AFTER_SALES_FLOWS if k != task.kind), None)
        if task.kind in AFTER_SALES_FLOWS and SWITCH.search(text) and FLOW_WORDS[other_flow].search(text):
            return InContext(other_flow)  # "要不还是换货吧，换个L": the other flow, whatever the classifier says
        if not (explicit_other and is_question(text)) and not (u.intent == "aftersales.complaint" and COMPLAINT_CUE.search(text)):
            return InContext(task.kind, reason_category(text))
    if awaiting == "address" and not is_question(text) and answer_as_address(text):
        return InContext(task.kind)
    if awaiting == "phone" and "phone" in u.slots:
        return InContext(task.kind)
    if awaiting in ("target", "change") and ({"size", "color"} & u.slots.keys() or ADDRESS_WORDS.search(text)
                                             or spoken_address(text) or reason_category(text) != "other"
                                             or _wanted(text) != (None, None)):
        return InContext(task.kind)
    if awaiting == "change" and re.search(r"尺码|颜色|地址|size|colou?r|address", text, re.I):
        return InContext(task.kind)
    # a correction of a value the task holds ("不对，是XL", "no, the address is ..."), whatever is awaited
    if CORRECTION.search(text) and (values or spoken_address(text)) and not explicit_other:
        return InContext(task.kind)
    return None


_NEVER = re.compile(r"(?!x)x")
TASK_OR_QUESTION = {"order.status", "logistics.track", "order.cancel", "order.modify", "aftersales.return",
                    "aftersales.exchange", "aftersales.refund", "aftersales.complaint", "handoff.human"}
LOG_IT = re.compile(r"登记|记录|记下|投诉|立案|file it|log it|report it|make it official|complaint", re.I)


def _points_at_one(text: str) -> bool:
    from .order_choice import LATEST, ORDINALS

    return bool(LATEST.search(text)) or any(p.search(text) for p, _ in ORDINALS)


def _offered_resume(state: DialogState) -> bool:
    from .. import templates

    last = next((said for role, said in reversed(state.history) if role == "agent"), "")
    return any(templates.render(lang, "resume_offer", task="").rstrip("？?") in last for lang in ("zh", "en")) \
        if last else False


def read_in_context(u: Understanding, state: DialogState, text: str) -> InContext:
    """The turn's intent given the conversation so far: a value continues the question waiting for
    it, a reason answers "why?", a switch between return and exchange moves the flow, and a
    corrected order number re-asks the last order question."""
    for_task = read_for_task(u, state, text)
    if for_task is not None:
        return for_task
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
            return InContext(intent)
        # "actually, exchange it instead": the same order, the other flow (its reason is asked anew)
        if intent in AFTER_SALES_FLOWS and intent != pending and (
                SWITCH.search(text) or (explicit and FLOW_WORDS[intent].search(text))):
            return InContext(intent)
        if intent != "aftersales.complaint" or not COMPLAINT_CUE.search(text):
            # the answer to "why do you want to return it?" is the reason, whatever it sounds like
            return InContext(pending, reason_category(text))
        return InContext(intent)
    if pending:
        # a value after "which order?" / "which product?" continues the question, unless the
        # caller plainly asks something else ("I want to return 38512074")
        # (a try at a number, none usable heard, when the number is what was asked: asked again, flows/keypad.py)
        tried = state.awaiting is None and "order_id" not in state.slots and number_attempt(text, u.slots)
        supplies = (gives_order or tried) if pending in ORDER_INTENTS else "product" in u.slots
        if supplies and (bare or not (explicit and intent in ORDER_INTENTS | PRODUCT_INTENTS | {"aftersales.complaint"})):
            return InContext(pending)
        return InContext(intent)
    last = state.intents[-1] if state.intents else None
    if "order_id" in u.slots and last in ORDER_INTENTS and (bare or (not explicit and CORRECTION.search(text))):
        return InContext(last)  # "不对，是55120963" / "it's 32755708" after an answer about another order
    if intent in ("other", "chitchat.greeting") and gives_order and u.confidence < 0.6:
        # an order or tracking number with no clear question around it: the caller wants it looked up
        return InContext("logistics.track" if "tracking_no" in u.slots else "order.status")
    if intent not in ORDER_INTENTS and ADDRESS_CHANGE.search(text) or (
            intent == "aftersales.exchange" and ADDRESS_CHANGE.search(text)):
        return InContext("order.modify")  # "change the delivery address": an order change, not an exchange
    if intent == "order.status" and WHERE.search(text):
        return InContext("logistics.track")  # "where is my order": the parcel's whereabouts
    if intent not in ORDER_INTENTS and WHERE.search(text) and not is_question_about_rules(text):
        return InContext("logistics.track")
    if intent in {"chitchat.greeting", "other"} and RETURN_REQUEST.search(text):
        return InContext("aftersales.return")  # "在吗 我想把鞋退了"
    if CHANGE_ITEM.search(text) and intent not in ("order.modify", "aftersales.exchange", "aftersales.return"):
        # "can I still change the size to XL?": a change of the order, which the task turns into an
        # exchange when the order was delivered (tasks._advance)
        return InContext("order.modify")
    if intent in PRODUCT_INTENTS | {"other"} and (EXCHANGE_REQUEST.search(text) or (
            reason_category(text) != "other" and SWAP_FOR.search(text))):
        return InContext("aftersales.exchange")  # "想换一下卫衣的颜色，有蓝色的吗": an exchange, asked as a question
    if intent in PRODUCT_INTENTS | {"other", "aftersales.complaint"} and u.confidence < 0.6 and NOT_ARRIVED.search(text) \
            and not COMPLAINT_CUE.search(text):
        return InContext("logistics.track")  # "my watch hasn't arrived": where it is
    return InContext(intent)


# Words that make a turn a request whatever the classifier's first guess (it reads the question form).
ADDRESS_CHANGE = re.compile(r"改(一下)?(收货)?地址|地址(改|换|写错|填错)|换(个|一下)?地址|新地址|寄到别的|送到别的|"
                            r"change (the |my )?(delivery |shipping )?address|(update|correct|fix) (the |my )?address|"
                            r"new address|wrong address|ship it to|deliver it to|send it to (a|my|another)", re.I)
WHERE = re.compile(r"到哪(了|儿了|里了)?|在哪(了|儿|里)|走到哪|啥时候(能)?到|什么时候(能)?到|物流|快递(呢|到)|"
                   r"\bwhere('s| is| are)\b.{0,30}\b(order|parcel|package|stuff|it|delivery|blender|shoes|jacket)\b|"
                   r"\btrack(ing)?\b", re.I)
RETURN_REQUEST = re.compile(r"(想|要|把|给我)(把)?.{0,8}退(了|掉|回去|货)|退货|\breturn (it|this|them|the|my)\b|"
                            r"send (it|them) back", re.I)
EXCHANGE_REQUEST = re.compile(r"换(一下|个|成|一个|一件|一双)?.{0,8}(颜色|尺码|码|大小|色)|"
                              r"\b(exchange|swap)\b.{0,30}\b(colou?r|size)\b", re.I)
SWAP_FOR = re.compile(r"\b(can i|could i|i'?d like|i want|i wanna) (get|have|swap|exchange|change)\b|换(个|一个|成)", re.I)
CHANGE_ITEM = re.compile(r"(换|改)(成|为|一下|个)?.{0,6}(尺码|码|颜色|大小)|(尺码|颜色|码数).{0,4}(换|改)|"
                         r"\b(change|switch|swap)\b.{0,20}\b(size|colou?r)\b", re.I)
NOT_ARRIVED = re.compile(r"还没(到|收到|送到|送来)|没收到|怎么还不到|\b(hasn't|has not|haven't|have not|didn't|never) "
                         r"(arrived|come|got|received|shown up|turned up)|still not here|where('s| is) my (parcel|package|order)",
                         re.I)


def is_question_about_rules(text: str) -> bool:
    return bool(re.search(r"政策|规定|一般|多久|几天|运费|policy|how long|usually", text, re.I))


def is_unsure(u: Understanding, intent: str, low_confidence: float) -> bool:
    """Ask a clarifying question rather than answer a question the caller may not have asked."""
    if intent != u.intent or intent == "other":
        return False
    if intent in ("chitchat.greeting", "chitchat.goodbye"):
        return u.confidence < low_confidence
    if u.confidence >= low_confidence:
        return False
    # a value the answer needs (an order number, a product) makes the caller's aim plain enough
    if intent in ORDER_INTENTS and {"order_id", "tracking_no", "phone"} & u.slots.keys():
        return False
    if intent in PRODUCT_INTENTS and "product" in u.slots:
        return False
    if intent in ("order.modify", "aftersales.exchange"):
        if _wanted(u.text) != (None, None):
            return False  # a size or colour wanted makes the aim plain
    return group_probability(intent, u.scores) < low_confidence
