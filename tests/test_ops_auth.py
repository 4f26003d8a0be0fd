"""Operators, sessions, API tokens, CSRF and lockout (voiceagent/ops/auth.py) and the `users` /
`tokens` commands. Fast: no models; argon2 with small parameters except in the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from voiceagent.db import Database, open_database, resolve
from voiceagent.ops.auth import (ROLES, AuthPolicy, LockedOut, Operator, OperatorAuth, login_routes,
                                 role_at_least)
from voiceagent.ops.ratelimit import RateLimiter

PASSWORD = "correct horse 1"
TOKEN_FORMAT = re.compile(r"^va_[A-Za-z0-9_-]{40}$")
VOICEAGENT = Path(sys.executable).parent / "voiceagent"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def query(db, sql: str, args: tuple = ()) -> list:
    """Rows read from the store directly, not through OperatorAuth."""
    with open_database(db).connect() as conn:
        return conn.execute(sql, args).fetchall()


def everything_stored(db) -> bytes:
    """All the store keeps: the SQLite file and its WAL, or every auth table's rows on Postgres."""
    if resolve(db)[0] == "sqlite":
        path = open_database(db).path
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return repr([query(db, f"SELECT * FROM {table}") for table in ("operators", "api_tokens", "operator_sessions")]
                ).encode()


@pytest.fixture
def auth(store_db, clock) -> OperatorAuth:
    """On SQLite, then on Postgres: the tests that use it run on both stores."""
    a = OperatorAuth(store_db, clock=clock, hasher=fast_hasher())
    a.add_user("alice", "admin", PASSWORD)
    a.add_user("sam", "supervisor", PASSWORD)
    a.add_user("ann", "agent", PASSWORD)
    return a


def test_roles_are_ordered():
    assert ROLES == ("agent", "supervisor", "admin")
    assert role_at_least("admin", "agent") and role_at_least("supervisor", "supervisor")
    assert not role_at_least("agent", "supervisor") and not role_at_least("boss", "agent")


def test_password_is_stored_as_an_argon2_hash(auth, store_db):
    [(stored,)] = query(store_db, "SELECT password_hash FROM operators WHERE name = 'alice'")
    assert stored != PASSWORD and PASSWORD not in stored
    assert stored.startswith("$argon2id$")
    assert b"alice" in everything_stored(store_db) and PASSWORD.encode() not in everything_stored(store_db)
    op = auth.login("alice", PASSWORD, "10.0.0.1")
    assert op is not None and (op.name, op.role, op.via) == ("alice", "admin", "session")
    assert op.csrf and op.session_id and op.csrf != op.session_id
    assert auth.login("alice", PASSWORD + "x") is None
    assert auth.login("nobody", PASSWORD) is None


@pytest.mark.parametrize("name, role, password, why", [
    ("bob", "agent", "short", "too short"),
    ("bob", "agent", "", "too short"),
    ("bob", "boss", PASSWORD, "unknown role"),
    ("alice", "agent", PASSWORD, "exists"),
    ("", "agent", PASSWORD, "bad operator name"),
    ("a b", "agent", PASSWORD, "bad operator name"),
])
def test_add_user_refuses_bad_input(auth, name, role, password, why):
    with pytest.raises(ValueError, match=why):
        auth.add_user(name, role, password)


def test_lockout_after_five_wrong_passwords_then_unlock_or_wait(auth, clock):
    for _ in range(5):
        assert auth.login("ann", "wrong password") is None
    with pytest.raises(LockedOut) as locked:
        auth.login("ann", PASSWORD)  # the right password does not help while locked
    assert 14 * 60 < locked.value.retry_after_s <= 15 * 60
    assert auth.list_users()[[u["name"] for u in auth.list_users()].index("ann")]["locked_until"]
    auth.unlock("ann")
    assert auth.login("ann", PASSWORD) is not None

    for _ in range(5):
        auth.login("ann", "wrong password")
    clock.advance(15 * 60 + 1)
    assert auth.login("ann", PASSWORD) is not None
    with pytest.raises(ValueError):
        auth.unlock("nobody")


