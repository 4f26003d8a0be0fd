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

The second half runs the scripted multi-turn conversations of tests/conversations/ through a
dialog engine on a fresh copy of the demo shop and checks each turn's expectations and its
grounding (tests/test_conversations.py, benchmarks/eval_conversations.py).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
import tomllib
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

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


# -- scripted conversations -----------------------------------------------------------------------

CONVERSATIONS_DIR = Path(__file__).resolve().parents[2] / "tests" / "conversations"


@dataclass
class TurnOutcome:
    conversation: str
    index: int  # 1-based
    said: str
    reply: object  # Reply
    failures: list[str]
    grounding: GroundingResult

    def label(self) -> str:
        return f"{self.conversation} turn {self.index} ({self.said[:40]!r})"


def load_conversations(directory: Path = CONVERSATIONS_DIR) -> list[dict]:
    conversations = []
    for path in sorted(directory.glob("*.toml")):
        for conv in tomllib.loads(path.read_text(encoding="utf-8")).get("conversation", []):
            conv["file"] = path.name
            conversations.append(conv)
    return conversations


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def _contains(text: str, needle: str) -> bool:
    return needle.lower() in text.lower()


def _counts(shop) -> dict[str, dict[str, int]]:
    with closing(sqlite3.connect(f"file:{shop.db_path}?mode=ro", uri=True)) as conn:
        tickets = dict(conn.execute("SELECT kind, COUNT(*) FROM tickets GROUP BY kind").fetchall())
        coupons = conn.execute("SELECT COUNT(*) FROM coupons").fetchone()[0]
    return {"tickets": tickets, "coupons": {"all": coupons}}


def check_requirements(conv: dict, shop) -> list[str]:
    """The demo-shop facts a conversation relies on (the demo shop is generated, so say so when it changed)."""
    problems = []
    for req in conv.get("requires", []):
        if "order" in req:
            order = shop.order(req["order"])
            if order is None:
                problems.append(f"order {req['order']} is not in the shop")
                continue
            if "status" in req and order.status not in _as_list(req["status"]):
                problems.append(f"order {order.order_id} is {order.status}, not {req['status']}")
            if "customer" in req and order.customer_id != req["customer"]:
                problems.append(f"order {order.order_id} belongs to {order.customer_id}, not {req['customer']}")
            if "not_customer" in req and order.customer_id == req["not_customer"]:
                problems.append(f"order {order.order_id} belongs to {req['not_customer']}")
            if "delivered_within" in req or "delivered_before" in req:
                age = (shop.today - date.fromisoformat(order.delivered_at)).days if order.delivered_at else None
                if age is None or ("delivered_within" in req and age > req["delivered_within"]) or \
                        ("delivered_before" in req and age <= req["delivered_before"]):
                    problems.append(f"order {order.order_id} delivered {age} days ago, outside what the script needs")
        if "customer" in req and "order" not in req:
            c = shop.customer(req["customer"])
            if c is None:
                problems.append(f"customer {req['customer']} is not in the shop")
            elif "tier" in req and c.tier != req["tier"]:
                problems.append(f"customer {c.customer_id} is {c.tier}, not {req['tier']}")
            elif "phone" in req and c.phone != req["phone"]:
                problems.append(f"customer {c.customer_id} has phone {c.phone}, not {req['phone']}")
        if "absent_order" in req and shop.order(req["absent_order"]) is not None:
            problems.append(f"order {req['absent_order']} exists, the script needs it not to")
        if "product" in req:
            p = shop.product(req["product"])
            if p is None:
                problems.append(f"product {req['product']} is not in the shop")
            elif "in_stock" in req and (p.stock > 0) != req["in_stock"]:
                problems.append(f"product {p.sku} stock is {p.stock}")
    return problems


