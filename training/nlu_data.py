"""The NLU data sets as the trainers read them: nlu_train.jsonl and nlu_dev.jsonl under
training/data/ (built from the templates by make_nlu_data.py), and the slice of training templates
the encoder is not tuned on.

Kept apart from the builder so that the torch-only environment (finetune_encoder) reads the rows
without importing the shop.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
TEMPLATES = DATA / "nlu_templates"


def split_path(split: str) -> Path:
    return DATA / f"nlu_{split}.jsonl"


def load_rows(split: str) -> list[dict]:
    """The utterances of one split ("train" or "dev"), one dict per line."""
    return [json.loads(line) for line in split_path(split).read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out(template: str) -> bool:
    """The slice of training templates the encoder is not tuned on: it picks the tuning epoch and
    calibrates the classifier's confidence."""
    return int(hashlib.md5(template.encode()).hexdigest(), 16) % 8 == 0
