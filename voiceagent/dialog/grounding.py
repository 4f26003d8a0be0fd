"""Automatic grounding check: every fact the agent states must come from a record it cites.

A reply lists what it used (`Reply.grounding`: "orders:38512074", "products:P040",
"policies:return", "kb:faq:invoice", "tickets:RT…", "coupons:CPN…", "customers:C1001"). The
checker extracts the factual atoms the reply states -- numbers of every kind (order and tracking
numbers, prices, amounts, counts, points, days and hours, also written in Chinese numerals or
English words), dates in the spoken forms the engine uses (11月18日 / November 18) and ISO dates,
ticket/coupon/customer/product ids, carriers, product names, colours, sizes, materials and
membership tiers -- and claims about records (an order's status, a refund's state, stock,
return/exchange eligibility). It fetches the cited rows from the shop (an order with its parcel
events and its product, a product, a policy, a knowledge-base passage, a ticket, a coupon, a
customer), renders them as text and accepts an atom only if the same atom appears there; a claim
only if the cited record satisfies it. What is left is a list of ungrounded atoms, each with the
reason.

Fixed template wording is not a fact ("one moment", "it has eight digits"): words become atoms
only where they carry a value (a number with a unit, a carrier, a product...). Numbers the caller
said and the agent repeats ("I couldn't find order 11112222") are echoes, not shop facts, when
the caller's words are passed in. `audit_templates` finds facts written into the reply templates
themselves, which must come from the records instead.

The scripted conversations that run the engine and check each reply with this checker are in
voiceagent/evals/conversations.py.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date

from . import templates

# -- atoms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    kind: str  # number, id, date, carrier, product, color, size, material, tier, status, refund, stock, eligibility
    text: str  # as stated (after number normalisation)
    value: str  # what is compared with the records


@dataclass(frozen=True)
class Finding:
    atom: Atom
    reason: str

    def __str__(self) -> str:
        return f"{self.atom.kind} {self.atom.text!r}: {self.reason}"


@dataclass
class GroundingResult:
    atoms: list[Atom] = field(default_factory=list)  # every fact checked
    ungrounded: list[Finding] = field(default_factory=list)
    echoed: list[Atom] = field(default_factory=list)  # values repeated from the caller's words

    @property
    def ok(self) -> bool:
        return not self.ungrounded


_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_ZH_NUMERAL = "零〇一二两三四五六七八九十百千万"
_ZH_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# A Chinese numeral is a value only before a unit ("七天", "一到三个工作日", "二十四小时"); "一下", "一直",
# "八位数字" (the order-number format) are wording. "一" before a counter is an article ("一张优惠券").
_ZH_UNIT = r"(?:个)?(?:工作日|小时|天|年|周|星期|个月|分钟|元|块|积分|件|张|次|折|倍|度|米|码|双|条|台|份)"
_ZH_COUNTERS = "个件张次双条台份"
_EN_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
                    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
                    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}
_EN_UNIT = r"(?:business |working |calendar )?(?:days?|hours?|years?|months?|weeks?|minutes?|yuan|points?|percent|pieces?|items?|pairs?)\b"
_EN_NUM_WORD = "|".join(sorted(_EN_NUMBER_WORDS, key=len, reverse=True))

CARRIERS = ["顺丰速运", "顺丰", "圆通速递", "圆通", "中通快递", "中通", "申通快递", "申通", "韵达快递", "韵达", "京东物流", "京东快递",
            "中国邮政", "邮政", "EMS", "德邦", "极兔", "SF Express", "YTO Express", "YTO", "ZTO Express", "ZTO", "STO Express",
            "Yunda", "JD Logistics", "China Post", "DHL", "FedEx", "UPS", "J&T"]
COLORS = ["黑色", "白色", "红色", "蓝色", "藏青色", "米色", "灰色", "粉色", "卡其色", "绿色", "黄色", "紫色", "棕色", "橙色", "金色", "银色",
          "black", "white", "red", "blue", "navy", "beige", "grey", "gray", "pink", "khaki", "green", "yellow", "purple",
          "brown", "orange", "gold", "silver"]
MATERIALS = ["白鸭绒", "鸭绒", "鹅绒", "羽绒", "山羊绒", "羊绒", "羊毛", "长绒棉", "纯棉", "棉", "桑蚕丝", "真丝", "蚕丝", "头层牛皮",
             "牛皮", "真皮", "皮革", "帆布", "涤纶", "锦纶", "氨纶", "尼龙", "乳胶", "不锈钢", "亚麻", "聚酯纤维", "牛津布", "毛圈",
             "橡胶", "网面", "EVA",
             "white duck down", "duck down", "goose down", "cashmere", "wool", "long-staple cotton", "cotton", "mulberry silk",
             "silk", "full-grain leather", "leather", "canvas", "polyester", "nylon", "elastane", "spandex", "latex",
             "stainless steel", "linen", "oxford cloth", "terry", "rubber", "mesh", "polycarbonate"]
TIERS = {"VIP会员": "vip", "VIP member": "vip", "VIP": "vip", "普通会员": "regular", "regular member": "regular",
         "新客": "new", "new customer": "new"}
_SIZE = re.compile(r"(?<![A-Za-z])(XXXL|XXL|XL|XXS|XS|S|M|L)(?![A-Za-z'’])")

# Claims about an order, in the order they are tried; a match is blanked so that "not shipped"
# is not read again as "shipped". Each names the statuses that make it true.
_STATUS_CLAIMS = {
    "zh": [
        (r"还没有物流信息", {"paid", "cancelled"}),
        (r"还没有签收|未签收", {"paid", "shipped", "cancelled"}),
        (r"已付款待发货|还没有发货|未发货|已付款", {"paid"}),
        (r"已经取消|已取消", {"cancelled"}),
        (r"已经办理退货|已退货", {"returned"}),
        (r"已经在[^，。；]{0,12}签收|在[^，。；]{0,12}签收，|已签收", {"delivered", "returned"}),
        (r"已经在[^，。；]{0,12}发出|由[^，。；]{2,10}发出|已经发货|已发货", {"shipped", "delivered", "returned"}),
    ],
    "en": [
        (r"has no tracking", {"paid", "cancelled"}),
        (r"has(?:n't| not) been delivered", {"paid", "shipped", "cancelled"}),
        (r"not shipped|has(?:n't| not) shipped|awaiting shipment|\bis paid\b", {"paid"}),
        (r"\bwas cancelled\b|status is:? cancelled", {"cancelled"}),
        (r"\bwas returned\b|status is:? returned", {"returned"}),
        (r"\bwas delivered\b|\bdelivered on\b|status is:? delivered", {"delivered", "returned"}),
        (r"has already shipped|\bshipped on\b|\bwas shipped\b|status is:? shipped", {"shipped", "delivered", "returned"}),
    ],
}
_REFUND_CLAIMS = {
    "zh": [(r"没有退款记录", None), (r"退款正在处理中|退款处理中", "processing"), (r"退款已经退回|退款已退回", "refunded")],
    "en": [(r"no refund", None), (r"refund[^.]*\bis being processed", "processing"), (r"refund[^.]*\bis completed", "refunded")],
}
_STOCK_CLAIMS = {"zh": [(r"有现货", True), (r"缺货|没有库存|无货", False)],
                 "en": [(r"\bis in stock\b|\bin stock\b", True), (r"out of stock|sold out", False)]}
# Dates in the role the sentence gives them: "shipped on November 18" must be the order's shipping
# date, not merely some date of the order.
_MONTH_DAY = r"((?:" + "|".join(["January", "February", "March", "April", "May", "June", "July", "August", "September",
                                  "October", "November", "December"]) + r")\s+\d{1,2})"
_DATE_ROLES = {
    "zh": [(r"在(\d{1,2}月\d{1,2}日)由", "shipped_at"), (r"在(\d{1,2}月\d{1,2}日)签收", "delivered_at"),
           (r"预计(\d{1,2}月\d{1,2}日)前发出", "ship_by")],
    "en": [(rf"shipped on {_MONTH_DAY}", "shipped_at"), (rf"delivered on {_MONTH_DAY}", "delivered_at"),
           (rf"ship by {_MONTH_DAY}", "ship_by")],
}
# Return/exchange eligibility: "qualifies" (within the window of the cited return or exchange policy),
# "past the 7-day window" and "within the 7-day window".
_ELIGIBLE = {"zh": r"可以办理", "en": r"\bqualifies\b"}
_EXPIRED = {"zh": r"超过(\d+)天", "en": r"past the (\d+)-day"}
_WITHIN = {"zh": r"还在(\d+)天", "en": r"within the (\d+)-day"}


def _zh_numeral(s: str) -> int | None:
    """'七' 7, '十五' 15, '二十四' 24, '一百' 100; None if it is not a plain numeral."""
    if not s or any(c not in _ZH_NUMERAL for c in s):
        return None
    if all(c in _ZH_DIGIT for c in s):
        return int("".join(str(_ZH_DIGIT[c]) for c in s))
    total, section, digit = 0, 0, 0
    for c in s:
        if c in _ZH_DIGIT:
            digit = _ZH_DIGIT[c]
        else:
            unit = {"十": 10, "百": 100, "千": 1000, "万": 10000}[c]
            if unit == 10000:
                total += (section + digit) * unit
                section = digit = 0
            else:
                section += (digit or 1) * unit
                digit = 0
    return total + section + digit


def normalise_numbers(text: str) -> str:
    """Numbers written as words become digits where they carry a value: '七天' -> '7天', '一到三个工作日'
    -> '1到3个工作日', 'one business day' -> '1 business day', '20,000' -> '20000'."""
    num = f"[{_ZH_NUMERAL}]+"

    def zh_range(m: re.Match) -> str:
        a, b = _zh_numeral(m.group(1)), _zh_numeral(m.group(3))
        return f"{a if a is not None else m.group(1)}{m.group(2)}{b if b is not None else m.group(3)}"

    text = re.sub(rf"({num})(到|至|~|-)({num})(?={_ZH_UNIT})", zh_range, text)

    def zh_one(m: re.Match) -> str:
        if m.group(1) == "一" and m.group(2)[0] in _ZH_COUNTERS:
            return m.group(0)  # "一张优惠券": an article, not a count
        value = _zh_numeral(m.group(1))
        return f"{value}{m.group(2)}" if value is not None else m.group(0)

    text = re.sub(rf"({num})({_ZH_UNIT})", zh_one, text)

    def en_words(m: re.Match) -> str:
        words = re.split(r"[\s-]+", m.group(1).lower())
        value = 0
        for w in words:
            n = _EN_NUMBER_WORDS[w]
            value = value * n if n == 100 and value else value + n
        return f"{value}{m.group(2)}"

    text = re.sub(rf"\b((?:{_EN_NUM_WORD})(?:[\s-](?:{_EN_NUM_WORD}))?)([\s-]{_EN_UNIT})", en_words, text, flags=re.I)
    text = re.sub(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d])", lambda m: m.group(1) + m.group(2).replace(",", ""), text)
    return text


def _norm_number(s: str) -> str:
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.lstrip("0") or "0"


def _vocab_regex(words: list[str]) -> re.Pattern:
    parts = []
    for w in sorted(set(words), key=len, reverse=True):
        esc = re.escape(w)
        parts.append(rf"(?<![A-Za-z]){esc}(?![A-Za-z])" if w.isascii() else esc)
    return re.compile("|".join(parts), re.I)


_CARRIER_RE = _vocab_regex(CARRIERS)
_COLOR_RE = _vocab_regex(COLORS)
_MATERIAL_RE = _vocab_regex(MATERIALS)
_TIER_RE = _vocab_regex(list(TIERS))
_TIER_LOOKUP = {k.lower(): v for k, v in TIERS.items()}
_DATE_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?!\d)")
_DATE_ZH = re.compile(r"(?<!\d)(\d{1,2})月(\d{1,2})日")
_DATE_EN = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?!\d)", re.I)
_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,4}\d{3,})(?![A-Za-z0-9])")
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d])")


def _blank(text: str, span: tuple[int, int]) -> str:
    return text[: span[0]] + " " * (span[1] - span[0]) + text[span[1]:]


def extract_atoms(text: str, product_re: re.Pattern | None = None) -> list[Atom]:
    """The value-carrying atoms of a text (not the claims, which need the records): dates, ids,
    product names, carriers, tiers, colours, materials, sizes, numbers. Each span is read once."""
    text = normalise_numbers(text)
    atoms: list[Atom] = []

    def take(pattern: re.Pattern, kind: str, value) -> None:
        nonlocal text
        for m in list(pattern.finditer(text)):
            v = value(m)
            if v is not None:
                atoms.append(Atom(kind, m.group(0).strip(), v))
                text = _blank(text, m.span())

    take(_DATE_ISO, "date", lambda m: f"{int(m.group(2)):02d}-{int(m.group(3)):02d}")
    take(_DATE_ZH, "date", lambda m: f"{int(m.group(1)):02d}-{int(m.group(2)):02d}")
    take(_DATE_EN, "date", lambda m: f"{_MONTHS.index(m.group(1).lower()) + 1:02d}-{int(m.group(2)):02d}")
    take(_ID, "id", lambda m: m.group(1))
    if product_re is not None:
        take(product_re, "product", lambda m: m.group(0).lower())
    take(_CARRIER_RE, "carrier", lambda m: m.group(0).lower())
    take(_TIER_RE, "tier", lambda m: _TIER_LOOKUP[m.group(0).lower()])
    take(_COLOR_RE, "color", lambda m: m.group(0).lower().replace("gray", "grey"))
    take(_MATERIAL_RE, "material", lambda m: m.group(0).lower())
    take(_SIZE, "size", lambda m: m.group(1))
    take(_NUMBER, "number", lambda m: _norm_number(m.group(0)))
    return atoms


# -- the records a reply cites -------------------------------------------------------------------


@dataclass
class _Support:
    texts: dict[str, str] = field(default_factory=dict)  # citation -> rendered record or passage
    passages: list[str] = field(default_factory=list)  # quoted texts (policies, knowledge base)
    orders: dict = field(default_factory=dict)  # order_id -> Order
    products: dict = field(default_factory=dict)  # sku -> Product
    customers: dict = field(default_factory=dict)  # customer_id -> Customer
    windows: dict = field(default_factory=dict)  # "return"/"exchange" -> days, from cited policies
    missing: list[str] = field(default_factory=list)  # citations that name no record
    atoms: set = field(default_factory=set)  # (kind, value) of every atom in the records
    blob: str = ""


class GroundingChecker:
    """Checks replies against the shop (a ShopRepository) and the knowledge base (its passages;
    without one, the FAQ file and the shop's policies)."""

    def __init__(self, shop, kb=None):
        self.shop = shop
        self.kb = kb
        names = [n for p in shop.products() for n in (p.name_zh, p.name_en)]
        self.product_re = _vocab_regex(names)
        self._passages = self._load_passages(kb)

    def _load_passages(self, kb) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if kb is not None:
            items = [(p.id, p.answer) for p in kb.passages]
        else:
            from ..shop.knowledge import FAQ

            items = [(d["id"], d["answer"]) for d in map(json.loads, FAQ.read_text(encoding="utf-8").splitlines()) if d]
        for pid, answer in items:
            out.setdefault(pid, []).append(answer)
        return out

    # rendering ---------------------------------------------------------------------------------

    def _render_order(self, order) -> str:
        lines = [f"order {order.order_id} customer {order.customer_id}",
                 f"product {order.product_zh} | {order.product_en} | sku {order.sku}",
                 f"size {order.size or ''} colour {order.color_zh or ''} {order.color_en or ''}",
                 f"quantity {order.quantity} amount {order.amount:g}",
                 f"status {order.status} {templates.value('zh', 'status_' + order.status)} "
                 f"{templates.value('en', 'status_' + order.status)}",
                 f"created {order.created_at} ship by {order.ship_by} shipped {order.shipped_at or ''} "
                 f"delivered {order.delivered_at or ''}",
                 f"carrier {order.carrier_zh or ''} | {order.carrier_en or ''} tracking {order.tracking_no or ''}"]
        if order.refund_status:
            lines.append(f"refund {order.refund_status} {templates.value('zh', 'refund_' + order.refund_status)} "
                         f"{templates.value('en', 'refund_' + order.refund_status)}")
        if order.tracking_no:
            for lang in ("zh", "en"):
                for e in self.shop.tracking(order.tracking_no, lang):
                    lines.append(f"{e.at} {e.location} {e.event}")
        product = self.shop.product(order.sku)
        if product is not None:
            lines.append(self._render_product(product))
        return "\n".join(lines)

    @staticmethod
    def _render_product(p) -> str:
        return "\n".join([
            f"product {p.sku} {p.name_zh} | {p.name_en} category {p.category}",
            f"price {p.price:g} stock {p.stock} restock {p.restock_date or ''}",
            f"material {p.material_zh} | {p.material_en}",
            f"sizes {' '.join(p.sizes)} colours {' '.join(p.colors_zh)} {' '.join(p.colors_en)}",
            f"advice {p.size_advice_zh} | {p.size_advice_en}",
        ])

    def _row(self, sql: str, key: str) -> dict | None:
        with closing(sqlite3.connect(f"file:{self.shop.db_path}?mode=ro", uri=True)) as conn:
            cur = conn.execute(sql, (key,))
            row = cur.fetchone()
            return dict(zip([d[0] for d in cur.description], row)) if row else None

    def support(self, grounding: list[str]) -> _Support:
        s = _Support()
        for cite in grounding:
            kind, _, key = cite.partition(":")
            text = None
            if kind == "orders":
                order = self.shop.order(key)
                if order is not None:
                    s.orders[key] = order
                    text = self._render_order(order)
            elif kind == "products":
                product = self.shop.product(key)
                if product is not None:
                    s.products[key] = product
                    text = self._render_product(product)
            elif kind == "customers":
                c = self.shop.customer(key)
                if c is not None:
                    s.customers[key] = c
                    text = (f"customer {c.customer_id} {c.name} phone {c.phone} tier {c.tier} "
                            f"{templates.value('zh', 'tier_' + c.tier)} {templates.value('en', 'tier_' + c.tier)} "
                            f"points {c.points}")
            elif kind == "tickets":
                if getattr(self.shop, "tickets", None) is not None:  # kept in the store all workers share
                    row = self.shop.tickets.get(key)
                    if row:
                        row.pop("call_id", None), row.pop("worker", None)  # bookkeeping, not facts
                else:
                    row = self._row("SELECT * FROM tickets WHERE ticket_id = ?", key)
                if row:
                    row.pop("detail")  # the caller's own words, not a fact of the shop's
                    text = " ".join(f"{k} {v if v is not None else ''}" for k, v in row.items())
            elif kind == "coupons":
                row = self._row("SELECT * FROM coupons WHERE coupon_id = ?", key)
                text = " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()) if row else None
            elif kind in ("policies", "kb"):
                bodies = []
                policy_key = key if kind == "policies" else (key.split(":", 1)[1] if key.startswith("policy:") else None)
                if policy_key:
                    bodies = [p[1] for lang in ("zh", "en") if (p := self.shop.policy(policy_key, lang))]
                    for body in bodies:
                        m = re.search(r"(\d+)\s*天内|within (\d+) days", body)
                        if m and policy_key in ("return", "exchange"):
                            s.windows[policy_key] = int(m.group(1) or m.group(2))
                if kind == "kb" and not bodies:
                    bodies = self._passages.get(key, [])
                if bodies:
                    s.passages.extend(bodies)
                    text = "\n".join(bodies)
            elif kind == "safety":
                continue  # a record of what the output filter masked, not a source
            if text is None:
                s.missing.append(cite)
                continue
            s.texts[cite] = text
        s.blob = "\n".join(s.texts.values())
        s.atoms = {(a.kind, a.value) for a in extract_atoms(s.blob, self.product_re)}
        return s

    # checking ----------------------------------------------------------------------------------

    def check(self, text: str, lang: str, grounding: list[str], caller_said: list[str] | tuple = (),
              customer_id: str | None = None) -> GroundingResult:
        """The facts of one reply, each checked against the records the reply cites.

        caller_said: the caller's turns so far; an order or tracking number the agent repeats from
        them is an echo, not a fact. customer_id: the identified caller, whose orders alone may be cited."""
        lang = "zh" if lang == "zh" else "en"
        s = self.support(list(grounding))
        result = GroundingResult()
        cited = ", ".join(grounding) or "nothing"
        for cite in s.missing:
            result.ungrounded.append(Finding(Atom("citation", cite, cite), "cites a record that does not exist"))
        if customer_id:
            for oid, order in s.orders.items():
                if order.customer_id != customer_id:
                    result.ungrounded.append(Finding(Atom("citation", f"orders:{oid}", oid),
                                                     f"order of customer {order.customer_id}, not of the caller {customer_id}"))
            for cid in s.customers:
                if cid != customer_id:
                    result.ungrounded.append(Finding(Atom("citation", f"customers:{cid}", cid), "not the caller's record"))
        echoes = self._echoes(caller_said)
        text = self._without_caller_addresses(text, caller_said)
        quoted_removed = self._unquoted(text, s.passages)

        for atom in extract_atoms(text, self.product_re):
            if atom.kind == "tier":
                continue  # checked on the unquoted text against the customer record, below
            result.atoms.append(atom)
            if (atom.kind, atom.value) in s.atoms:
                continue
            if atom.kind in ("number", "id") and len(atom.value) >= 6 and atom.value.upper() in echoes \
                    and self.shop.order(atom.value) is None and self.shop.order_by_tracking(atom.value) is None:
                # the caller's own number said back ("I couldn't find order 11112222"); a real order's
                # number is a fact about that order and needs its record
                result.atoms.pop()
                result.echoed.append(atom)
                continue
            result.ungrounded.append(Finding(atom, self._why(atom, s, cited)))

        for atom in extract_atoms(quoted_removed, self.product_re):
            if atom.kind != "tier":
                continue
            result.atoms.append(atom)
            if not any(c.tier == atom.value for c in s.customers.values()):
                result.ungrounded.append(Finding(atom, f"no cited customer record has tier {atom.value} (cited: {cited})"))

        self._check_claims(normalise_numbers(quoted_removed), lang, s, result, cited)
        return result

    @staticmethod
    def _without_caller_addresses(text: str, caller_said) -> str:
        """An address the caller gave, read back ("改成杭州市西湖区文三路98号，对吗？"), is their words, not a
        shop fact: its numbers are not checked against the records."""
        from .flows.addresses import answer_as_address

        addresses = {answer_as_address(said or "") for said in caller_said}
        # the longest first: "18 Riverside Road" must not lose "8 Riverside Road" and leave a stray "1"
        for address in sorted((a for a in addresses if a and len(a) >= 6), key=len, reverse=True):
            text = text.replace(address, " ")
        return text

    @staticmethod
    def _echoes(caller_said) -> set[str]:
        from .slots import normalise_numbers as spoken

        out = set()
        for said in caller_said:
            norm = spoken(said or "")
            out.update(m.upper() for m in re.findall(r"[A-Za-z]{0,4}\d{6,}", norm))
            out.update(re.findall(r"\d{6,}", norm))
        return out

    @staticmethod
    def _unquoted(text: str, passages: list[str]) -> str:
        """The reply without the policy and knowledge-base sentences it quotes."""
        for passage in passages:
            if passage in text:
                text = text.replace(passage, " ")
                continue
            for part in re.split(r"(?<=[。！？；;])|(?<=[.!?])\s+", passage):
                part = part.strip()
                if len(part) >= 8 and part in text:
                    text = text.replace(part, " ")
        return text

    def _why(self, atom: Atom, s: _Support, cited: str) -> str:
        if atom.kind == "number" and len(atom.value) == 8 and self.shop.order(atom.value) is not None:
            return f"order {atom.value} is another order than the ones cited ({cited})"
        if atom.kind in ("number", "date"):
            for key in ("return", "exchange", "refund", "shipping", "cancel", "warranty", "invoice", "coupon",
                        "membership", "size_guide"):
                if f"policies:{key}" in s.texts:
                    continue
                bodies = [p[1] for lang in ("zh", "en") if (p := self.shop.policy(key, lang))]
                if any((atom.kind, atom.value) in {(a.kind, a.value) for a in extract_atoms(b)} for b in bodies):
                    return f"stated without its source: it is in policies:{key}, which the reply does not cite (cited: {cited})"
        return f"not in the cited records (cited: {cited})"

    def _check_claims(self, text: str, lang: str, s: _Support, result: GroundingResult, cited: str) -> None:
        sentences = [p for p in re.split(r"(?<=[。！？])|(?<=[.!?])\s+", text) if p.strip()]
        last_order: str | None = next(iter(s.orders)) if len(s.orders) == 1 else None
        for sentence in sentences:
            ids = [oid for oid in re.findall(r"(?<!\d)\d{8}(?!\d)", sentence)]
            if ids:
                last_order = ids[-1]
            order = s.orders.get(last_order) if last_order else None
            work = sentence
            for pattern, statuses in _STATUS_CLAIMS[lang]:
                for m in list(re.finditer(pattern, work, flags=re.I)):
                    work = _blank(work, m.span())
                    atom = Atom("status", m.group(0), "|".join(sorted(statuses)))
                    result.atoms.append(atom)
                    if order is None:
                        result.ungrounded.append(Finding(atom, f"a claim about order {last_order or '?'}, which is not cited ({cited})"))
                    elif order.status not in statuses:
                        result.ungrounded.append(Finding(atom, f"order {order.order_id} is {order.status}"))
            for pattern, refund in _REFUND_CLAIMS[lang]:
                for m in re.finditer(pattern, sentence, flags=re.I):
                    atom = Atom("refund", m.group(0), str(refund))
                    result.atoms.append(atom)
                    if order is None:
                        result.ungrounded.append(Finding(atom, f"a claim about an order that is not cited ({cited})"))
                    elif order.refund_status != refund:
                        result.ungrounded.append(Finding(atom, f"order {order.order_id} refund is {order.refund_status}"))
            for pattern, in_stock in _STOCK_CLAIMS[lang]:
                m = re.search(pattern, sentence, flags=re.I)
                if m:
                    atom = Atom("stock", m.group(0), "in" if in_stock else "out")
                    result.atoms.append(atom)
                    if not any((p.stock > 0) == in_stock for p in s.products.values()):
                        result.ungrounded.append(Finding(atom, f"no cited product is {'in' if in_stock else 'out of'} stock ({cited})"))
                    break
            for pattern, role in _DATE_ROLES[lang]:
                for m in re.finditer(pattern, sentence, flags=re.I):
                    atom = Atom("date_role", m.group(0), role)
                    result.atoms.append(atom)
                    stated = extract_atoms(m.group(1))[0].value
                    actual = getattr(order, role) if order is not None else None
                    if order is None:
                        result.ungrounded.append(Finding(atom, f"a date of an order that is not cited ({cited})"))
                    elif ("date", stated) in s.atoms and (not actual or actual[5:10] != stated):  # (else flagged above)
                        result.ungrounded.append(Finding(atom, f"order {order.order_id} {role} is {actual}"))
            self._check_window(sentence, lang, order, s, result, cited)

    def _check_window(self, sentence, lang, order, s: _Support, result: GroundingResult, cited: str) -> None:
        age = None
        if order is not None and order.delivered_at:
            age = (self.shop.today - date.fromisoformat(order.delivered_at)).days
        checks = []
        if re.search(_ELIGIBLE[lang], sentence, flags=re.I):
            window = s.windows.get("exchange") if "exchange" in s.windows and "return" not in s.windows else s.windows.get("return")
            checks.append(("eligible", window, lambda a, w: w is not None and a <= w))
        for m in re.finditer(_EXPIRED[lang], sentence, flags=re.I):
            checks.append(("expired", int(m.group(1)), lambda a, w: a > w))
        for m in re.finditer(_WITHIN[lang], sentence, flags=re.I):
            checks.append(("within", int(m.group(1)), lambda a, w: a <= w))
        for name, window, test in checks:
            atom = Atom("eligibility", name, f"{name}:{window}")
            result.atoms.append(atom)
            if window is None:
                result.ungrounded.append(Finding(atom, f"no cited return or exchange policy gives the window ({cited})"))
            elif age is None:
                result.ungrounded.append(Finding(atom, "no cited delivered order to measure the window from"))
            elif not test(age, window):
                result.ungrounded.append(Finding(atom, f"order {order.order_id} was delivered {age} days ago; "
                                                       f"the window is {window} days"))


def audit_templates(lang: str) -> list[tuple[str, Atom]]:
    """Facts written into the reply templates themselves (not coming from a field): each is a
    value that must be taken from the records or policies instead."""
    data = templates.load(lang)
    out = []
    for section in ("reply", "ack"):
        for key, template in data.get(section, {}).items():
            fixed = re.sub(r"\{[^}]*\}", " ", template)
            out.extend((f"{section}.{key}", atom) for atom in extract_atoms(fixed))
    return out
