"""Training lives outside the product: the NLU data sets are rebuilt from the template files row for
row (so `make train-nlu` starts from what the shipped models were trained on), the trainers' entry
points still run, and nothing in the product imports training/."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import numpy as np
import pytest

from training import make_nlu_data, train_emotion, train_intents
from training.nlu_data import TEMPLATES, held_out, load_rows, split_path
from voiceagent.dialog.intents import INTENTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built():
    return make_nlu_data.build()


def test_the_builder_reproduces_the_shipped_data_sets_byte_for_byte(built):
    train, dev = built
    assert train == load_rows("train")
    assert dev == load_rows("dev")
    # byte for byte too: the shipped intent model records the training file's sha256
    assert make_nlu_data.as_jsonl(train) == split_path("train").read_text(encoding="utf-8")
    assert make_nlu_data.as_jsonl(dev) == split_path("dev").read_text(encoding="utf-8")


def test_templates_are_data_files_naming_known_intents_in_both_languages():
    files = sorted(TEMPLATES.iterdir())
    assert files and all(f.suffix == ".toml" for f in files)
    templates = make_nlu_data.load_templates()
    assert set(templates) == set(INTENTS)
    for intent, by_lang in templates.items():
        assert set(by_lang) == {"zh", "en"}, intent
        assert all(isinstance(t, str) and t.strip() for items in by_lang.values() for t in items), intent
    # every round extends intents the first round defined (the order of the first file is the build order)
    first = tomllib.loads(files[0].read_text(encoding="utf-8"))
    assert list(templates) == list(first)


def test_dev_templates_and_the_encoder_held_out_slice_are_apart_from_tuning(built):
    train, dev = built
    assert not {r["template"] for r in train} & {r["template"] for r in dev}
    held = [r for r in train if held_out(r["template"])]
    assert 0.05 < len(held) / len(train) < 0.2  # about one template in eight


def test_classifier_fit_separates_intents_and_the_temperature_is_fitted():
    """The classifier's trainer on a small problem shaped like the real one (the full run embeds
    18 000 sentences: minutes)."""
    rng = np.random.default_rng(0)
    k, per, dim = len(INTENTS), 12, 48
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    y = np.repeat(np.arange(k), per)
    x = centres[y] + 0.3 * rng.normal(size=(len(y), dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit vectors, like the e5 embeddings
    w, b = train_intents.fit(x, y, l2=train_intents.L2, steps=200)
    logits = x @ w + b
    assert (logits.argmax(1) == y).mean() > 0.95
    temperature = train_intents.fit_temperature(logits, y)
    assert 0.3 <= temperature < 4.0


@pytest.mark.parametrize("module", [train_intents, train_emotion])
def test_trainers_entry_points_parse_their_arguments(module, capsys):
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_the_product_imports_nothing_from_training():
    offenders = []
    for package in ("voiceagent", "telephony"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "training"]
    assert offenders == []