def test_failures_must_be_in_a_row(auth):
    for _ in range(4):
        auth.login("sam", "wrong password")
    assert auth.login("sam", PASSWORD) is not None  # resets the count
    for _ in range(4):
        auth.login("sam", "wrong password")
    assert auth.login("sam", PASSWORD) is not None


def test_unknown_names_lock_like_real_ones(auth):
    """Otherwise the 429 would tell which names exist."""
    for _ in range(5):
        assert auth.login("ghost", "wrong password") is None
    with pytest.raises(LockedOut):
        auth.login("ghost", "wrong password")


def test_lockout_limits_are_configurable(store_db, clock):
    a = OperatorAuth(store_db, policy=AuthPolicy(max_failures=2, lockout_s=60), clock=clock,
                     hasher=fast_hasher())
    a.add_user("ann", "agent", PASSWORD)
    a.login("ann", "nope nope"), a.login("ann", "nope nope")
    with pytest.raises(LockedOut) as locked:
        a.login("ann", PASSWORD)
    assert locked.value.retry_after_s <= 60


def test_session_idle_and_absolute_expiry(auth, clock):
    op = auth.login("ann", PASSWORD)
    assert auth.session(op.session_id) == Operator("ann", "agent", "session", op.csrf)
    clock.advance(8 * 3600 - 5)
    assert auth.session(op.session_id) is not None  # used just in time: idle time starts again
    clock.advance(8 * 3600 + 1)
    assert auth.session(op.session_id) is None  # idle too long
    assert auth.session(op.session_id) is None

    op = auth.login("ann", PASSWORD)
    for _ in range(23):
        clock.advance(3600)
        assert auth.session(op.session_id) is not None
    clock.advance(3601)
    assert auth.session(op.session_id) is None  # 24 h after login however active


def test_session_touch_is_at_most_once_a_minute(auth, clock, store_db):
    op = auth.login("ann", PASSWORD)
    login_at = clock()

    def last_seen() -> float:
        return query(store_db, "SELECT last_seen_at FROM operator_sessions")[0][0]

    clock.advance(30)
    auth.session(op.session_id)
    assert last_seen() == login_at
    clock.advance(31)
    auth.session(op.session_id)
    assert last_seen() == login_at + 61


def test_session_cookie_is_stored_hashed_and_junk_is_refused(auth, store_db):
    op = auth.login("ann", PASSWORD)
    assert op.csrf.encode() in everything_stored(store_db)  # the session's row is there ...
    assert op.session_id.encode() not in everything_stored(store_db)  # ... its cookie only hashed
    for junk in (None, "", "x", op.session_id + "x", "a" * 10_000):
        assert auth.session(junk) is None


def test_logout_takes_effect_at_once(auth):
    one, two = auth.login("ann", PASSWORD), auth.login("ann", PASSWORD)
    assert auth.session(one.session_id) and auth.session(two.session_id)  # now cached
    auth.logout(one.session_id)
    assert auth.session(one.session_id) is None
    assert auth.session(two.session_id) is not None  # the other browser stays logged in


def test_new_password_removal_and_disabling_end_sessions(auth):
    op = auth.login("ann", PASSWORD)
    assert auth.session(op.session_id)
    auth.set_password("ann", "another password")
    assert auth.session(op.session_id) is None
    assert auth.login("ann", PASSWORD) is None
    op = auth.login("ann", "another password")
    auth.set_disabled("ann")
    assert auth.session(op.session_id) is None
    assert auth.login("ann", "another password") is None
    auth.set_disabled("ann", False)
    op = auth.login("ann", "another password")
    auth.remove_user("ann")
    assert auth.session(op.session_id) is None
    assert "ann" not in [u["name"] for u in auth.list_users()]
    with pytest.raises(ValueError):
        auth.remove_user("ann")


