"""Product questions: size, price, stock, a recommendation, or what the product is."""

from __future__ import annotations

from ...textnorm import spoken_date
from .. import templates
from .base import FlowResult, StateUpdate, Turn
from .facts import policy


def product_question(turn: Turn) -> FlowResult:
    intent, lang, shop = turn.intent, turn.language, turn.tools.shop
    cites: list[str] = []
    sku = turn.slots.get("product")
    if turn.state.customer_id and "product" in turn.understanding.slots:
        # "and the windbreaker?": the one the caller bought, when they bought one
        from .order_choice import mentioned

        named = mentioned(turn.text, shop.orders_for_customer(turn.state.customer_id), shop)
        if named and len({o.sku for o in named}) == 1:
            sku = named[0].sku
    product = shop.product(sku) if sku else None
    if product is None and intent == "product.size":
        return FlowResult(templates.render(lang, "size_general", policy=policy(turn.tools, "size_guide", lang, cites)),
                          resolved=True, grounding=tuple(cites))
    if product is None and intent == "product.recommend":
        product = next((p for p in shop.products() if p.stock > 0), None)
    if product is None:
        return FlowResult(templates.render(lang, "product_ask"), state=StateUpdate(pending_intent=intent))
    sep = "、" if lang == "zh" else ", "
    values = {
        "product": product.name(lang),
        "price": f"{product.price:g}",
        "stock": product.stock,
        "restock_date": spoken_date(product.restock_date, lang),
        "material": product.material_zh if lang == "zh" else product.material_en,
        "colors": sep.join(product.colors_zh if lang == "zh" else product.colors_en),
        "sizes": sep.join(product.sizes) if product.sizes else ("均码" if lang == "zh" else "one size"),
        "advice": product.size_advice_zh if lang == "zh" else product.size_advice_en,
    }
    key = {"product.size": "size_product", "product.price": "price", "product.recommend": "recommend",
           "product.stock": "stock_in" if product.stock > 0 else "stock_out"}.get(intent, "product_info")
    return FlowResult(templates.render(lang, key, **values), resolved=True, grounding=(f"products:{product.sku}",))
