"""The store's database (voiceagent/db.py, migrations): the same calls kept on SQLite and on a real Postgres
server, old SQLite files taken over by the migrations, workers migrating a new database at once, and
[store] db values that cannot mean what was asked refused with their reason."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from voiceagent import db
from voiceagent.record import AgentTurn, CallRecord, CallerTurn, Outcome
from voiceagent.store import CallStore

ROOT = Path(__file__).resolve().parent.parent


def a_record(call_id: str, handoff: bool = False) -> CallRecord:
    record = CallRecord(call_id=call_id, language="zh", customer_id="C001", duration_s=12.5)
    record.turns = [
        CallerTurn(text="我的手机号是13812345678，订单到哪了", start_s=0.5, end_s=2.0, intent="order_status",
                   confidence=0.9, slots={"phone": "13812345678"}, emotion="neutral", language="zh", dialect=None),
        AgentTurn(text="您的订单已发货。", start_s=2.4, end_s=4.0, latency_ms={"voice_to_voice": 640.0}),
    ]
    record.outcome = Outcome(resolved=not handoff, handoff=handoff, handoff_reason="asked" if handoff else None)
    if handoff:
        record.handoff = {"reason": "asked", "target": "queue", "created_at": "2026-12-07T10:00:00+00:00",
                          "summary_zh": "客户要求人工"}
    return record


def test_calls_are_kept_the_same_on_both_stores(store_db):
    store = CallStore(store_db, worker="w1")
    store.save(a_record("call-1"))
    store.save(a_record("call-2", handoff=True))
    kept = store.get("call-1")
    assert kept["worker"] == "w1" and kept["turns"][1]["text"] == "您的订单已发货。"
    assert "13812345678" not in str(kept)  # masked before it is stored, on either database
    # the same call stored again (a record completed after a crash) replaces its row, never doubles it
    again = a_record("call-1")
    again.duration_s = 30.0
    store.save(again)
    assert store.count() == 2 and store.get("call-1")["duration_s"] == 30.0
    assert store.handoff("call-2")["reason"] == "asked" and store.get("missing") is None
    assert [r["call_id"] for r in store.recent(10)] and len(store.recent(1)) == 1
    assert store.recent_handoffs(5)[0]["call_id"] == "call-2"


def test_a_second_worker_sees_the_first_ones_calls_and_its_own_name_is_kept(postgres_url):
    CallStore(postgres_url, worker="w1").save(a_record("from-w1"))
    other = CallStore(postgres_url, worker="w2")
    other.save(a_record("from-w2"))
    assert {r["call_id"]: r["worker"] for r in other.recent(10)} == {"from-w1": "w1", "from-w2": "w2"}
    with other.db.connect() as conn:
        rows = dict(conn.execute("SELECT call_id, worker FROM calls").fetchall())
    assert rows == {"from-w1": "w1", "from-w2": "w2"}


def test_many_threads_storing_at_once_lose_nothing_on_postgres(postgres_url):
    store = CallStore(postgres_url, worker="w1")
    errors = []

    def save(i: int) -> None:
        try:
            store.save(a_record(f"c{i}", handoff=i % 3 == 0))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.count() == 40 and len(store.recent_handoffs(100)) == 14


def test_an_sqlite_file_from_before_the_migrations_is_taken_over_with_its_calls(tmp_path):
    """A var/calls.db written by the previous release (tables made by the stores themselves, no
    alembic_version) keeps its rows and gains the new columns and tables."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("baseline", db.MIGRATIONS_DIR / "versions" / "0001_baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for script in (baseline.CALLS, baseline.CAMPAIGNS, baseline.OPERATORS):
            conn.executescript(script)
        conn.execute("INSERT INTO calls VALUES ('old-call','2026-01-01T00:00:00+00:00','en',NULL,3.0,0,NULL,1,'{\"call_id\": \"old-call\"}')")
    store = CallStore(path, worker="w1")
    assert store.get("old-call") == {"call_id": "old-call"}
    assert db.current_revision(store.db) == db.SCHEMA_HEAD
    store.save(a_record("new-call"))
    with store.db.connect() as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
        assert "worker" in columns
        assert conn.execute("SELECT worker FROM calls WHERE call_id = 'new-call'").fetchone()[0] == "w1"
        assert conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0] == 0  # the new tables exist