def test_other_process_changes_are_seen_within_the_cache_time(auth, clock, store_db):
    op = auth.login("ann", PASSWORD)
    token = auth.create_token("grafana", "agent")
    assert auth.session(op.session_id) and auth.token(token)
    other = OperatorAuth(store_db, clock=clock, hasher=fast_hasher())  # e.g. the CLI
    other.remove_user("ann")
    other.revoke_token("grafana")
    clock.advance(auth.policy.cache_s + 1)
    assert auth.session(op.session_id) is None
    assert auth.token(token) is None


def test_tokens_are_hashed_and_revocation_is_immediate(auth, store_db):
    token = auth.create_token("grafana", "agent")
    assert TOKEN_FORMAT.match(token)
    assert b"grafana" in everything_stored(store_db) and token.encode() not in everything_stored(store_db)
    assert auth.token(token) == Operator("grafana", "agent", "token", None)
    listed = auth.list_tokens()
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [("grafana", "agent", None)]
    assert token not in str(listed)
    auth.revoke_token("grafana")
    assert auth.token(token) is None  # at once, though the lookup was cached
    assert auth.list_tokens()[0]["revoked_at"]

    by_id = auth.create_token("ci", "admin")
    token_id = [t["id"] for t in auth.list_tokens() if t["name"] == "ci"][0]
    assert auth.token(by_id).role == "admin"
    assert auth.revoke_token(token_id) == 1
    assert auth.token(by_id) is None
    with pytest.raises(ValueError):
        auth.revoke_token("ci")  # none live any more
    for junk in (None, "", "va_", "va_" + "A" * 40, "Bearer x"):
        assert auth.token(junk) is None
    with pytest.raises(ValueError):
        auth.create_token("x", "boss")


def test_lookups_are_thread_safe(auth):
    ops = [auth.login("ann", PASSWORD) for _ in range(4)]
    token = auth.create_token("t", "agent")
    errors: list[BaseException] = []

    def work(op):
        try:
            for _ in range(200):
                assert auth.session(op.session_id) is not None
                assert auth.token(token) is not None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- many workers on one Postgres store --------------------------------------------------------


def worker_auth(url: str, clock, policy: AuthPolicy = AuthPolicy()) -> OperatorAuth:
    """A worker's OperatorAuth with a connection pool of its own, as another process would have."""
    return OperatorAuth(Database(*resolve(url)), policy=policy, clock=clock, hasher=fast_hasher())


def test_workers_share_sessions_and_one_lockout_count(postgres_url, clock):
    open_database(postgres_url)  # migrated
    one, two = worker_auth(postgres_url, clock), worker_auth(postgres_url, clock)
    one.add_user("ann", "agent", PASSWORD)
    with pytest.raises(ValueError, match="exists"):
        two.add_user("ann", "agent", PASSWORD)

    op = one.login("ann", PASSWORD)
    assert two.session(op.session_id) == Operator("ann", "agent", "session", op.csrf)  # logged in on every worker
    two.logout(op.session_id)
    assert two.session(op.session_id) is None
    clock.advance(one.policy.cache_s + 1)
    assert one.session(op.session_id) is None  # the other worker's cache lasts cache_s at most

    for i in range(4):  # wrong passwords on both workers count toward one lockout
        assert (one, two)[i % 2].login("ann", "wrong password") is None
    assert query(postgres_url, "SELECT failed_logins FROM operators WHERE name = 'ann'") == [(4,)]
    assert two.login("ann", "wrong password") is None  # the fifth
    for worker in (one, two):
        with pytest.raises(LockedOut):
            worker.login("ann", PASSWORD)


