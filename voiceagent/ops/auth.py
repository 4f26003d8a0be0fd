"""Who may use the operator side: operators (name, role, argon2 password hash) who log in at the
console and get a session cookie, and API tokens for machines (`Authorization: Bearer va_...`).
Everything secret is stored hashed in the same SQLite file as the calls; a cookie-authenticated
request that changes state must echo its session's CSRF token in `X-CSRF-Token`."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..store import connect, db_file
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

ROLES = ("agent", "supervisor", "admin")  # each may do what the ones before it may
SESSION_COOKIE = "va_session"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "va_"
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 1024  # argon2 takes any length; this only bounds what a request can make us hash
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NAME = re.compile(r"^[\w.@-]{1,64}$")  # \w is Unicode: 中文 names are fine

SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS operator_sessions (
    session_sha256 TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_sessions_operator ON operator_sessions(operator);
"""


def role_at_least(role: str, wanted: str) -> bool:
    """Whether `role` may do what `wanted` may (unknown roles may do nothing)."""
    if role not in ROLES or wanted not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(wanted)


@dataclass(frozen=True)
class Operator:
    """Whoever a request comes from: a person by session, or a machine by token (then no CSRF)."""

    name: str
    role: str
    via: str  # "session" | "token"
    csrf: str | None = None
    # Only on what `login` returns: the cookie value to set, sent this once (the db keeps its hash).
    session_id: str | None = field(default=None, repr=False, compare=False)


