"""Safety on both sides of the dialog: callers trying to override the rules (prompt injection,
demands beyond policy) are refused, and what the agent says passes a sensitive-word and
competitor-name filter before it is spoken or shown. Word lists live in prompts/safety.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache

from .. import paths


@dataclass(frozen=True)
class SafetyLists:
    competitors: tuple[str, ...]
    sensitive: tuple[str, ...]
    injection: re.Pattern


@lru_cache(maxsize=1)
def lists() -> SafetyLists:
    data = tomllib.loads((paths.prompts_dir() / "safety.toml").read_text(encoding="utf-8"))
    return SafetyLists(tuple(data.get("competitors", [])), tuple(data.get("sensitive", [])),
                       re.compile("|".join(f"(?:{p})" for p in data.get("injection", [])) or r"(?!)", re.I))


def is_injection(text: str) -> bool:
    return bool(lists().injection.search(text))


def filter_output(text: str) -> tuple[str, list[str]]:
    """Masks competitor names and sensitive words in the agent's words; returns what was masked."""
    hits = []
    for word in lists().competitors + lists().sensitive:
        pattern = re.compile(re.escape(word), re.I)
        if pattern.search(text):
            hits.append(word)
            text = pattern.sub("*" * len(word) if not word.isascii() else "***", text)
    return text, hits
