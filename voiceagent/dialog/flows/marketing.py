"""The marketing call: the agent says who it is (the shop's AI assistant: disclosure is required)
and why it calls, pitches the campaign's offer, meets objections, and ends with one outcome:

    converted    the caller takes the offer: the coupon is issued in the shop (within its coupon
                 policy) and a text message is queued to them
    declined     "不需要" / "not interested": thanks, goodbye
    opted_out    "别再打了" / "stop calling me": on the do-not-call list at once, goodbye
    callback     "在开会，晚点打" / "call me tomorrow": a callback time booked, goodbye
    transferred  "转人工" / "can I talk to someone": the campaign's sales queue, with a summary

"Are you a robot?" and "how did you get my number?" get honest answers and the offer again; any
other question (a product, an order) goes to the customer-service flows, whose routes follow these.
The routes here only take turns of a call that carries a `MarketingCall` (DialogState.marketing);
side effects the dialog layer cannot do itself (the do-not-call list, the outbox, the callback
queue) go through the `MarketingEffects` the dialer hands in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from .. import templates
from .answers import YES
from .base import FlowResult, Route, StateUpdate, Turn
from .patterns import PRODUCT_INTENTS

OUTCOMES = ("converted", "declined", "opted_out", "callback", "transferred")


class MarketingEffects(Protocol):
    """What a marketing call changes outside the dialog (the dialer's store)."""

    def opt_out(self) -> None: ...

    def queue_message(self, text: str) -> None: ...

    def book_callback(self, when: str, at: datetime | None) -> None: ...


@dataclass
class MarketingCall:
    """One campaign call's script and where the conversation stands. The dialer fills the first
    part; the flows move the rest (through StateUpdate.marketing)."""

    campaign: str
    script: str  # the script variant's id
    pitch: str = "coupon"  # "coupon", "new_arrivals", "thanks": the opening's angle
    language: str = "zh"
    offer_amount: float = 0.0
    offer_min_spend: float | None = None  # None: the shop's coupon policy
    offer_valid_days: int | None = None
    customer_name: str = ""
    segment: str | None = None
    product: tuple[str, str, str, float] | None = None  # (sku, name zh, name en, price) for a product pitch
    sales_target: str = "sales-queue"
    timezone: str = "Asia/Shanghai"  # the callee's: a callback "tomorrow at 3" is their 3 o'clock
    effects: MarketingEffects | None = None
    # where the conversation stands
    outcome: str | None = None
    coupon_id: str | None = None
    callback_at: str | None = None
    unclear: int = 0
    notes: list[str] = field(default_factory=list)
    amd: dict | None = None  # who answered (the campaign's answering-machine detection)

    def as_record(self) -> dict:
        return {"campaign": self.campaign, "script": self.script, "pitch": self.pitch, "segment": self.segment,
                "outcome": self.outcome, "coupon_id": self.coupon_id, "callback_at": self.callback_at,
                "amd": self.amd, "notes": list(self.notes)}


def _table(lang: str) -> dict:
    return templates.load(lang, "marketing")


def _money(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def say(lang: str, section: str, key: str, call: MarketingCall, **values) -> str:
    """A script sentence with the offer's and the shop's values."""
    table = _table(lang)
    base = {"shop": table["values"]["shop"], "amount": _money(call.offer_amount),
            "min_spend": _money(call.offer_min_spend or 0), "name": _addressed(call, lang)}
    if call.product is not None:
        base["product"] = call.product[1] if lang == "zh" else call.product[2]
        base["price"] = _money(call.product[3])
    return templates.fill(lang, table[section][key], {**base, **values})


def _addressed(call: MarketingCall, lang: str) -> str:
    name = call.customer_name.strip()
    if not name:
        return ""
    if lang == "zh":  # 张伟 -> 张先生/女士 is a guess; the surname with 您好 alone is safe
        return name if len(name) <= 4 else ""
    return " " + name.split()[0] if name.isascii() else ""  # "Hello 胡丽" reads oddly; "Hello" alone does not


def opening(call: MarketingCall) -> str:
    """The first thing the callee hears: who calls (an AI assistant), from where, and the offer."""
    pitch = call.pitch if call.pitch in _table(call.language)["opening"] else "coupon"
    if pitch == "new_arrivals" and call.product is None:
        pitch = "coupon"
    return say(call.language, "opening", pitch, call)


def voicemail_message(call: MarketingCall) -> str:
    return say(call.language, "reply", "message", call)


# -- reading the callee's turn -------------------------------------------------------------------------
OPT_OUT = re.compile(
    r"别(再)?(给我)?打(了|来)|不要(再)?(给我)?打(了|来|电话)|(再|以后)(也)?(别|不要)(再)?(给我)?打|别再(来)?(电话|骚扰)|"
    r"不要再?骚扰|别骚扰|骚扰电话|拉黑|退订|取消订阅|移出名单|从名单(里)?(删|去)|"
    r"(别|不要)(再)?(给我)?打电话|(别|不要)(再)?打给我|(别|不要)(再)?(来)?联系我|以后(别|不要)(再)?(联系|打)|"
    r"don'?t (ever )?(call|contact|ring|phone) (me|this number)|lose my number|stop (contacting|calling|ringing)|"
    r"stop calling|don'?t (ever )?call (me )?(again|anymore)|do not call|never call|take me off|remove (me|my number)|"
    r"unsubscribe|put me on (the|your) do.not.call|stop (these|the) calls|no more calls", re.I)
ROBOT = re.compile(r"机器人|是真人吗|真人吗|你是人吗|是不是人|人工智能吗|是AI|是ai|录音吗|"
                   r"are you (a |an )?(robot|bot|machine|computer|real person|human|ai)\b|is this (a )?(robot|recording|bot)|"
                   r"am i talking to a (robot|machine|person|human)", re.I)
HOW_NUMBER = re.compile(r"(怎么|哪里|哪儿|从哪)(来|有|弄|拿|搞)?(的)?(到)?我(的)?(电话|号码|手机)|我的(电话|号码)(是)?(从)?哪|"
                        r"谁给你(的)?(电话|号码)|"
                        r"how did you get (my|this) (number|phone)|where did you get (my|this) (number|phone)|"
                        r"who gave you (my|this) number", re.I)
PERSON = re.compile(r"转人工|人工(客服|服务)?|真人(客服)?(跟|和)?我?(说|聊|讲)|找(个)?(真)?人|销售(人员|顾问)?(跟|和)?我?(说|聊|联系)|"
                    r"(talk|speak) (to|with) (a |an |some)?(person|human|someone|real person|agent|sales)|"
                    r"(real|live) (person|agent)|put me through", re.I)
BUSY = re.compile(r"在忙|正忙|忙着|很忙|没空|没时间|开会|开车|上班|不方便|晚点|晚些|晚一点|回头(再)?(打|说)|等会|一会(儿)?再|"
                  r"明天(再)?(打|说|联系)|下次再|改天|"
                  r"(明天|后天|今晚|晚上|下午|上午|中午|过会|过一会|\d+点|[一两二三四五六七八九十]+点).{0,8}(再)?(打|联系|来电)|"
                  r"(再|回头)(给我)?打(给我|过来|来)|(小时|分钟)(以)?后(再)?(打|联系)|"
                  r"call me (back |again )?(tomorrow|later|tonight|this (morning|afternoon|evening)|next week|at \d|in an? |in \d|after)|"
                  r"\bbusy\b|call (me )?(back|later|again (later|tomorrow))|not a good time|bad time|in a meeting|driving|"
                  r"at work|can'?t talk", re.I)
DECLINE = re.compile(r"不需要|不用(了)?|不要(了)?|没兴趣|不感兴趣|不太感兴趣|不怎么感兴趣|不是很感兴趣|没什么兴趣|不考虑|"
                     r"不买|算了|不想要|没需要|谢谢不用|行了行了|别说了|不用说了|"
                     r"not (really |that |very |too |at all )?interested|"
                     r"\bno\b|\bnope\b|not interested|no thanks|no, thanks|don'?t need|don'?t want|not for me|pass\b", re.I)
ACCEPT = re.compile(r"^\W*(?:(那)?(我)?要(的|啊|吧|呀|一张)?|可以(啊|的|呀)?|好(啊|呀|的)?|行(啊|的|吧)?|嗯+|中|成)(\W|$)|"
                    r"发(给)?我|给我发|发过来|发吧|感兴趣|领(一|取)(一)?下|来一张|帮我领|"
                    r"send it|i'?ll take it|sounds good|\binterested\b|why not|go ahead|please do\b(?!n)|\bsure\b|yes please", re.I)
QUESTION = re.compile(r"吗|多少|怎么|什么|哪|几|\?|？|\b(how|what|which|when|where|does|is it|can i)\b", re.I)
HELLO = re.compile(r"^\W*(喂+|你好|您好|哈喽|哪位|谁啊|你是谁|hello|hi|hey|yes\?|who is (this|it|calling)|who'?s (this|calling))"
                   r"[\W啊呀？?]*(喂+|你好|哪位|哪位啊|是谁)?[\W啊呀？?]*$", re.I)
WHY = re.compile(r"什么事|有什么事|干什么|干嘛|什么优惠|什么券|怎么用|有什么活动|what('?s| is) (this|it) about|why are you calling|"
                 r"what offer|what coupon|how does (it|the coupon) work", re.I)

_CN_HOUR = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
            "十一": 11, "十二": 12}


def reads(text: str) -> str | None:
    """What a marketing turn says, in the order that settles mixed turns: "不需要，别再打了" opts out,
    "不要，我在开会" asks for later, "好的不需要" declines."""
    if OPT_OUT.search(text):
        return "opt_out"
    if ROBOT.search(text):  # "are you a real person?" asks what we are, not for someone else
        return "robot"
    if PERSON.search(text):
        return "person"
    if HOW_NUMBER.search(text):
        return "how_number"
    if BUSY.search(text):
        return "busy"
    if DECLINE.search(text):
        return "decline"
    if ACCEPT.search(text) or YES.search(text):
        return "accept"
    if WHY.search(text):
        return "why"
    if HELLO.search(text):
        return "hello"
    return None


def callback_time(text: str, now: datetime, lang: str) -> tuple[str, datetime]:
    """When the callee asked to be called back: "明天下午三点", "tomorrow", "in an hour", "晚点"
    (two hours by default). Returns the words to say back and the time."""
    when = now + timedelta(hours=2)
    day = 0
    if re.search(r"后天|day after tomorrow", text, re.I):
        day = 2
    elif re.search(r"明天|tomorrow", text, re.I):
        day = 1
    hour = None
    m = re.search(r"(\d{1,2}|十[一二]?|[一两二三四五六七八九])\s*点", text)
    if m:
        raw = m.group(1)
        hour = int(raw) if raw.isdigit() else _CN_HOUR.get(raw)
    m = re.search(r"\b(?:at|after)\s+(\d{1,2})\s*(am|pm|a\.m\.|p\.m\.)?", text, re.I)
    if m:
        hour = int(m.group(1))
        if (m.group(2) or "").lower().startswith("p") and hour < 12:
            hour += 12
    if hour is not None and re.search(r"下午|晚上|pm|evening|afternoon", text, re.I) and hour < 12:
        hour += 12
    m = re.search(r"(\d+|一|两|半|an?)\s*(个)?(小时|hours?)", text, re.I)
    in_hours = None
    if day == 0 and hour is None and m:
        in_hours = {"一": 1, "两": 2, "半": 0.5, "a": 1, "an": 1}.get(m.group(1).lower()) or float(m.group(1))
        when = now + timedelta(hours=float(in_hours))
    elif day or hour is not None:
        base = (now + timedelta(days=day)).date()
        if hour is None:
            hour = 15 if re.search(r"下午|afternoon", text, re.I) else 10 if re.search(r"上午|morning", text, re.I) \
                else 19 if re.search(r"晚上|evening|tonight|今晚", text, re.I) else now.hour
        when = datetime(base.year, base.month, base.day, min(hour, 23), tzinfo=now.tzinfo)
        if when <= now:
            when += timedelta(days=1)
    table = _table(lang)["values"]
    if in_hours is not None:
        n = f"{in_hours:g}"
        return (f"{'半' if in_hours == 0.5 else n}个小时后" if lang == "zh" else
                f"in {'half an hour' if in_hours == 0.5 else n + (' hour' if in_hours == 1 else ' hours')}"), when
    days = (when.date() - now.date()).days
    if not (day or hour is not None):
        words = table["later"]
    elif lang == "zh":
        words = {0: "今天", 1: "明天", 2: "后天"}.get(days, f"{when.month}月{when.day}日") + f"{when.hour}点"
    else:
        words = {0: "today", 1: "tomorrow", 2: "the day after tomorrow"}.get(days, f"on {when:%B} {when.day}") \
            + f" at {when.hour}:00"
    return words, when


# -- the flows -----------------------------------------------------------------------------------------
def _call(t: Turn) -> MarketingCall:
    call = t.state.marketing
    assert call is not None
    return call


def _lang(t: Turn) -> str:
    return t.language if t.language in ("zh", "en") else _call(t).language


def _ended(t: Turn, outcome: str, text: str, reason: str, **changes) -> FlowResult:
    return FlowResult(text=text, resolved=True, end_call=reason,
                      state=StateUpdate(marketing={"outcome": outcome, **changes}, tried=(f"marketing {outcome}",)))


def opt_out(t: Turn) -> FlowResult:
    call = _call(t)
    if call.effects is not None:
        call.effects.opt_out()  # at once, before anything else can fail
    return _ended(t, "opted_out", say(_lang(t), "reply", "opted_out", call), "opted_out")


def busy(t: Turn) -> FlowResult:
    call, lang = _call(t), _lang(t)
    words, at = callback_time(t.text, datetime.now(ZoneInfo(call.timezone)), lang)
    if call.effects is not None:
        call.effects.book_callback(t.text, at)
    return _ended(t, "callback", say(lang, "reply", "callback", call, when=words), "callback",
                  callback_at=at.isoformat(timespec="minutes"))


def decline(t: Turn) -> FlowResult:
    return _ended(t, "declined", say(_lang(t), "reply", "declined", _call(t)), "declined")


def accept(t: Turn) -> FlowResult:
    """The offer taken: the coupon issued in the shop within its policy, a text message queued."""
    call, lang, shop = _call(t), _lang(t), t.tools.shop
    grant = shop.issue_campaign_coupon(t.customer, call.offer_amount, call.campaign, call.offer_min_spend,
                                       call.offer_valid_days)
    values = {"amount": _money(grant.amount or call.offer_amount), "min_spend": _money(grant.min_spend),
              "expires_at": grant.expires_at}
    if grant.coupon_id is not None:
        key, sms = "accepted", "sms"
    elif grant.refusal == "already_issued":
        key, sms = "accepted_already", "sms"
    elif grant.refusal == "unknown_customer":
        key, sms = "accepted_no_account", "sms_no_account"
    else:
        key, sms = "accepted_refused", "sms_no_account"
    if call.effects is not None:
        call.effects.queue_message(say(lang, "reply", sms, call, **values))
    grounding = (f"coupons:{grant.coupon_id}",) if grant.coupon_id else ()
    return FlowResult(text=say(lang, "reply", key, call, **values), resolved=True, grounding=grounding,
                      end_call="converted",
                      state=StateUpdate(marketing={"outcome": "converted", "coupon_id": grant.coupon_id,
                                                   "notes": [*call.notes, f"coupon {grant.refusal or 'issued'}"]},
                                        tried=(f"marketing converted ({grant.coupon_id or grant.refusal})",)))


def to_sales(t: Turn) -> FlowResult:
    call = _call(t)
    text = "好的，我马上为您转接销售顾问，请稍等。" if _lang(t) == "zh" else "Sure, I'm putting you through to a sales advisor now."
    return FlowResult(text=text, resolved=True, handoff=True, handoff_reason="caller_request", handoff_target=call.sales_target,
                      state=StateUpdate(marketing={"outcome": "transferred"}, tried=("marketing transferred",)))


def honest_answer(t: Turn) -> FlowResult:
    call, lang = _call(t), _lang(t)
    key = {"robot": "robot", "how_number": "how_number", "why": "why_call", "hello": "hello"}[reads(t.text) or "why"]
    text = say(lang, "reply", key, call) + ("" if lang == "zh" else " ") + say(lang, "reply", "offer_again", call)
    return FlowResult(text=text, resolved=True, progress=True,
                      state=StateUpdate(marketing={"notes": [*call.notes, key]}))


def not_understood(t: Turn) -> FlowResult:
    """The second turn in a row that says nothing we can act on ends the call politely (declined):
    a marketing call does not keep a customer on the line."""
    call, lang = _call(t), _lang(t)
    if call.unclear >= 1:
        return _ended(t, "declined", say(lang, "reply", "goodbye_unclear", call), "not_understood")
    return FlowResult(text=say(lang, "reply", "unclear", call), progress=True,
                      state=StateUpdate(marketing={"unclear": call.unclear + 1}))


def _open(t: Turn) -> bool:
    call = t.state.marketing
    return call is not None and call.outcome is None


def _is(kind: str):
    return lambda t: _open(t) and reads(t.text) == kind


def _opts_out(t: Turn) -> bool:
    # heard whenever it is said, even over the goodbye after another outcome ("不需要" ... "以后别再打了")
    call = t.state.marketing
    return call is not None and call.outcome != "opted_out" and reads(t.text) == "opt_out"


def _person(t: Turn) -> bool:
    return _open(t) and (reads(t.text) == "person" or (t.intent == "handoff.human" and reads(t.text) is None))


def _other_question(t: Turn) -> bool:
    # a product or order question: customer service answers it; the offer stays open
    return _open(t) and (t.intent in PRODUCT_INTENTS or t.intent.startswith(("order.", "logistics.", "aftersales.")))


def _accepts(t: Turn) -> bool:
    # "好的，这个羽绒服多少钱？" asks before taking anything
    return _open(t) and reads(t.text) == "accept" and not (_other_question(t) and QUESTION.search(t.text))


def _let_go(t: Turn) -> bool:
    # the policy would hand an angry or unserved callee to a person: on a sales call, apologise and let them go
    return _open(t) and t.decision.action == "transfer" and t.decision.reason != "caller_request"


def let_go(t: Turn) -> FlowResult:
    lang = _lang(t)
    text = "非常抱歉打扰您了，不耽误您时间，祝您生活愉快，再见。" if lang == "zh" else \
        "I'm sorry to have bothered you. I won't take more of your time. Goodbye."
    return _ended(t, "declined", text, "let_go")


ROUTES = [
    Route("marketing: opt out", _opts_out, opt_out),
    Route("marketing: a person", _person, to_sales),
    Route("marketing: upset, let go", _let_go, let_go),
    Route("marketing: honest answers", lambda t: _open(t) and reads(t.text) in ("robot", "how_number", "why", "hello"),
          honest_answer),
    Route("marketing: call back later", _is("busy"), busy),
    Route("marketing: declined", _is("decline"), decline),
    Route("marketing: accepted", _accepts, accept),
    Route("marketing: not understood", lambda t: _open(t) and not _other_question(t) and t.intent != "handoff.human",
          not_understood),
]

__all__ = ["MarketingCall", "MarketingEffects", "OUTCOMES", "ROUTES", "callback_time", "opening", "reads",
           "voicemail_message"]
