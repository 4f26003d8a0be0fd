"""Reply templates from prompts/replies.<lang>.toml (and the other tables beside it, such as
prompts/marketing.<lang>.toml)."""

from __future__ import annotations

import string
import tomllib
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from .. import paths

# The channel the reply is for: "voice" picks the short [voice] template where there is one. Set for
# the length of one dialog turn (DialogEngine.respond), so the flows need not carry it.
_channel: ContextVar[str] = ContextVar("reply_channel", default="text")


@contextmanager
def channel(name: str):
    token = _channel.set(name)
    try:
        yield
    finally:
        _channel.reset(token)


class _Missing(dict):
    def __missing__(self, key):  # a template field with no value renders empty, never raises
        return ""


@lru_cache(maxsize=8)
def load(lang: str, name: str = "replies") -> dict:
    lang = "zh" if lang == "zh" else "en"
    return tomllib.loads((paths.prompts_dir() / f"{name}.{lang}.toml").read_text(encoding="utf-8"))


def fill(lang: str, template: str, values: dict) -> str:
    """A template with its values (a missing one renders empty), spaced as the language writes."""
    text = string.Formatter().vformat(template, (), _Missing(values))
    return " ".join(text.split()) if lang != "zh" else text.strip()


def render(lang: str, key: str, **values) -> str:
    table = load(lang)
    template = table.get("voice", {}).get(key) if _channel.get() == "voice" else None
    return fill(lang, template or table["reply"][key], values)


def value(lang: str, key: str) -> str:
    return load(lang)["values"].get(key, key)


def tier_opening(lang: str, tier: str | None) -> str:
    return load(lang)["tier_opening"].get(tier or "new", "")


def ack(lang: str, intent: str) -> str:
    return load(lang).get("ack", {}).get(intent, "")


def fixed_replies(lang: str) -> list[str]:
    """The replies with no value to fill in ("请告诉我您的订单号..."): said word for word, again and again."""
    table = load(lang)
    return [" ".join(t.split()) if lang != "zh" else t.strip()
            for t in [*table["reply"].values(), *table.get("voice", {}).values()] if "{" not in t]
