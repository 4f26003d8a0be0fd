"""Where the project keeps its data: manifests and prompts in the source tree, state under var/."""

from __future__ import annotations

import os
from pathlib import Path

# The source checkout (editable install). Operators running from a wheel set VOICEAGENT_HOME.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    return Path(os.environ.get("VOICEAGENT_HOME", PROJECT_ROOT))


def models_manifest() -> Path:
    return home() / "models" / "manifest.toml"


def models_dir() -> Path:
    """Provisioned model files; `voiceagent models fetch` fills it."""
    return Path(os.environ.get("VOICEAGENT_MODELS_DIR", home() / "models" / "cache"))


def prompts_dir() -> Path:
    return home() / "prompts"


def var_dir() -> Path:
    path = Path(os.environ.get("VOICEAGENT_VAR", home() / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path
