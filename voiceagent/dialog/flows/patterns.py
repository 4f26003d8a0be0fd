"""The words and intent groups the router and the flows read a turn by."""

from __future__ import annotations

import re

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
QUESTION = re.compile(r"[?？]|吗|什么|谁|怎么|多久|几天|哪|能不能|可不可以|是否|啥时候|几时|好久|咋|\b(who|what|when|where|how|can|do|does|is|are)\b", re.I)
OTHER_ORDER = re.compile(r"另一个订单|另外一个订单|不是这个(订单|单)?|换一个订单|上一个订单|other order|another order|"
                         r"not (that|this) (one|order)|different order|previous order", re.I)
NEVER_MIND = re.compile(r"算了|不用了|不退了|不换了|不要退|先不(退|换|办|改|取消)|不弄了|不整了|拉倒|不改了|不取消了|"
                        r"never ?mind|forget (it|about it)|leave it|don't bother|don't want to return|"
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


# English questions asked without a question mark, as speech-to-text writes them ("will i get the money back")
QUESTION_START = re.compile(r"^\W*(?:\w+\W+){0,3}?(will|would|did|has|have|could|should|shall|am|was)\s+(i|you|it|they|we|my|the|that|this)\b", re.I)
# "and the blender?", "what about my sneakers", "那跑鞋呢": the same question about another item
AND_THE = re.compile(r"^\W*(and|what about|how about|also|还有|那)\b|呢\W*$|^\W*(and|what about)\s", re.I)


def is_question(text: str) -> bool:
    return bool(QUESTION.search(text) or QUESTION_START.search(text))

# The caller asks for what a short voice reply left out.
MORE_DETAILS = re.compile(r"详细|具体(点|一点|说)|多说|展开说|还有呢|然后呢|tell me more|more detail|details|go on|"
                          r"what else|and then\??$", re.I)