def test_concurrent_wrong_passwords_on_two_workers_are_all_counted(postgres_url, clock):
    """The count is one UPDATE ... RETURNING: no failure is lost to a read-then-write race, and exactly
    one of the racing attempts is the one that locks."""
    open_database(postgres_url)
    policy = AuthPolicy(max_failures=24)
    workers = [worker_auth(postgres_url, clock, policy) for _ in range(2)]
    workers[0].add_user("ann", "agent", PASSWORD)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def guess(worker: OperatorAuth, n: int) -> None:
        try:
            start.wait()
            for _ in range(n):
                assert worker.login("ann", "wrong password") is None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess, args=(workers[i % 2], 2)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert query(postgres_url, "SELECT failed_logins, locked_until FROM operators WHERE name = 'ann'") == [(16, 0.0)]
    for _ in range(8):
        assert workers[1].login("ann", "wrong password") is None
    [(failures, locked_until)] = query(postgres_url, "SELECT failed_logins, locked_until FROM operators "
                                                     "WHERE name = 'ann'")
    assert failures == 0 and locked_until > clock()
    with pytest.raises(LockedOut):
        workers[0].login("ann", PASSWORD)


# -- HTTP: login routes and `require` on a tiny app ---------------------------------------------


def make_app(auth: OperatorAuth, limiter: RateLimiter | None = None, client_key=None) -> FastAPI:
    app = FastAPI()
    app.include_router(login_routes(auth, limiter, **({"client_key": client_key} if client_key else {})))

    @app.get("/api/ops/calls")
    def calls(request: Request):
        return {"by": auth.require(request).name}

    @app.post("/api/ops/calls/{call_id}/takeover")
    def takeover(call_id: str, request: Request):
        return {"by": auth.require(request, "supervisor").name}

    @app.delete("/api/ops/tokens/{token_id}")
    def delete_token(token_id: str, request: Request):
        return {"by": auth.require(request, "admin").name}

    return app


def login(client: TestClient, name: str, password: str = PASSWORD):
    return client.post("/api/ops/login", json={"name": name, "password": password})