def check_turn(turn: dict, reply, state, shop, before: dict, after: dict) -> list[str]:
    """The turn's expectations; each failure is one line."""
    fails = []
    text = reply.text
    if "intent" in turn and reply.intent not in _as_list(turn["intent"]):
        fails.append(f"intent {reply.intent}, expected {' or '.join(_as_list(turn['intent']))}")
    for needle in _as_list(turn.get("contains", [])):
        if not _contains(text, needle):
            fails.append(f"reply lacks {needle!r}")
    if turn.get("contains_any") and not any(_contains(text, n) for n in turn["contains_any"]):
        fails.append(f"reply has none of {turn['contains_any']}")
    for needle in _as_list(turn.get("not_contains", [])):
        if _contains(text, needle):
            fails.append(f"reply must not say {needle!r}")
    for prefix in _as_list(turn.get("grounding", [])):
        if not any(g == prefix or g.startswith(prefix) for g in reply.grounding):
            fails.append(f"grounding {reply.grounding} lacks {prefix!r}")
    if turn.get("grounding_any") and not any(g == p or g.startswith(p) for p in turn["grounding_any"]
                                             for g in reply.grounding):
        fails.append(f"grounding {reply.grounding} has none of {turn['grounding_any']}")
    if "orders_of" in turn:
        for g in reply.grounding:
            order = shop.order(g.split(":", 1)[1]) if g.startswith("orders:") else None
            if order is not None and order.customer_id != turn["orders_of"]:
                fails.append(f"cites {g} of customer {order.customer_id}, expected only orders of {turn['orders_of']}")
    for prefix in _as_list(turn.get("no_grounding", [])):
        if any(g.startswith(prefix) for g in reply.grounding):
            fails.append(f"grounding {reply.grounding} must not include {prefix!r}")
    handoff = turn.get("handoff", False)
    if handoff != "any" and reply.handoff != handoff:
        fails.append(f"handoff {reply.handoff} ({reply.handoff_reason}), expected {handoff}")
    if "handoff_reason" in turn and reply.handoff_reason not in _as_list(turn["handoff_reason"]):
        fails.append(f"handoff reason {reply.handoff_reason}, expected {turn['handoff_reason']}")
    if "resolved" in turn and reply.resolved != turn["resolved"]:
        fails.append(f"resolved {reply.resolved}, expected {turn['resolved']}")
    new_tickets = {k: after["tickets"].get(k, 0) - before["tickets"].get(k, 0) for k in after["tickets"]}
    made = sorted(k for k, n in new_tickets.items() if n > 0)
    want = turn.get("ticket", False)
    if want is False and made:
        fails.append(f"created a {'/'.join(made)} ticket, none expected")
    elif want not in (False, "any") and made != [want]:
        fails.append(f"created tickets {made or 'none'}, expected one {want} ticket")
    coupons = after["coupons"]["all"] - before["coupons"]["all"]
    want_coupon = turn.get("coupon", False)
    if want_coupon != "any" and bool(coupons) != want_coupon:
        fails.append(f"{coupons} coupon(s) issued, expected {'one' if want_coupon else 'none'}")
    for key, expected in turn.get("state", {}).items():
        actual = getattr(state, key)
        ok = actual in expected if isinstance(expected, list) else (actual == (expected or None))
        if not ok:
            fails.append(f"state.{key} is {actual!r}, expected {expected!r}")
    for slot, expected in turn.get("slots", {}).items():
        if state.slots.get(slot) != expected:
            fails.append(f"slot {slot} is {state.slots.get(slot)!r}, expected {expected!r}")
    for slot in _as_list(turn.get("no_slots", [])):
        if slot in state.slots:
            fails.append(f"slot {slot} should be gone, is {state.slots[slot]!r}")
    return fails


