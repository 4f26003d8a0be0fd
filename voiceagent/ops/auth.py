"""Who may use the operator side: operators (name, role, argon2 password hash) who log in at the
console and get a session cookie, and API tokens for machines (`Authorization: Bearer va_...`).
Everything secret is stored hashed in the call store (SQLite, or the Postgres every worker shares: a
session made on one worker is good on all, and wrong passwords count toward one lockout wherever they
are tried); a cookie-authenticated request that changes state must echo its session's CSRF token in
`X-CSRF-Token`."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
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

from ..db import Database, Row
from ..store import store_database
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
    # how long a cookie or token the store does not know stays refused without asking the store again:
    # the same junk credential sent over and over costs one query per this many seconds, not one each
    miss_cache_s: float = 2.0


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
    """Operators, their sessions and the API tokens, in the call store (`db`: [store] db or a Database).
    Methods are sync and may query the store (a Postgres round trip, or a wait for a pool connection);
    `login`/`add_user`/`set_password` also hash with argon2. From async code: `require_async` /
    `authenticate_async` (the caches on the loop, the store in a thread), the rest in a thread.
    `_lock` guards only the in-memory caches: no store I/O is done while holding it."""

    def __init__(self, db: str | Path | Database = "", policy: AuthPolicy = AuthPolicy(),
                 clock: Callable[[], float] = time.time, hasher: PasswordHasher | None = None):
        self.db = store_database(db)
        self.policy = policy
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.RLock()  # the caches
        self._sessions: dict[str, _Cached] = {}  # by session_sha256
        self._tokens: dict[str, _Cached] = {}  # by token_sha256
        # lookups that found nothing: ("s"|"t", sha256) -> when read; bounded, oldest dropped first
        self._misses: OrderedDict[tuple[str, str], float] = OrderedDict()
        # one store query per credential at a time: the others asking for it meanwhile wait for its answer
        self._inflight: dict[tuple[str, str], threading.Event] = {}
        # Unknown names lock like real ones, so that the lock does not tell which names exist.
        self._ghost_failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._dummy_hash: str | None = None

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on Postgres)."""
        return self.db.path

    def _write(self, sql: str, args: tuple = ()) -> int:
        return self.db.write(sql, args)

    def _one(self, sql: str, args: tuple = ()) -> Row | None:
        return self.db.one(sql, args)

    def _all(self, sql: str, args: tuple = ()) -> list[Row]:
        return self.db.all(sql, args)

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
        # DO NOTHING: another worker (or the CLI) adding the same name meanwhile is told, not an IntegrityError
        if not self._write("INSERT INTO operators (name, role, password_hash, created_at) VALUES (?,?,?,?) "
                           "ON CONFLICT (name) DO NOTHING", (name, role, hashed, self.clock())):
            raise ValueError(f"operator {name!r} exists already")
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
        with self.db.connect() as conn:
            conn.execute("UPDATE operators SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE name = ?",
                         (hashed, name))
            conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
        self._forget_sessions_of(name)
        log.info("operator %s: password changed", name)

    def remove_user(self, name: str) -> None:
        with self.db.connect() as conn:
            if not conn.execute("DELETE FROM operators WHERE name = ?", (name,)).rowcount:
                raise ValueError(f"no operator {name!r}")
            conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
        self._forget_sessions_of(name)
        log.info("operator %s removed", name)

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        with self.db.connect() as conn:
            if not conn.execute("UPDATE operators SET disabled = ? WHERE name = ?", (int(disabled), name)).rowcount:
                raise ValueError(f"no operator {name!r}")
            if disabled:
                conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
        if disabled:
            self._forget_sessions_of(name)

    def unlock(self, name: str) -> None:
        if not self._write("UPDATE operators SET failed_logins = 0, locked_until = 0 WHERE name = ?", (name,)):
            raise ValueError(f"no operator {name!r}")

    def list_users(self) -> list[dict]:
        now = self.clock()
        return [{"name": r["name"], "role": r["role"], "created_at": _iso(r["created_at"]),
                 "disabled": bool(r["disabled"]), "failed_logins": r["failed_logins"],
                 "locked_until": _iso(r["locked_until"]) if r["locked_until"] > now else None}
                for r in self._all("SELECT name, role, created_at, disabled, failed_logins, locked_until "
                                   "FROM operators ORDER BY name")]

    def _forget_sessions_of(self, name: str) -> None:
        """Drop this worker's cached lookups of the operator's sessions (their rows are gone); other
        workers notice within `cache_s`."""
        with self._lock:
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
        row = self._one("SELECT role, password_hash, disabled, locked_until FROM operators WHERE name = ?", (name,))
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
            self._failed(name, now, remote)
            return None
        if self.hasher.check_needs_rehash(row["password_hash"]):  # parameters raised since it was set
            self._write("UPDATE operators SET password_hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.db.connect() as conn:
            conn.execute("UPDATE operators SET failed_logins = 0, locked_until = 0 WHERE name = ?", (name,))
            conn.execute("DELETE FROM operator_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                         (now, now - self.policy.session_idle_s))
            conn.execute("INSERT INTO operator_sessions (session_sha256, operator, csrf, created_at, last_seen_at, "
                         "expires_at) VALUES (?,?,?,?,?,?)",
                         (_sha256(session_id), name, csrf, now, now, now + self.policy.session_max_s))
        log.info("operator %s logged in from %s", name, remote or "?")
        return Operator(name, row["role"], "session", csrf, session_id=session_id)

    def _failed(self, name: str, now: float, remote: str) -> None:
        """Count a wrong password. The increment is one statement whose RETURNING says the new count, so
        workers taking wrong passwords for the same name at once neither lose a count nor both lock."""
        with self.db.connect() as conn:
            row = conn.execute("UPDATE operators SET failed_logins = failed_logins + 1 WHERE name = ? "
                               "RETURNING failed_logins", (name,)).fetchone()
            failures = row[0] if row else 0
            if failures >= self.policy.max_failures:
                conn.execute("UPDATE operators SET failed_logins = 0, locked_until = ? WHERE name = ?",
                             (now + self.policy.lockout_s, name))
        if failures >= self.policy.max_failures:
            log.warning("operator %s locked for %.0f s after %d wrong passwords (last from %s)",
                        name, self.policy.lockout_s, failures, remote or "?")
        else:
            log.warning("login failed for %r from %s", name, remote or "?")

    def session(self, cookie_value: str | None) -> Operator | None:
        """The operator a session cookie belongs to, if it is live; touches last_seen_at. May query the
        store: from async code use `authenticate_async`/`require_async`."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        key, now = _sha256(cookie_value), self.clock()
        known, cached = self._cached("s", key, now)
        if not known:
            cached = self._lookup("s", key, now)
        if cached is None:
            return None
        if now >= cached.expires_at or now - cached.last_seen_at >= self.policy.session_idle_s:
            self._drop_session(key)
            return None
        if self._claim_touch(cached, now):
            self._write("UPDATE operator_sessions SET last_seen_at = ? WHERE session_sha256 = ?", (now, key))
        return cached.operator

    def _cache_of(self, kind: str) -> dict[str, _Cached]:
        return self._sessions if kind == "s" else self._tokens

    def _cached(self, kind: str, key: str, now: float) -> tuple[bool, _Cached | None]:
        """What the caches know, without I/O: (True, entry) fresh, (True, None) a fresh miss, (False, None)
        the store must be asked."""
        with self._lock:
            cached = self._cache_of(kind).get(key)
            if cached is not None and now - cached.fetched_at <= self.policy.cache_s:
                return True, cached
            missed_at = self._misses.get((kind, key))
            if missed_at is not None and now - missed_at <= self.policy.miss_cache_s:
                return True, None
        return False, None

    def _lookup(self, kind: str, key: str, now: float) -> _Cached | None:
        """The store's answer for one credential, cached. The query runs outside `_lock` (a slow store
        holds up only the threads asking about this credential), and only one thread queries it at once."""
        while True:
            with self._lock:
                waiting = self._inflight.get((kind, key))
                if waiting is None:
                    mine = self._inflight[(kind, key)] = threading.Event()
                    break
            waiting.wait(30)
            known, cached = self._cached(kind, key, self.clock())
            if known:
                return cached
        try:
            cached = self._load_session(key, now) if kind == "s" else self._load_token(key, now)
            with self._lock:
                cache = self._cache_of(kind)
                if cached is None:
                    cache.pop(key, None)
                    self._misses[(kind, key)] = now
                    self._misses.move_to_end((kind, key))
                    while len(self._misses) > 10_000:
                        self._misses.popitem(last=False)
                else:
                    self._misses.pop((kind, key), None)
                    cache[key] = cached
                    if len(cache) > 10_000:  # forget the oldest lookups; the db still has them
                        for old in list(cache)[:1000]:
                            del cache[old]
            return cached
        finally:
            with self._lock:
                del self._inflight[(kind, key)]
            mine.set()

    def _claim_touch(self, cached: _Cached, now: float) -> bool:
        """Whether this request writes last_seen_at / last_used_at (claimed under the lock, so that threads
        seeing the same stale entry write it once; the write itself is the caller's, outside the lock)."""
        with self._lock:
            if now - cached.last_seen_at < self.policy.touch_every_s:
                return False
            cached.last_seen_at = now
            return True

    def _load_session(self, key: str, now: float) -> _Cached | None:
        row = self._one("SELECT s.operator, s.csrf, s.last_seen_at, s.expires_at, o.role, o.disabled "
                        "FROM operator_sessions s JOIN operators o ON o.name = s.operator "
                        "WHERE s.session_sha256 = ?", (key,))
        if row is None or row["disabled"]:
            return None
        return _Cached(Operator(row["operator"], row["role"], "session", row["csrf"]), now,
                       row["last_seen_at"], row["expires_at"])

    def _load_token(self, key: str, now: float) -> _Cached | None:
        row = self._one("SELECT name, role, last_used_at FROM api_tokens "
                        "WHERE token_sha256 = ? AND revoked_at IS NULL", (key,))
        if row is None:
            return None
        return _Cached(Operator(row["name"], row["role"], "token"), now, row["last_used_at"] or 0.0)

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
        now = self.clock()
        count = self._write("UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND id = ?",
                            (now, name_or_id))
        if not count:
            count = self._write("UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND name = ?",
                                (now, name_or_id))
        if not count:
            raise ValueError(f"no live token with id or name {name_or_id!r}")
        with self._lock:
            self._tokens.clear()
        log.info("API token %s revoked (%d)", name_or_id, count)
        return count

    def list_tokens(self) -> list[dict]:
        return [{"id": r["id"], "name": r["name"], "role": r["role"], "created_at": _iso(r["created_at"]),
                 "last_used_at": _iso(r["last_used_at"]), "revoked_at": _iso(r["revoked_at"])}
                for r in self._all("SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens "
                                   "ORDER BY created_at, name")]

    def token(self, bearer: str | None) -> Operator | None:
        """The operator (machine) a bearer token belongs to, if it is live. May query the store: from
        async code use `authenticate_async`/`require_async`."""
        if not bearer or not bearer.startswith(TOKEN_PREFIX) or len(bearer) > 128:
            return None
        key, now = _sha256(bearer), self.clock()
        known, cached = self._cached("t", key, now)
        if not known:
            cached = self._lookup("t", key, now)
        if cached is None:
            return None
        if self._claim_touch(cached, now):
            self._write("UPDATE api_tokens SET last_used_at = ? WHERE token_sha256 = ?", (now, key))
        return cached.operator

    # -- requests --------------------------------------------------------------------------------

    def _credential(self, request: Request) -> tuple[str, str | None]:
        """("t", bearer) if the request has an Authorization header (then the cookie is not looked at),
        ("", None) for another scheme, else ("s", its session cookie)."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            return ("t", value.strip()) if scheme.lower() == "bearer" else ("", None)
        return "s", request.cookies.get(SESSION_COOKIE)

    def authenticate(self, request: Request) -> Operator | None:
        """The operator behind a request: its bearer token if it has an Authorization header
        (then the cookie is not looked at), else its session cookie. May query the store (sync)."""
        kind, value = self._credential(request)
        if kind == "t":
            return self.token(value)
        return self.session(value) if kind == "s" else None

    def _answer_from_cache(self, request: Request) -> tuple[bool, Operator | None]:
        """(True, operator or None) when the caches alone answer and nothing is to be written; (False,
        None) when the store must be asked (or a touch or an expired session written)."""
        kind, value = self._credential(request)
        if not kind or not value or len(value) > 128 or (kind == "t" and not value.startswith(TOKEN_PREFIX)):
            return True, None
        now = self.clock()
        known, cached = self._cached(kind, _sha256(value), now)
        if not known:
            return False, None
        if cached is None:
            return True, None
        if (now >= cached.expires_at or now - cached.last_seen_at >= self.policy.session_idle_s
                or now - cached.last_seen_at >= self.policy.touch_every_s):
            return False, None
        return True, cached.operator

    async def authenticate_async(self, request: Request) -> Operator | None:
        """`authenticate` for the event loop: answered from the caches there, else in a worker thread,
        so that a slow store (or a pool with no free connection) never stalls the loop and its calls."""
        known, operator = self._answer_from_cache(request)
        if known:
            return operator
        return await run_in_threadpool(self.authenticate, request)

    def require(self, request: Request, role: str = "agent", csrf: bool | None = None) -> Operator:
        """The operator, or HTTPException 401 (none) / 403 (role too low, CSRF token missing or
        wrong). `csrf`: None checks state-changing methods only; True/False force it on/off.
        Tokens never need CSRF (a browser does not send them on its own). May query the store: from
        async code use `require_async`."""
        return self._check(request, self.authenticate(request), role, csrf)

    async def require_async(self, request: Request, role: str = "agent", csrf: bool | None = None) -> Operator:
        """`require` for the event loop (the store is asked in a worker thread when the caches cannot answer)."""
        return self._check(request, await self.authenticate_async(request), role, csrf)

    def _check(self, request: Request, operator: Operator | None, role: str, csrf: bool | None) -> Operator:
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


def _client_key(request: Request) -> str:
    """Whom a login attempt counts against, when the server gives no `client_key`: the socket's peer."""
    return request.client.host if request.client else "?"


def login_routes(auth: OperatorAuth, limiter: RateLimiter | None = None,
                 client_key: Callable[[Request], str] = _client_key) -> APIRouter:
    """`POST /api/ops/login`, `POST /api/ops/logout`, `GET /api/ops/me`. `client_key(request)`: whom the
    login rate limit counts an attempt against: the server passes its client address (public.client_address:
    behind the operator's own proxy, the client that proxy saw, not the proxy's address for everyone)."""
    limiter = limiter or RateLimiter(rate_per_s=5 / 60, burst=10)
    router = APIRouter()
    no_store = {"Cache-Control": "no-store"}

    def answer(status: int, detail: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers={**no_store, **headers})

    @router.post("/api/ops/login")
    async def login(request: Request):
        remote = client_key(request)
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
        operator = await auth.require_async(request)
        response = JSONResponse({"status": "logged out"}, headers=no_store)
        if operator.via == "session":
            await run_in_threadpool(auth.logout, request.cookies.get(SESSION_COOKIE))
            response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                                   secure=request.url.scheme == "https")
        return response

    @router.get("/api/ops/me")
    async def me(request: Request):
        operator = await auth.require_async(request)
        return JSONResponse({"name": operator.name, "role": operator.role, "csrf": operator.csrf}, headers=no_store)

    return router
