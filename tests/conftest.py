"""Shared fixtures. Real models throughout: the runtime is loaded once per test session."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "audio"
VOICEAGENT = str(Path(sys.executable).with_name("voiceagent"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_var(tmp_path_factory):
    """Tests keep their state (demo shop, call store, caches) out of the developer's var/."""
    var = tmp_path_factory.mktemp("var")
    os.environ["VOICEAGENT_VAR"] = str(var)
    # Servers the tests start on var dirs of their own share the pre-synthesised speech: only the
    # first of them makes it (tests/test_speech_disk_cache.py gives its stores their own folders).
    os.environ.setdefault("VOICEAGENT_SPEECH_CACHE", str(var / "speech-cache"))
    yield var


@pytest.fixture(autouse=True)
def _fresh_order_guesses(monkeypatch):
    """Wrong last-four answers are counted per order across the process's conversations (a lock
    after a few): each test's conversations start with none counted."""
    from voiceagent.dialog.flows import ownership

    monkeypatch.setattr(ownership, "GUESSES", ownership.OrderGuesses())


@pytest.fixture(scope="session")
def config():
    from voiceagent.config import Config

    return Config()


@pytest.fixture(scope="session")
def runtime(config):
    from voiceagent.runtime import Runtime

    return Runtime.load(config)


@pytest.fixture(scope="session")
def dialog_runtime(config):
    from voiceagent.runtime import Runtime

    return Runtime.load(config, parts=("dialog",))


@pytest.fixture(scope="session")
def postgres_server():
    """One real Postgres server for the session (tests/peers/postgres.py), started on first use."""
    from tests.peers import postgres

    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail("postgres is not installed: scripts/setup.sh installs Debian's postgresql")
        pytest.skip("postgres is not installed (make test installs it)")
    with postgres.PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the session's server; dropped after the test."""
    from voiceagent import db

    url = postgres_server.create_database()
    yield url
    db.close_all()  # the store's pools hold connections to it
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request, tmp_path):
    """[store] db for the same test on both stores: a SQLite file, then a real Postgres database."""
    if request.param == "sqlite":
        yield str(tmp_path / "calls.db")
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def sample_scripts() -> dict:
    return json.loads((SAMPLES / "transcripts.json").read_text(encoding="utf-8"))


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env