class ConversationRunner:
    """Plays scripted conversations through a DialogEngine, each on a fresh copy of the demo shop."""

    def __init__(self, nlu, kb, low_confidence: float = 0.45, workdir: str | Path | None = None, use_cache: bool = True):
        from ..shop import demo

        self.nlu, self.kb, self.low_confidence, self.use_cache = nlu, kb, low_confidence, use_cache
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="conversations-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.pristine = self.workdir / "pristine-shop.db"
        if not self.pristine.exists():
            demo.build(self.pristine)

    def fresh_shop(self, name: str):
        from ..shop.repository import ShopRepository

        path = self.workdir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.db"
        shutil.copyfile(self.pristine, path)
        return ShopRepository(path)

    def run(self, conv: dict) -> tuple[list[TurnOutcome], list[str]]:
        """The outcome of each turn, and the conversation-level failures."""
        from .cache import HotCache
        from .engine import DialogEngine, DialogState

        shop = self.fresh_shop(conv["id"])
        problems = [f"precondition: {p}" for p in check_requirements(conv, shop)]
        engine = DialogEngine(self.nlu, shop, None, self.low_confidence, kb=self.kb,
                              cache=HotCache() if self.use_cache else None)
        checker = GroundingChecker(shop, self.kb)
        customer = conv.get("customer_id")
        state = DialogState(language=conv.get("lang", "zh"), customer_id=customer)
        said: list[str] = []
        outcomes = []
        forbid = _as_list(conv.get("forbid", []))
        for i, turn in enumerate(conv["turns"], 1):
            text = turn["say"] * turn.get("repeat", 1)
            said.append(text)
            hint = turn.get("hint", conv.get("hint"))
            before = _counts(shop)
            reply = engine.respond(text, state, hint if hint in ("zh", "en") else None)
            after = _counts(shop)
            fails = check_turn(turn, reply, state, shop, before, after)
            for needle in forbid:
                if _contains(reply.text, needle):
                    fails.append(f"reveals {needle!r}, which this caller must never hear")
            if not reply.text.strip():
                fails.append("empty reply")
            result = checker.check(reply.text, state.language, reply.grounding, caller_said=said, customer_id=customer)
            outcomes.append(TurnOutcome(conv["id"], i, text, reply, fails, result))
        return outcomes, problems


@dataclass
class SuiteReport:
    conversations: int = 0
    turns: int = 0
    facts: int = 0
    echoed: int = 0
    expectations: int = 0
    expectation_failures: list[str] = field(default_factory=list)
    ungrounded: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    by_lang: dict = field(default_factory=dict)

    def pass_rate(self) -> float:
        return 1 - len(self.expectation_failures) / self.expectations if self.expectations else 1.0

    def latency(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


_EXPECTATION_KEYS = ("intent", "contains", "contains_any", "not_contains", "grounding", "grounding_any", "no_grounding",
                     "orders_of", "handoff",
                     "handoff_reason", "resolved", "ticket", "coupon", "state", "slots", "no_slots")


def count_expectations(conv: dict) -> int:
    n = 0
    for turn in conv["turns"]:
        for key in _EXPECTATION_KEYS:
            if key in ("handoff", "ticket", "coupon") and key not in turn:
                n += 1  # checked by default: no handoff, no ticket, no coupon
            elif key in turn:
                v = turn[key]
                n += len(v) if isinstance(v, (list, dict)) and key not in ("intent", "contains_any", "grounding_any") else 1
        n += 1 + len(_as_list(conv.get("forbid", [])))  # a non-empty reply; the forbidden strings
    return n


def run_suite(runner: ConversationRunner, conversations: list[dict]) -> SuiteReport:
    report = SuiteReport()
    for conv in conversations:
        outcomes, problems = runner.run(conv)
        report.conversations += 1
        report.expectations += count_expectations(conv)
        report.expectation_failures += [f"{conv['id']}: {p}" for p in problems]
        lang = conv.get("lang", "zh")
        stats = report.by_lang.setdefault(lang, {"conversations": 0, "turns": 0})
        stats["conversations"] += 1
        for o in outcomes:
            report.turns += 1
            stats["turns"] += 1
            report.facts += len(o.grounding.atoms)
            report.echoed += len(o.grounding.echoed)
            report.latencies_ms.append(o.reply.dialog_ms)
            report.expectation_failures += [f"{o.label()}: {f}" for f in o.failures]
            report.ungrounded += [f"{o.label()}: {f} -- reply: {o.reply.text[:160]!r}" for f in o.grounding.ungrounded]
    return report
