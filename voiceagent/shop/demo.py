"""Generates the demo shop: products, customers of every tier, orders in every state, parcel
tracking and the shop's policies, in Chinese and English. Deterministic (seeded), so that sample
calls and tests can name real orders. Run: python -m voiceagent.shop.demo OUT.db
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

SCHEMA = Path(__file__).with_name("schema.sql")
DEMO_VERSION = "3"
# The demo shop's "today": fixed so that order states and dates are reproducible.
DEMO_TODAY = date(2026, 11, 20)

# (category, zh name, en name, keywords, base price, sizes, material zh, material en, advice zh, advice en)
CATALOG = [
    ("outerwear", "轻薄羽绒服", "lightweight down jacket", "羽绒服 外套 夹克 down jacket coat puffer", 399,
     "S,M,L,XL,XXL", "90%白鸭绒，防泼水面料", "90% white duck down with a water-repellent shell",
     "版型偏修身，平时穿M的建议选L；身高165、体重50公斤左右选M。", "It runs slim: if you usually wear M, take L. Around 165 cm and 50 kg, M fits."),
    ("outerwear", "防风冲锋衣", "waterproof windbreaker jacket", "冲锋衣 外套 夹克 windbreaker jacket rain jacket", 329,
     "S,M,L,XL,XXL", "三层复合防水面料", "three-layer waterproof membrane",
     "版型宽松，按平时尺码选即可。", "Relaxed fit: take your usual size."),
    ("dress", "碎花连衣裙", "floral midi dress", "连衣裙 裙子 碎花裙 dress floral", 259,
     "S,M,L,XL", "100%桑蚕丝", "100% mulberry silk",
     "尺码标准；身高160-165、体重45-52公斤选M，腰围偏小可以选大一码，显瘦收腰设计。",
     "True to size: 160-165 cm and 45-52 kg take M; size up if your waist is fuller. The cinched waist is slimming."),
    ("dress", "针织毛衣裙", "knit sweater dress", "毛衣裙 针织裙 裙子 sweater dress knit", 199,
     "S,M,L", "70%羊毛30%锦纶，不易起球", "70% wool and 30% nylon, resists pilling",
     "弹性好，按平时尺码选；手洗不会缩水。", "Stretchy: take your usual size; hand wash and it will not shrink."),
    ("tops", "纯棉T恤", "cotton T-shirt", "T恤 短袖 体恤 t-shirt tee shirt", 79,
     "S,M,L,XL,XXL", "100%新疆长绒棉，已预缩", "100% long-staple cotton, pre-shrunk",
     "标准码，经过预缩处理，正常洗涤不会明显缩水。", "Standard fit, pre-shrunk: normal washing will not shrink it noticeably."),
    ("tops", "羊绒毛衣", "cashmere sweater", "毛衣 羊绒衫 针织衫 sweater cashmere jumper", 599,
     "S,M,L,XL", "100%山羊绒", "100% cashmere",
     "版型略宽松，喜欢合身可以选小一码。", "Slightly loose: size down for a closer fit."),
    ("pants", "高腰牛仔裤", "high-rise jeans", "牛仔裤 裤子 jeans denim pants", 229,
     "25,26,27,28,29,30,31,32", "98%棉2%氨纶", "98% cotton, 2% elastane",
     "按腰围选码：腰围二尺选26码；偏小半码，臀围大建议选大一码。", "Choose by waist: a 26-inch waist takes 26. Runs half a size small: size up for fuller hips."),
    ("shoes", "缓震跑步鞋", "cushioned running shoes", "跑鞋 跑步鞋 运动鞋 鞋 running shoes sneakers trainers", 459,
     "36,37,38,39,40,41,42,43,44", "网面鞋面，EVA缓震中底", "mesh upper, EVA cushioning midsole",
     "鞋码偏小半码，建议选大半码到一码；美码9号对应42码。", "Runs half a size small: go up half a size. US 9 is EU 42."),
    ("shoes", "真皮短靴", "leather ankle boots", "短靴 靴子 皮靴 boots ankle boots", 699,
     "35,36,37,38,39,40", "头层牛皮", "full-grain leather",
     "尺码标准，脚背高建议选大一码。", "True to size; size up if you have a high instep."),
    ("bags", "通勤双肩包", "commuter backpack", "双肩包 背包 书包 backpack bag", 189,
     "", "防泼水牛津布", "water-repellent oxford cloth", "均码，可放15.6寸电脑。", "One size; fits a 15.6-inch laptop."),
    ("home", "破壁料理机", "high-speed blender", "料理机 搅拌机 破壁机 blender", 899,
     "", "食品级Tritan杯体，1200W电机", "food-grade Tritan jar, 1200 W motor", "", ""),
    ("home", "电热水壶", "electric kettle", "热水壶 水壶 烧水壶 kettle", 149,
     "", "304不锈钢内胆", "304 stainless steel", "", ""),
    ("beauty", "保湿面霜", "hydrating face cream", "面霜 乳霜 护肤 face cream moisturizer", 168,
     "", "含神经酰胺和玻尿酸", "with ceramides and hyaluronic acid", "", ""),
    ("digital", "蓝牙降噪耳机", "noise-cancelling Bluetooth earbuds", "耳机 蓝牙耳机 earbuds headphones", 499,
     "", "主动降噪，续航30小时", "active noise cancelling, 30-hour battery", "", ""),
    ("outerwear", "羊毛大衣", "wool overcoat", "大衣 毛呢大衣 overcoat wool coat", 899,
     "S,M,L,XL", "80%羊毛20%羊绒", "80% wool, 20% cashmere",
     "版型偏大，建议选小一码。", "Runs large: size down."),
    ("tops", "真丝衬衫", "silk blouse", "衬衫 真丝衬衫 blouse silk shirt", 359,
     "S,M,L,XL", "100%桑蚕丝", "100% mulberry silk", "尺码标准。", "True to size."),
    ("tops", "连帽卫衣", "hooded sweatshirt", "卫衣 连帽衫 hoodie sweatshirt", 199,
     "S,M,L,XL,XXL", "380克纯棉毛圈", "380 g cotton terry", "宽松版型，按平时尺码选。", "Oversized fit: take your usual size."),
    ("pants", "直筒西裤", "straight-leg trousers", "西裤 裤子 trousers slacks", 269,
     "26,27,28,29,30,31,32,33,34", "羊毛混纺", "wool blend", "按腰围选码。", "Choose by waist size."),
    ("pants", "瑜伽裤", "yoga leggings", "瑜伽裤 打底裤 leggings yoga pants", 159,
     "XS,S,M,L,XL", "高弹锦纶", "high-stretch nylon", "紧身设计，介于两码之间选小码。", "Compressive: between sizes, size down."),
    ("shoes", "帆布鞋", "canvas sneakers", "帆布鞋 板鞋 canvas shoes sneakers", 189,
     "35,36,37,38,39,40,41,42,43,44", "帆布鞋面，橡胶底", "canvas upper, rubber sole", "尺码标准。", "True to size."),
    ("shoes", "凉拖鞋", "slide sandals", "拖鞋 凉拖 sandals slides", 99,
     "36,37,38,39,40,41,42,43,44", "EVA一体成型", "one-piece EVA", "偏大半码。", "Runs half a size large."),
    ("bags", "真皮手提包", "leather handbag", "手提包 女包 包包 handbag purse", 1299,
     "", "头层牛皮", "full-grain leather", "", ""),
    ("bags", "登机行李箱", "carry-on suitcase", "行李箱 拉杆箱 suitcase luggage", 699,
     "", "PC箱体，万向轮", "polycarbonate shell, spinner wheels", "", ""),
    ("home", "空气炸锅", "air fryer", "空气炸锅 炸锅 air fryer", 399,
     "", "5升容量，1500W", "5 L, 1500 W", "", ""),
    ("home", "乳胶枕", "latex pillow", "枕头 乳胶枕 pillow", 259,
     "", "天然乳胶", "natural latex", "", ""),
    ("home", "四件套床品", "bedding set", "四件套 床单 被套 bedding sheets", 499,
     "1.5米,1.8米,2.0米", "100%长绒棉", "100% long-staple cotton", "按床宽选择。", "Choose by bed width."),
    ("beauty", "防晒霜", "sunscreen", "防晒霜 防晒 sunscreen sunblock", 139,
     "", "SPF50+ PA++++", "SPF50+ PA++++", "", ""),
    ("beauty", "口红", "lipstick", "口红 唇膏 lipstick", 229,
     "", "哑光质地", "matte finish", "", ""),
    ("digital", "智能手表", "smart watch", "手表 智能手表 watch smartwatch", 1299,
     "", "心率血氧监测，续航14天", "heart-rate and SpO2 tracking, 14-day battery", "", ""),
    ("digital", "充电宝", "power bank", "充电宝 移动电源 power bank charger", 129,
     "", "20000毫安，22.5W快充", "20,000 mAh, 22.5 W fast charging", "", ""),
]
# Product lines of each catalog item: the base line first (what a caller naming the item gets).
LINES = [("", "", 1.0), ("高端款", "premium ", 1.5), ("基础款", "basic ", 0.7), ("加厚款", "heavyweight ", 1.2),
         ("轻薄款", "lightweight ", 0.9), ("联名款", "designer collab ", 1.8), ("限定款", "limited edition ", 1.6),
         ("经典款", "classic ", 1.1)]
COLORS = [("黑色", "black"), ("白色", "white"), ("藏青色", "navy"), ("米色", "beige"), ("红色", "red"),
          ("灰色", "grey"), ("粉色", "pink"), ("卡其色", "khaki")]
CARRIERS = [("SF", "顺丰速运", "SF Express"), ("YT", "圆通速递", "YTO Express"), ("ZT", "中通快递", "ZTO Express"),
            ("JD", "京东物流", "JD Logistics")]
CITIES = [("上海", "Shanghai"), ("杭州", "Hangzhou"), ("广州", "Guangzhou"), ("北京", "Beijing"), ("成都", "Chengdu"),
          ("武汉", "Wuhan"), ("深圳", "Shenzhen"), ("南京", "Nanjing")]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
# Shipping addresses: drawn from their own generator, so that every other generated fact stays as it was.
STREETS_ZH = ["人民路", "中山路", "解放路", "建设路", "和平路", "长江路", "文化路", "新华路"]
DISTRICTS_ZH = {"上海": "浦东新区", "杭州": "西湖区", "广州": "天河区", "北京": "朝阳区", "成都": "武侯区", "武汉": "江汉区",
                "深圳": "南山区", "南京": "鼓楼区"}
STREETS_EN = ["Oak Street", "Maple Avenue", "Cedar Road", "Elm Street", "Park Lane", "River Road"]
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "霞", "平", "刚"]
EN_NAMES = ["Emma Smith", "Liam Johnson", "Olivia Brown", "Noah Davis", "Ava Wilson", "Lucas Miller", "Mia Moore",
            "Ethan Taylor", "Sophia Anderson", "Mason Thomas"]

POLICIES = {
    "return": (
        ("退货政策", "签收后7天内可无理由退货，商品需未穿着、吊牌完好。质量问题退货运费由我们承担；非质量问题退货运费由顾客承担，运费险可抵扣。在订单详情页点击“申请售后”即可发起退货。"),
        ("Return policy", "You can return any item within 7 days of delivery for any reason, unworn and with tags attached. We pay return shipping for quality problems; otherwise return shipping is yours, covered by shipping insurance if you bought it. Start a return from the order page with 'Request after-sales service'."),
    ),
    "exchange": (
        ("换货政策", "签收后15天内可以换尺码或颜色，每个订单可免费换货一次，我们收到退回的商品后48小时内寄出新货。"),
        ("Exchange policy", "Within 15 days of delivery you can exchange for another size or colour, once per order for free. We ship the new item within 48 hours of receiving the returned one."),
    ),
    "refund": (
        ("退款时效", "退货商品验收通过后，退款在1到3个工作日内原路退回；信用卡退款可能需要7个工作日到账。"),
        ("Refund times", "Once the returned item passes inspection, the refund goes back to the original payment method within 1 to 3 business days; card refunds can take up to 7 business days."),
    ),
    "shipping": (
        ("发货与配送", "现货订单付款后48小时内发货，预售商品以页面标注时间为准。江浙沪一般1到2天送达，其他地区2到4天。可以在发货前修改地址。"),
        ("Shipping", "In-stock orders ship within 48 hours of payment; pre-orders ship on the date shown on the product page. Delivery takes 1 to 2 days in the Yangtze delta and 2 to 4 days elsewhere. The address can be changed before the order ships."),
    ),
    "cancel": (
        ("取消订单", "订单发货前可以直接取消，款项原路退回；已发货的订单不能取消，可以在签收后申请退货。"),
        ("Cancelling an order", "An order can be cancelled any time before it ships and the payment is refunded to the original method; once shipped it cannot be cancelled, but you can return it after delivery."),
    ),
    "warranty": (
        ("保修", "家电和数码产品享受一年免费保修，人为损坏除外。保修期内质量问题可免费维修或更换。"),
        ("Warranty", "Appliances and electronics carry a one-year free warranty, excluding accidental damage. Quality problems within the warranty are repaired or replaced free of charge."),
    ),
    "invoice": (
        ("发票", "所有订单都可以开具电子普通发票，确认收货后在订单详情页申请，1个工作日内发送到您的邮箱；需要增值税专用发票请联系人工客服。"),
        ("Invoices", "Every order can have an electronic invoice: request it on the order page after delivery and it arrives by e-mail within one business day. For a VAT special invoice, ask a human agent."),
    ),
    "coupon": (
        ("优惠活动", "本月全场满300减30，满600减80，可与会员折扣同时使用；新客首单立减20元。每个订单限用一张优惠券。"),
        ("Promotions", "This month: 30 off orders over 300 and 80 off orders over 600, combinable with member discounts; new customers get 20 off their first order. One coupon per order."),
    ),
    "membership": (
        ("会员权益", "会员分为新客、普通会员和VIP。VIP享受95折、专属客服和优先发货；每消费1元积1分，100积分可抵扣1元。"),
        ("Membership", "Members are new, regular or VIP. VIPs get 5% off, a dedicated service line and priority shipping. Every yuan spent earns one point; 100 points are worth one yuan."),
    ),
    "size_guide": (
        ("尺码建议", "上衣：身高155-160选S，160-165选M，165-170选L，170-175选XL，175以上选XXL；体重偏重建议选大一码。具体以商品详情页的尺码表为准。"),
        ("Size guide", "Tops: 155-160 cm take S, 160-165 M, 165-170 L, 170-175 XL, above 175 XXL; size up if you are heavier for your height. Each product page has its own size chart."),
    ),
}

# Orders that sample calls and tests refer to by number: (order_id, customer, catalog index, status)
FIXED_ORDERS = [
    ("38512074", "C1001", 0, "shipped"),
    ("20241108", "C1002", 2, "delivered"),
    ("55120963", "C1003", 7, "paid"),
    ("71830245", "C1004", 10, "delivered"),
    ("64209517", "C1005", 4, "returned"),
]


def build(path: str | Path, n_customers: int = 600, n_orders: int = 2400, seed: int = 7) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".building")
    tmp.unlink(missing_ok=True)
    rng = random.Random(seed)
    db = sqlite3.connect(tmp)
    db.executescript(SCHEMA.read_text(encoding="utf-8"))

    products = []
    for idx, (cat, zh, en, kw, price, sizes, mzh, men, azh, aen) in enumerate(CATALOG):
        for variant, (tag_zh, tag_en, factor) in enumerate(LINES):
            sku = f"P{idx:02d}{variant}"
            colors = rng.sample(COLORS, 3)
            stock = 0 if rng.random() < 0.12 else rng.randint(3, 300)
            restock = (DEMO_TODAY + timedelta(days=rng.randint(3, 20))).isoformat() if stock == 0 else None
            products.append((sku, tag_zh + zh, tag_en + en, cat, kw, round(price * factor), stock, restock, mzh, men,
                              sizes, ",".join(c[0] for c in colors), ",".join(c[1] for c in colors), azh, aen))
    db.executemany("INSERT INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", products)

    customers = []
    for i in range(n_customers):
        cid = f"C{1001 + i}"
        english = i % 8 == 7
        name = EN_NAMES[i % len(EN_NAMES)] if english else rng.choice(SURNAMES) + rng.choice(GIVEN)
        phone = f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"
        tier = ["new", "regular", "regular", "vip"][i % 4]
        customers.append((cid, name, phone, tier, "en" if english else "zh", rng.randint(0, 20000)))
    db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", customers)

    used_ids = {o[0] for o in FIXED_ORDERS}
    plan = [(oid, cid, pidx * len(LINES), status) for oid, cid, pidx, status in FIXED_ORDERS]
    while len(plan) < n_orders:
        oid = str(rng.randint(10000000, 99999999))
        if oid in used_ids:
            continue
        used_ids.add(oid)
        status = rng.choices(["paid", "shipped", "delivered", "cancelled", "returned"], [15, 25, 45, 7, 8])[0]
        plan.append((oid, rng.choice(customers)[0], rng.randrange(len(products)), status))

    orders, events = [], []
    addresses = random.Random(seed + 1)
    language = {c[0]: c[4] for c in customers}
    for oid, cid, pidx, status in plan:
        product = products[pidx]
        sizes = product[10].split(",") if product[10] else [None]
        size = rng.choice(sizes)
        color_zh, color_en = product[11].split(",")[0], product[12].split(",")[0]
        qty = rng.choice([1, 1, 1, 2])
        created = DEMO_TODAY - timedelta(days={"paid": 1, "shipped": 3}.get(status, rng.randint(6, 40)))
        ship_by = created + timedelta(days=2)
        shipped = delivered = carrier = tracking = refund = None
        if status in ("shipped", "delivered", "returned"):
            code, czh, cen = rng.choice(CARRIERS) if oid != "38512074" else CARRIERS[0]
            carrier = f"{czh}|{cen}"
            tracking = f"{code}{rng.randint(10**11, 10**12 - 1)}"
            shipped = created + timedelta(days=1)
            src, dst = rng.sample(CITIES, 2)
            steps = [(shipped, src, "已揽收", "picked up"), (shipped + timedelta(days=1), src, "已发出，运往" + dst[0], "departed for " + dst[1])]
            if status == "shipped":
                steps.append((DEMO_TODAY, dst, "已到达，正在派送", "out for delivery"))
            else:
                delivered = shipped + timedelta(days=2)
                steps.append((delivered, dst, "已签收", "delivered"))
            for at, city, ezh, een in steps:
                stamp = datetime.combine(at, datetime.min.time()) + timedelta(hours=rng.randint(8, 20))
                events.append((tracking, stamp.isoformat(sep=" ", timespec="minutes"), city[0], city[1], ezh, een))
        if status == "returned":
            refund = rng.choice(["processing", "refunded"]) if oid != "64209517" else "processing"
        city_zh, city_en = addresses.choice(CITIES)
        if language[cid] == "en":
            address = f"{addresses.randint(1, 300)} {addresses.choice(STREETS_EN)}, {city_en}"
        else:
            address = f"{city_zh}市{DISTRICTS_ZH[city_zh]}{addresses.choice(STREETS_ZH)}{addresses.randint(1, 300)}号"
        orders.append((oid, cid, product[0], size, color_zh, color_en, qty, product[5] * qty, status, created.isoformat(),
                       ship_by.isoformat(), shipped and shipped.isoformat(), delivered and delivered.isoformat(),
                       carrier, tracking, refund, address))
    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", orders)
    db.executemany("INSERT INTO tracking_events VALUES (?,?,?,?,?,?)", events)
    for key, ((tzh, bzh), (ten, ben)) in POLICIES.items():
        db.execute("INSERT INTO policies VALUES (?,?,?,?)", (key, "zh", tzh, bzh))
        db.execute("INSERT INTO policies VALUES (?,?,?,?)", (key, "en", ten, ben))
    db.execute("INSERT INTO meta VALUES ('demo_version', ?)", (DEMO_VERSION,))
    db.execute("INSERT INTO meta VALUES ('today', ?)", (DEMO_TODAY.isoformat(),))
    db.commit()
    db.close()
    tmp.replace(path)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "var/shop.db"
    build(out)
    print(f"demo shop written to {out}")