def test_the_head_revision_the_code_expects_is_the_migrations_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db.SCHEMA_HEAD


def test_workers_starting_together_on_a_new_database_migrate_it_once(postgres_url):
    code = ("import sys; from voiceagent import db; d = db.open_database(sys.argv[1]); "
            "print(db.current_revision(d))")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-800:] for _, err in results]
    assert [out.strip() for out, _ in results] == [db.SCHEMA_HEAD] * 3


@pytest.mark.parametrize("value, says", [
    ("mysql://root@localhost/shop", "only a SQLite path"),
    ("sqlite:///", "needs a file path"),
])
def test_a_store_url_it_does_not_speak_is_refused(value, says):
    with pytest.raises(db.StoreError, match=says):
        db.open_database(value)


def test_a_postgres_store_it_cannot_reach_is_an_error_with_its_reason_and_no_password(postgres_server):
    url = f"postgresql://postgres:hunter2@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(db.StoreError) as caught:
        db.open_database(url)
    assert "no_such_database" in str(caught.value) and "hunter2" not in str(caught.value)


def test_serve_refuses_to_start_on_a_store_it_cannot_open(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[store]\ndb = "postgresql://agent:s3cret@127.0.0.1:1/calls"\n')
    from tests.peers.ports import free_port

    run = subprocess.run([str(Path(sys.executable).with_name("voiceagent")), "serve", "--config", str(config),
                          "--http", f"127.0.0.1:{free_port('tcp')}", "--sip", "off"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "cannot open the Postgres store" in run.stderr and "s3cret" not in run.stderr


def test_placeholders_are_translated_outside_quotes_only():
    assert db.to_pyformat("SELECT '?', ? FROM t WHERE a LIKE '%x%' AND b = ?") == \
        "SELECT '?', %s FROM t WHERE a LIKE '%%x%%' AND b = %s"


def test_a_record_the_store_cannot_take_is_retried_then_spooled_and_stored_at_the_next_start(
        postgres_server, postgres_url, tmp_path, monkeypatch):
    """Postgres down past the retries: the record is kept on disk, and stored once the store is back."""
    from voiceagent import store as store_mod

    monkeypatch.setenv("VOICEAGENT_VAR", str(tmp_path / "var"))
    monkeypatch.setattr(store_mod, "RETRY_WAITS_S", (0.05, 0.05))
    store = CallStore(postgres_url, worker="w1")
    real_write, tries = store._write, []

    def unreachable(data):
        tries.append(1)
        raise db.transient_errors()[-1]("the server closed the connection")

    monkeypatch.setattr(store, "_write", unreachable)
    with pytest.raises(db.transient_errors()):
        store.save(a_record("kept-call"))
    assert len(tries) == 3 and store.count() == 0
    assert [p.name for p in store_mod.SPOOL_DIR().iterdir()] == ["kept-call.json"]
    monkeypatch.setattr(store, "_write", real_write)
    # the next start of a worker stores it (any worker: the spool is on this worker's disk)
    assert CallStore(postgres_url, worker="w1").replay_spooled() == 1
    assert store.get("kept-call")["worker"] == "w1" and not list(store_mod.SPOOL_DIR().iterdir())


def test_a_dead_pooled_connection_is_replaced_not_handed_to_a_save(postgres_server, postgres_url):
    """A Postgres restart kills the pool's idle connections; the next save still lands."""
    import psycopg

    store = CallStore(postgres_url, worker="w1")
    store.save(a_record("before"))
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                      "pg_backend_pid()", (postgres_url.rsplit("/", 1)[1],))
    store.save(a_record("after"))
    assert store.count() == 2
