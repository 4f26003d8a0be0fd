"""The handoff summary: what the human who takes the call needs before saying hello.

Caller (customer, tier, masked phone), the order in question and its state, the slots gathered,
the intent history, the emotion timeline, why the agent let go, what it already tried (answers,
tickets, coupons, clarifications) and the last turns of the conversation, masked. Built when the
agent decides to transfer, stored with the call and served over the HTTP API; a short `brief`
reads it out in one paragraph for a screen pop.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..textnorm import mask_pii

REASONS = {
    "caller_request": ("客户要求转人工", "the caller asked for a person"),
    "sensitive_topic": ("涉及需人工处理的问题", "a topic that needs a person"),
    "dialect": ("方言需人工服务", "a dialect the agent does not serve"),
    "angry": ("客户情绪激动", "the caller is angry"),
    "low_confidence": ("多次未能理解客户", "the agent could not understand the caller"),
    "repeated_failure": ("多次未能解决问题", "the agent could not answer, turn after turn"),
}


def build_summary(state, shop, reason: str | None, detail: str | None, target: str | None) -> dict:
    """`state`: the DialogState of the call (or chat) being handed over."""
    customer = shop.customer(state.customer_id) if state.customer_id else None
    order = None
    if "order_id" in state.slots:
        found = shop.order(state.slots["order_id"])
        if found is not None:
            order = {"order_id": found.order_id, "status": found.status,
                     "product": found.product_zh if state.language == "zh" else found.product_en,
                     "amount": found.amount, "created_at": found.created_at,
                     "tracking_no": getattr(found, "tracking_no", None)}
    slots = {k: mask_pii(v) if k in ("phone", "address") else v for k, v in state.slots.items()}
    emotions = [{"at_s": round(at, 2), "emotion": t.label, "anger": t.anger,
                 "from": t.sources() or None} for at, t in state.emotion.timeline]
    peak = max((t.anger for _, t in state.emotion.timeline), default=0.0)
    summary = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reason": reason,
        "detail": detail,
        "target": target,
        "language": state.language,
        "dialect": state.languages.dialect,
        "caller": {"customer_id": state.customer_id,
                   "name": customer.name if customer else None,
                   "tier": customer.tier if customer else None,
                   "phone": mask_pii(customer.phone) if customer else slots.get("phone")},
        "order": order,
        "slots": slots,
        "intents": list(state.intents),
        "emotion": {"now": state.emotion.timeline[-1][1].label if state.emotion.timeline else "neutral",
                    "running_anger": state.emotion.running_anger, "peak_anger": peak, "timeline": emotions},
        # what the caller was in the middle of: the person picks it up rather than asking again
        "task": _task(getattr(state, "task", None)), "suspended": [_task(t) for t in getattr(state, "suspended", [])],
        "tried": list(state.tried),
        "transcript": [{"role": role, "text": mask_pii(text)} for role, text in state.history[-10:]],
    }
    summary["brief"] = brief(summary)
    return summary


def _task(task) -> dict | None:
    if task is None:
        return None
    record = task.as_record()
    record["slots"] = {k: mask_pii(v) if k in ("phone", "address") else v for k, v in record["slots"].items()}
    return record


def brief(summary: dict) -> str:
    """One paragraph for the agent's screen, in the caller's language."""
    zh = summary["language"] == "zh"
    reason = REASONS.get(summary["reason"] or "", (summary["reason"] or "", summary["reason"] or ""))[0 if zh else 1]
    caller = summary["caller"]
    who = caller["name"] or caller["customer_id"] or ("未知客户" if zh else "unknown caller")
    tier = f"（{caller['tier']}）" if zh and caller["tier"] else (f" ({caller['tier']})" if caller["tier"] else "")
    order = summary["order"]
    order_text = (f"订单{order['order_id']}，状态{order['status']}" if zh else f"order {order['order_id']}, {order['status']}") \
        if order else ("未提供订单" if zh else "no order given")
    mood = summary["emotion"]["now"]
    asked = "、".join(dict.fromkeys(summary["intents"][-4:])) if zh else ", ".join(dict.fromkeys(summary["intents"][-4:]))
    tried = ("；".join(summary["tried"][-4:]) if zh else "; ".join(summary["tried"][-4:])) or ("无" if zh else "nothing yet")
    if zh:
        return f"转接原因：{reason}。客户：{who}{tier}。{order_text}。诉求：{asked or '无'}。情绪：{mood}。已尝试：{tried}。"
    return f"Transfer: {reason}. Caller: {who}{tier}. {order_text[0].upper() + order_text[1:]}. " \
           f"Asked about: {asked or 'nothing specific'}. Mood: {mood}. Already tried: {tried}."