class LockedOut(Exception):
    """Too many wrong passwords in a row: the route answers 429 with Retry-After."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"locked out; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class AuthPolicy:
    max_failures: int = 5  # wrong passwords in a row before the lock
    lockout_s: float = 15 * 60
    session_idle_s: float = 8 * 3600
    session_max_s: float = 24 * 3600  # from login, however active
    touch_every_s: float = 60.0  # last_seen_at / last_used_at written at most this often
    cache_s: float = 5.0  # how stale a lookup may be for changes made by another process (the CLI)


@dataclass
class _Cached:
    operator: Operator
    fetched_at: float  # when read from the db
    last_seen_at: float
    expires_at: float = math.inf  # sessions only


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class OperatorAuth:
    """Operators, their sessions and the API tokens, over SQLite. Methods are sync and fast except
    `login`/`add_user`/`set_password` (an argon2 hash: run them in a thread from async code)."""

    def __init__(self, db_path: str | Path = "", policy: AuthPolicy = AuthPolicy(),
                 clock: Callable[[], float] = time.time, hasher: PasswordHasher | None = None):
        self.path = db_file(db_path)
        self.policy = policy
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.RLock()  # writes and the caches
        self._local = threading.local()  # a connection per thread (sqlite3 objects stay in theirs)
        self._conn().executescript(SCHEMA)
        self._sessions: dict[str, _Cached] = {}  # by session_sha256
        self._tokens: dict[str, _Cached] = {}  # by token_sha256
        # Unknown names lock like real ones, so that the lock does not tell which names exist.
        self._ghost_failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._dummy_hash: str | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            conn.row_factory = sqlite3.Row
        return conn

    def _write(self, sql: str, args: tuple = ()) -> int:
        conn = self._conn()
        with self._lock, conn:
            return conn.execute(sql, args).rowcount

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self._conn().execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    # -- operators -------------------------------------------------------------------------------

    def _hash_password(self, password: str) -> str:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LEN:
            raise ValueError(f"password too short: at least {MIN_PASSWORD_LEN} characters")
        if len(password) > MAX_PASSWORD_LEN:
            raise ValueError(f"password too long: at most {MAX_PASSWORD_LEN} characters")
        return self.hasher.hash(password)

    def add_user(self, name: str, role: str, password: str) -> None:
        if not _NAME.match(name or ""):
            raise ValueError(f"bad operator name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if self._one("SELECT 1 FROM operators WHERE name = ?", (name,)):
            raise ValueError(f"operator {name!r} exists already")
        hashed = self._hash_password(password)
        try:
            self._write("INSERT INTO operators (name, role, password_hash, created_at) VALUES (?,?,?,?)",
                        (name, role, hashed, self.clock()))
        except sqlite3.IntegrityError:
            raise ValueError(f"operator {name!r} exists already") from None
        log.info("operator %s added (%s)", name, role)

    def has_user(self, name: str) -> bool:
        return self._one("SELECT 1 FROM operators WHERE name = ?", (name,)) is not None

    def _require_user(self, name: str) -> None:
        if not self.has_user(name):
            raise ValueError(f"no operator {name!r}")

    def set_password(self, name: str, password: str) -> None:
        """A new password; the operator's sessions end (whoever knew the old one is logged out)."""
        self._require_user(name)
        hashed = self._hash_password(password)
        with self._lock:
            self._write("UPDATE operators SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE name = ?",
                        (hashed, name))
            self._end_sessions_of(name)
        log.info("operator %s: password changed", name)

    def remove_user(self, name: str) -> None:
        with self._lock:
            if not self._write("DELETE FROM operators WHERE name = ?", (name,)):
                raise ValueError(f"no operator {name!r}")
            self._end_sessions_of(name)
        log.info("operator %s removed", name)

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        with self._lock:
            if not self._write("UPDATE operators SET disabled = ? WHERE name = ?", (int(disabled), name)):
                raise ValueError(f"no operator {name!r}")
            if disabled:
                self._end_sessions_of(name)

    def unlock(self, name: str) -> None:
        with self._lock:
            if not self._write("UPDATE operators SET failed_logins = 0, locked_until = 0 WHERE name = ?", (name,)):
                raise ValueError(f"no operator {name!r}")

    def list_users(self) -> list[dict]:
        now = self.clock()
        return [{"name": r["name"], "role": r["role"], "created_at": _iso(r["created_at"]),
                 "disabled": bool(r["disabled"]), "failed_logins": r["failed_logins"],
                 "locked_until": _iso(r["locked_until"]) if r["locked_until"] > now else None}
                for r in self._all("SELECT * FROM operators ORDER BY name")]

    def _end_sessions_of(self, name: str) -> None:
        with self._lock:
            self._write("DELETE FROM operator_sessions WHERE operator = ?", (name,))
            for key in [k for k, c in self._sessions.items() if c.operator.name == name]:
                del self._sessions[key]

    # -- logging in ------------------------------------------------------------------------------

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _burn_time(self, password: str) -> None:
        """As long as a real check takes, so that unknown names answer no faster than known ones."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self._verify(self._dummy_hash, password[:MAX_PASSWORD_LEN])

    def _ghost_locked_until(self, name: str) -> float:
        with self._lock:
            return self._ghost_failures.get(name, (0, 0.0))[1]

    def _ghost_failed(self, name: str, now: float) -> None:
        with self._lock:
            failures, _ = self._ghost_failures.pop(name, (0, 0.0))
            failures += 1
            locked = 0.0
            if failures >= self.policy.max_failures:
                failures, locked = 0, now + self.policy.lockout_s
            self._ghost_failures[name] = (failures, locked)
            while len(self._ghost_failures) > 10_000:
                self._ghost_failures.popitem(last=False)

    def login(self, name: str, password: str, remote: str = "") -> Operator | None:
        """A new session for the right password; None for a wrong one or an unknown/disabled name.
        Raises LockedOut while the account is locked (even with the right password)."""
        now = self.clock()
        row = self._one("SELECT * FROM operators WHERE name = ?", (name,))
        locked_until = row["locked_until"] if row else self._ghost_locked_until(name)
        if locked_until > now:
            log.warning("login refused for %r from %s: locked", name, remote or "?")
            raise LockedOut(max(1, math.ceil(locked_until - now)))
        if row is None or row["disabled"] or len(password) > MAX_PASSWORD_LEN:
            self._burn_time(password)
            if row is None:
                self._ghost_failed(name, now)
            log.warning("login failed for %r from %s", name, remote or "?")
            return None
        if not self._verify(row["password_hash"], password):
            with self._lock:
                failures = self._one("SELECT failed_logins FROM operators WHERE name = ?", (name,))
                failures = (failures["failed_logins"] if failures else 0) + 1
                if failures >= self.policy.max_failures:
                    self._write("UPDATE operators SET failed_logins = 0, locked_until = ? WHERE name = ?",
                                (now + self.policy.lockout_s, name))
                    log.warning("operator %s locked for %.0f s after %d wrong passwords (last from %s)",
                                name, self.policy.lockout_s, failures, remote or "?")
                else:
                    self._write("UPDATE operators SET failed_logins = ? WHERE name = ?", (failures, name))
                    log.warning("login failed for %r from %s", name, remote or "?")
            return None
        if self.hasher.check_needs_rehash(row["password_hash"]):  # parameters raised since it was set
            self._write("UPDATE operators SET password_hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._write("UPDATE operators SET failed_logins = 0, locked_until = 0 WHERE name = ?", (name,))
            self._write("DELETE FROM operator_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                        (now, now - self.policy.session_idle_s))
            self._write("INSERT INTO operator_sessions VALUES (?,?,?,?,?,?)",
                        (_sha256(session_id), name, csrf, now, now, now + self.policy.session_max_s))
        log.info("operator %s logged in from %s", name, remote or "?")
        return Operator(name, row["role"], "session", csrf, session_id=session_id)

    def session(self, cookie_value: str | None) -> Operator | None:
        """The operator a session cookie belongs to, if it is live; touches last_seen_at."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        key, now = _sha256(cookie_value), self.clock()
        with self._lock:
            cached = self._sessions.get(key)
            if cached is None or now - cached.fetched_at > self.policy.cache_s:
                cached = self._load_session(key, now)
            if cached is None:
                return None
            if now >= cached.expires_at or now - cached.last_seen_at >= self.policy.session_idle_s:
                self._drop_session(key)
                return None
            if now - cached.last_seen_at >= self.policy.touch_every_s:
                self._write("UPDATE operator_sessions SET last_seen_at = ? WHERE session_sha256 = ?", (now, key))
                cached.last_seen_at = now
            return cached.operator

    def _load_session(self, key: str, now: float) -> _Cached | None:
        row = self._one("SELECT s.operator, s.csrf, s.last_seen_at, s.expires_at, o.role, o.disabled "
                        "FROM operator_sessions s JOIN operators o ON o.name = s.operator "
                        "WHERE s.session_sha256 = ?", (key,))
        if row is None or row["disabled"]:
            self._sessions.pop(key, None)
            return None
        cached = _Cached(Operator(row["operator"], row["role"], "session", row["csrf"]), now,
                         row["last_seen_at"], row["expires_at"])
        self._sessions[key] = cached
        if len(self._sessions) > 10_000:  # forget the oldest lookups; the db still has them
            for old in list(self._sessions)[:1000]:
                del self._sessions[old]
        return cached

    def _drop_session(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)
            self._write("DELETE FROM operator_sessions WHERE session_sha256 = ?", (key,))

    def logout(self, cookie_value: str | None) -> None:
        if cookie_value:
            self._drop_session(_sha256(cookie_value))

    # -- API tokens ------------------------------------------------------------------------------

    def create_token(self, name: str, role: str) -> str:
        """A new token, returned this once: only its SHA-256 is kept."""
        if not _NAME.match(name or ""):
            raise ValueError(f"bad token name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(30)  # 40 characters after the prefix
        self._write("INSERT INTO api_tokens (id, name, role, token_sha256, created_at) VALUES (?,?,?,?,?)",
                    (secrets.token_hex(4), name, role, _sha256(token), self.clock()))
        log.info("API token %s created (%s)", name, role)
        return token

    def revoke_token(self, name_or_id: str) -> int:
        """Revokes the token with this id, or every live token with this name; how many."""
        with self._lock:
            now = self.clock()
            count = self._write("UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND id = ?",
                                (now, name_or_id))
            if not count:
                count = self._write("UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND name = ?",
                                    (now, name_or_id))
            if not count:
                raise ValueError(f"no live token with id or name {name_or_id!r}")
            self._tokens.clear()
        log.info("API token %s revoked (%d)", name_or_id, count)
        return count

    def list_tokens(self) -> list[dict]:
        return [{"id": r["id"], "name": r["name"], "role": r["role"], "created_at": _iso(r["created_at"]),
                 "last_used_at": _iso(r["last_used_at"]), "revoked_at": _iso(r["revoked_at"])}
                for r in self._all("SELECT * FROM api_tokens ORDER BY created_at, name")]

    def token(self, bearer: str | None) -> Operator | None:
        if not bearer or not bearer.startswith(TOKEN_PREFIX) or len(bearer) > 128:
            return None
        key, now = _sha256(bearer), self.clock()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is None or now - cached.fetched_at > self.policy.cache_s:
                row = self._one("SELECT name, role, last_used_at FROM api_tokens "
                                "WHERE token_sha256 = ? AND revoked_at IS NULL", (key,))
                if row is None:
                    self._tokens.pop(key, None)
                    return None
                cached = _Cached(Operator(row["name"], row["role"], "token"), now, row["last_used_at"] or 0.0)
                self._tokens[key] = cached
            if now - cached.last_seen_at >= self.policy.touch_every_s:
                self._write("UPDATE api_tokens SET last_used_at = ? WHERE token_sha256 = ?", (now, key))
                cached.last_seen_at = now
            return cached.operator

    # -- requests --------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Operator | None:
        """The operator behind a request: its bearer token if it has an Authorization header
        (then the cookie is not looked at), else its session cookie."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            return self.token(value.strip()) if scheme.lower() == "bearer" else None
        return self.session(request.cookies.get(SESSION_COOKIE))

    def require(self, request: Request, role: str = "agent", csrf: bool | None = None) -> Operator:
        """The operator, or HTTPException 401 (none) / 403 (role too low, CSRF token missing or
        wrong). `csrf`: None checks state-changing methods only; True/False force it on/off.
        Tokens never need CSRF (a browser does not send them on its own)."""
        operator = self.authenticate(request)
        if operator is None:
            raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
        if not role_at_least(operator.role, role):
            raise HTTPException(403, f"needs role {role}")
        check = request.method.upper() in STATE_CHANGING if csrf is None else csrf
        if check and operator.via == "session":
            sent = request.headers.get(CSRF_HEADER, "")
            if not (sent and operator.csrf and hmac.compare_digest(sent.encode(), operator.csrf.encode())):
                raise HTTPException(403, "missing or wrong X-CSRF-Token")
        try:
            request.state.operator = operator  # for logs and audit further down
        except AttributeError:
            pass
        return operator


def login_routes(auth: OperatorAuth, limiter: RateLimiter | None = None) -> APIRouter:
    """`POST /api/ops/login`, `POST /api/ops/logout`, `GET /api/ops/me`."""
    limiter = limiter or RateLimiter(rate_per_s=5 / 60, burst=10)
    router = APIRouter()
    no_store = {"Cache-Control": "no-store"}

    def answer(status: int, detail: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers={**no_store, **headers})

    @router.post("/api/ops/login")
    async def login(request: Request):
        remote = request.client.host if request.client else "?"
        if not limiter.allow(remote):
            return answer(429, "too many login attempts", **{"Retry-After": str(limiter.retry_after_s(remote))})
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return answer(415, "send JSON: {\"name\", \"password\"}")
        try:
            body = await request.json()
        except ValueError:
            return answer(400, "body is not JSON")
        name, password = (body.get("name"), body.get("password")) if isinstance(body, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            return answer(400, "name and password are required")
        try:
            operator = await run_in_threadpool(auth.login, name, password, remote)
        except LockedOut as exc:
            return answer(429, "too many wrong passwords: account locked for a while",
                          **{"Retry-After": str(exc.retry_after_s)})
        if operator is None:
            return answer(401, "wrong name or password")
        response = JSONResponse({"name": operator.name, "role": operator.role, "csrf": operator.csrf},
                                headers=no_store)
        response.set_cookie(SESSION_COOKIE, operator.session_id, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @router.post("/api/ops/logout")
    async def logout(request: Request):
        operator = auth.require(request)
        response = JSONResponse({"status": "logged out"}, headers=no_store)
        if operator.via == "session":
            auth.logout(request.cookies.get(SESSION_COOKIE))
            response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                                   secure=request.url.scheme == "https")
        return response

    @router.get("/api/ops/me")
    async def me(request: Request):
        operator = auth.require(request)
        return JSONResponse({"name": operator.name, "role": operator.role, "csrf": operator.csrf}, headers=no_store)

    return router
