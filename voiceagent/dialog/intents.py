"""The label sets fixed by SPEC.md."""

INTENTS = (
    "product.info", "product.size", "product.price", "product.stock", "product.recommend",
    "order.status", "order.modify", "order.cancel", "logistics.track",
    "aftersales.return", "aftersales.exchange", "aftersales.refund", "aftersales.complaint",
    "aftersales.warranty", "aftersales.invoice", "promo.coupon", "account.info",
    "handoff.human", "chitchat.greeting", "chitchat.goodbye", "other",
)
SLOTS = ("order_id", "tracking_no", "phone", "product", "size", "color", "quantity", "reason", "address", "amount")
EMOTIONS = ("angry", "anxious", "hesitant", "neutral", "satisfied")
DIALECTS = ("mandarin", "cantonese", "other_chinese")

# Intents answered from the same records: confusing one for its sibling still answers the caller,
# so the clarifying question is asked only when the whole group is unlikely.
GROUPS = (
    ("order.status", "logistics.track"),
    ("aftersales.return", "aftersales.exchange"),
    ("product.info", "product.size", "product.price", "product.stock", "product.recommend"),
)


def group_probability(intent: str, scores: dict[str, float]) -> float:
    for group in GROUPS:
        if intent in group:
            return sum(scores.get(i, 0.0) for i in group)
    return scores.get(intent, 0.0)
