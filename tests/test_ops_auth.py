"""Operators, sessions, API tokens, CSRF and lockout (voiceagent/ops/auth.py) and the `users` /
`tokens` commands. Fast: no models; argon2 with small parameters except in the CLI."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

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


@pytest.fixture
def auth(tmp_path, clock) -> OperatorAuth:
    a = OperatorAuth(tmp_path / "calls.db", clock=clock, hasher=fast_hasher())
    a.add_user("alice", "admin", PASSWORD)
    a.add_user("sam", "supervisor", PASSWORD)
    a.add_user("ann", "agent", PASSWORD)
    return a


def test_roles_are_ordered():
    assert ROLES == ("agent", "supervisor", "admin")
    assert role_at_least("admin", "agent") and role_at_least("supervisor", "supervisor")
    assert not role_at_least("agent", "supervisor") and not role_at_least("boss", "agent")


def test_password_is_stored_as_an_argon2_hash(auth, tmp_path):
    with sqlite3.connect(tmp_path / "calls.db") as conn:
        stored = conn.execute("SELECT password_hash FROM operators WHERE name = 'alice'").fetchone()[0]
    assert stored != PASSWORD and PASSWORD not in stored
    assert stored.startswith("$argon2id$")
    assert PASSWORD.encode() not in (tmp_path / "calls.db").read_bytes()
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


def test_lockout_limits_are_configurable(tmp_path, clock):
    a = OperatorAuth(tmp_path / "x.db", policy=AuthPolicy(max_failures=2, lockout_s=60), clock=clock,
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


def test_session_touch_is_at_most_once_a_minute(auth, clock, tmp_path):
    op = auth.login("ann", PASSWORD)
    login_at = clock()

    def last_seen() -> float:
        with sqlite3.connect(tmp_path / "calls.db") as conn:
            return conn.execute("SELECT last_seen_at FROM operator_sessions").fetchone()[0]

    clock.advance(30)
    auth.session(op.session_id)
    assert last_seen() == login_at
    clock.advance(31)
    auth.session(op.session_id)
    assert last_seen() == login_at + 61


def test_session_cookie_is_stored_hashed_and_junk_is_refused(auth, tmp_path):
    op = auth.login("ann", PASSWORD)
    assert op.session_id.encode() not in (tmp_path / "calls.db").read_bytes()
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


def test_other_process_changes_are_seen_within_the_cache_time(auth, clock, tmp_path):
    op = auth.login("ann", PASSWORD)
    token = auth.create_token("grafana", "agent")
    assert auth.session(op.session_id) and auth.token(token)
    other = OperatorAuth(tmp_path / "calls.db", clock=clock, hasher=fast_hasher())  # e.g. the CLI
    other.remove_user("ann")
    other.revoke_token("grafana")
    clock.advance(auth.policy.cache_s + 1)
    assert auth.session(op.session_id) is None
    assert auth.token(token) is None


def test_tokens_are_hashed_and_revocation_is_immediate(auth, tmp_path):
    token = auth.create_token("grafana", "agent")
    assert TOKEN_FORMAT.match(token)
    assert token.encode() not in (tmp_path / "calls.db").read_bytes()
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


# -- HTTP: login routes and `require` on a tiny app ---------------------------------------------


def make_app(auth: OperatorAuth, limiter: RateLimiter | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(login_routes(auth, limiter))

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