def test_login_sets_a_strict_httponly_cookie_and_me_answers(auth):
    client = TestClient(make_app(auth))
    assert client.get("/api/ops/me").status_code == 401
    r = login(client, "sam")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "sam" and body["role"] == "supervisor" and body["csrf"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("va_session=")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here
    assert client.get("/api/ops/me").json() == body
    assert r.headers["cache-control"] == "no-store"

    https = TestClient(make_app(auth), base_url="https://testserver")
    assert "secure" in login(https, "sam").headers["set-cookie"].lower()


def test_login_failures(auth):
    client = TestClient(make_app(auth))
    r = login(client, "sam", "wrong password")
    assert r.status_code == 401 and r.json()["detail"] and "set-cookie" not in r.headers
    assert client.post("/api/ops/login", data={"name": "sam", "password": PASSWORD}).status_code == 415
    not_json = client.post("/api/ops/login", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert client.post("/api/ops/login", json={"name": "sam"}).status_code == 400
    assert client.post("/api/ops/login", json=["sam", PASSWORD]).status_code == 400


def test_login_lockout_answers_429(auth):
    client = TestClient(make_app(auth, RateLimiter(100, 100)))
    for _ in range(5):
        assert login(client, "ann", "wrong password").status_code == 401
    r = login(client, "ann")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 60


def test_login_is_rate_limited_per_client(auth):
    client = TestClient(make_app(auth, RateLimiter(rate_per_s=1 / 60, burst=3)))
    codes = [login(client, "ann", "wrong password").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = login(client, "ann")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_csrf_needed_for_state_changes_by_cookie(auth):
    client = TestClient(make_app(auth))
    csrf = login(client, "sam").json()["csrf"]
    assert client.get("/api/ops/calls").json() == {"by": "sam"}  # reading needs no CSRF token
    url = "/api/ops/calls/c1/takeover"
    assert client.post(url).status_code == 403
    assert client.post(url, headers={"X-CSRF-Token": csrf + "x"}).status_code == 403
    assert client.post(url, headers={"X-CSRF-Token": ""}).status_code == 403
    assert client.post(url, headers={"X-CSRF-Token": csrf}).json() == {"by": "sam"}
    # right CSRF, too low a role
    assert client.delete("/api/ops/tokens/x", headers={"X-CSRF-Token": csrf}).status_code == 403


def test_roles_are_enforced(auth):
    client = TestClient(make_app(auth))
    csrf = login(client, "ann").json()["csrf"]
    assert client.get("/api/ops/calls").status_code == 200
    r = client.post("/api/ops/calls/c1/takeover", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and r.json()["detail"]


def test_bearer_tokens_need_no_csrf_and_revocation_is_immediate(auth):
    token = auth.create_token("ci", "admin")
    client = TestClient(make_app(auth))
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.delete("/api/ops/tokens/x", headers=bearer).json() == {"by": "ci"}
    assert client.get("/api/ops/me", headers=bearer).json() == {"name": "ci", "role": "admin", "csrf": None}
    auth.revoke_token("ci")
    r = client.get("/api/ops/calls", headers=bearer)
    assert r.status_code == 401 and r.json()["detail"]
    assert client.get("/api/ops/calls", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_a_bad_bearer_does_not_fall_back_to_the_cookie(auth):
    client = TestClient(make_app(auth))
    login(client, "sam")
    assert client.get("/api/ops/calls", headers={"Authorization": "Bearer va_nope"}).status_code == 401


def test_logout_needs_csrf_and_ends_the_session(auth):
    client = TestClient(make_app(auth))
    csrf = login(client, "sam").json()["csrf"]
    cookie = client.cookies.get("va_session")
    assert client.post("/api/ops/logout").status_code == 403
    r = client.post("/api/ops/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and "va_session=" in r.headers["set-cookie"]
    assert auth.session(cookie) is None
    client.cookies.set("va_session", cookie)  # a stolen copy of the cookie is worthless now
    assert client.get("/api/ops/calls").status_code == 401


# -- the CLI ------------------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, VOICEAGENT_VAR=str(tmp_path / "var"))
    return subprocess.run([str(VOICEAGENT), *args], input=stdin, capture_output=True, text=True, env=env,
                          timeout=60)


def test_cli_users_and_tokens(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    ok = run_cli(tmp_path, "users", "add", "alice", "--role", "admin", "--password-file", str(pw))
    assert ok.returncode == 0, ok.stderr
    db = tmp_path / "var" / "calls.db"
    auth = OperatorAuth(db)
    assert auth.login("alice", PASSWORD) is not None  # the newline at the end is not in the password

    for bad in (["users", "add", "alice", "--role", "admin", "--password-file", str(pw)],  # exists
                ["users", "add", "bob", "--role", "boss", "--password-file", str(pw)],
                ["users", "add", "bob", "--role", "agent", "--password-file", str(tmp_path / "missing")],
                ["users", "remove", "nobody"],
                ["tokens", "revoke", "nothing"]):
        r = run_cli(tmp_path, *bad)
        assert r.returncode == 2, bad
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("voiceagent: "), r.stderr
    assert run_cli(tmp_path, "users", "add", "bob", "--role", "agent", stdin="short\n").returncode == 2

    assert run_cli(tmp_path, "users", "add", "bob", "--role", "agent", stdin="bobs password\n").returncode == 0
    listed = run_cli(tmp_path, "users", "list").stdout
    assert "alice" in listed and "bob" in listed and PASSWORD not in listed

    created = run_cli(tmp_path, "tokens", "create", "grafana", "--role", "agent")
    assert created.returncode == 0
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and TOKEN_FORMAT.match(token)  # the token alone
    assert auth.token(token).name == "grafana"
    listed = run_cli(tmp_path, "tokens", "list")
    assert "grafana" in listed.stdout and token not in listed.stdout  # printed once only
    assert run_cli(tmp_path, "tokens", "revoke", "grafana").returncode == 0
    assert OperatorAuth(db).token(token) is None


def test_cli_passwd_and_unlock(tmp_path):
    auth_db = tmp_path / "var" / "calls.db"
    auth_db.parent.mkdir(parents=True)
    auth = OperatorAuth(auth_db, hasher=fast_hasher())
    auth.add_user("ann", "agent", PASSWORD)
    for _ in range(5):
        auth.login("ann", "wrong password")
    assert run_cli(tmp_path, "users", "unlock", "ann").returncode == 0
    assert auth.login("ann", PASSWORD) is not None
    assert run_cli(tmp_path, "users", "passwd", "ann", stdin="a new password\n").returncode == 0
    assert auth.login("ann", "a new password") is not None
    assert run_cli(tmp_path, "users", "passwd", "nobody", stdin="a new password\n").returncode == 2


def test_cli_on_a_postgres_store(tmp_path, postgres_url):
    """`users`/`tokens` act on the store [store] db names: the workers' shared Postgres too."""
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    config = tmp_path / "voiceagent.toml"
    config.write_text(f'[store]\ndb = "{postgres_url}"\n')
    ok = run_cli(tmp_path, "users", "add", "alice", "--role", "admin", "--password-file", str(pw), "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    assert OperatorAuth(postgres_url, hasher=fast_hasher()).login("alice", PASSWORD) is not None
    assert not (tmp_path / "var" / "calls.db").exists()  # nothing went to a SQLite file instead
    config.write_text('[store]\ndb = "postgresql://nobody:secret@127.0.0.1:1/none"\n')
    bad = run_cli(tmp_path, "users", "list", "--config", str(config))
    assert bad.returncode == 2 and bad.stderr.startswith("voiceagent: ") and "secret" not in bad.stderr, bad.stderr


# -- the store off the event loop, unknown credentials cached briefly -------------------------------


class CountedStore:
    """The auth's real Database, with each transaction counted, and optionally held at its start until the
    test lets it go (a slow store, or a pool with no free connection)."""

    def __init__(self, database: Database):
        self.database, self.real_connect = database, database.connect
        self.transactions = 0
        self.hold: threading.Event | None = None  # set: transactions wait for it
        self.held = threading.Event()  # a transaction is waiting
        database.connect = self.connect

    def connect(self):
        self.transactions += 1
        if self.hold is not None:
            self.held.set()
            self.hold.wait(10)
        return self.real_connect()


def ops_app(auth: OperatorAuth) -> FastAPI:
    """The real operator router (its auth only: the other state is not reached by these routes)."""
    from voiceagent.ops.api import router as ops_router

    app = FastAPI()
    app.state.auth = auth
    app.include_router(login_routes(auth))
    app.include_router(ops_router(app))
    return app


def test_an_unknown_token_or_cookie_sent_again_and_again_is_looked_up_once_per_miss_window(tmp_path, clock):
    auth = OperatorAuth(open_database(tmp_path / "calls.db"), clock=clock, hasher=fast_hasher())
    store = CountedStore(auth.db)
    client = TestClient(ops_app(auth))
    for _ in range(20):
        assert client.get("/api/ops/workers", headers={"Authorization": "Bearer va_" + "x" * 40}).status_code == 401
    assert store.transactions == 1
    client.cookies.set("va_session", "forged")
    for _ in range(20):
        assert client.get("/api/ops/workers").status_code == 401
    assert store.transactions == 2
    clock.advance(auth.policy.miss_cache_s + 1)  # then the store is asked again (the token may exist by now)
    assert client.get("/api/ops/workers", headers={"Authorization": "Bearer va_" + "x" * 40}).status_code == 401
    assert store.transactions == 3

    # many threads asking at once about the same unknown token: one query, the others wait for its answer
    store.hold = threading.Event()
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(auth.token("va_" + "y" * 40))) for _ in range(8)]
    for t in threads:
        t.start()
    assert store.held.wait(10)
    time.sleep(0.2)  # (the others reach their wait; were they to query too, the count below says so)
    store.hold.set()
    for t in threads:
        t.join(10)
    assert answers == [None] * 8 and store.transactions == 4

    # a real token is still found (and a revoked one refused at once)
    token = auth.create_token("grafana", "agent")
    assert client.get("/api/ops/workers", headers={"Authorization": f"Bearer {token}"}).json() == []
    auth.revoke_token("grafana")
    assert client.get("/api/ops/workers", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_slow_store_lookup_does_not_hold_up_other_requests(tmp_path, clock):
    import asyncio

    import httpx

    auth = OperatorAuth(open_database(tmp_path / "calls.db"), clock=clock, hasher=fast_hasher())
    token = auth.create_token("grafana", "agent")
    assert auth.token(token)  # known: answered from the cache
    store = CountedStore(auth.db)
    store.hold = threading.Event()  # every store query now waits until the known token's request is answered
    app = ops_app(auth)

    async def main() -> list:
        done: list = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            async def unknown():
                r = await c.get("/api/ops/workers", headers={"Authorization": "Bearer va_" + "z" * 40})
                done.append(("unknown", r.status_code))

            async def known():
                while not store.held.is_set():  # the unknown token's lookup has reached the store
                    await asyncio.sleep(0.01)
                r = await c.get("/api/ops/workers", headers={"Authorization": f"Bearer {token}"})
                done.append(("known", r.status_code))
                store.hold.set()

            # were the lookup on the event loop, it would hold the loop (10 s) and answer first
            await asyncio.wait_for(asyncio.gather(unknown(), known()), 30)
        return done

    assert asyncio.run(main()) == [("known", 200), ("unknown", 401)]


def test_no_store_io_while_the_cache_lock_is_held(tmp_path, clock):
    auth = OperatorAuth(open_database(tmp_path / "calls.db"), clock=clock, hasher=fast_hasher())
    auth.add_user("ann", "agent", PASSWORD)
    op = auth.login("ann", PASSWORD)
    token = auth.create_token("t", "agent")
    locked_during_io: list[str] = []
    real_connect = auth.db.connect

    def connect():
        if auth._lock._is_owned():  # RLock: held by this thread
            locked_during_io.append("held")
        return real_connect()

    auth.db.connect = connect
    clock.advance(auth.policy.touch_every_s + auth.policy.cache_s + 1)  # lookups and touches both due
    assert auth.session(op.session_id) and auth.token(token)
    assert auth.session("forged") is None and auth.token("va_" + "q" * 40) is None
    auth.revoke_token("t")
    auth.logout(op.session_id)
    assert auth.session(op.session_id) is None
    assert locked_during_io == []


def test_the_login_rate_limit_counts_each_client_behind_the_proxy(auth):
    from voiceagent.config import Config

    cfg = Config()
    from voiceagent.public import client_address

    cfg.security.trust_forwarded_for = True  # behind the operator's nginx: every request comes from it
    # as voiceagent/server.py wires it: the server's client address is whom an attempt counts against
    app = make_app(auth, RateLimiter(rate_per_s=1 / 60, burst=3),
                   client_key=lambda request: client_address(request, cfg.security))
    client = TestClient(app)

    def attempt(client_ip: str) -> int:
        return client.post("/api/ops/login", json={"name": "ann", "password": "wrong password"},
                           headers={"X-Forwarded-For": client_ip}).status_code

    assert [attempt("203.0.113.5") for _ in range(4)] == [401, 401, 401, 429]
    assert attempt("198.51.100.7") == 401  # another client: a bucket of its own
    # whatever the client writes first in the header is not whom it counts against (the proxy appends)
    assert attempt("1.2.3.4, 203.0.113.5") == 429
