"""The store's database: one SQLite file (the embedded default, one process) or a Postgres server shared by
many workers. Every store (calls, handoffs, history, campaigns, do-not-call, operators, alerts, recordings)
talks to it through `Database.connect()`, with the same SQL on both: `?` placeholders (translated for
psycopg), `INSERT ... ON CONFLICT`, `RETURNING`, and the few differences asked of the connection
(`conn.for_update()`, `conn.begin_write()`).

The schema is alembic's (voiceagent/migrations): `open_database` brings a database to the head revision
once per process, under a lock, so workers starting together against a new Postgres do not race.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from . import paths
from .errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest alembic revision: a database already there is opened without loading alembic at all.
SCHEMA_HEAD = "0002_cluster"
CLOCK_CHECK_S = 30.0  # how often Database.now() re-measures the Postgres server's clock
_MIGRATION_LOCK = 7_240_024  # pg_advisory_xact_lock key: one migrating worker at a time


class StoreError(ConfigError):
    """The store cannot be opened as configured (a URL it cannot reach, a scheme it does not speak)."""


class Row(tuple):
    """A result row: a tuple (unpacks, compares with tuples) that is also read by column name."""

    _index: dict[str, int] = {}

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._index else default


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_index": {name: i for i, name in enumerate(names)}})


def _sqlite_row(cursor: sqlite3.Cursor, values: tuple) -> Row:
    return _row_class(tuple(d[0] for d in cursor.description))(values)


def _pg_row_factory(cursor):
    if cursor.description is None:
        return tuple
    return _row_class(tuple(c.name for c in cursor.description))


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """`?` -> `%s` outside quoted strings, every literal `%` doubled: psycopg's placeholders."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def _pg_args(args: Sequence | None) -> tuple:
    # SQLite takes True for an INTEGER column; Postgres would see a boolean and refuse it.
    return tuple(int(a) if isinstance(a, bool) else a for a in (args or ()))


class Connection:
    """One transaction on either database: `execute`/`executemany` with `?`, rows as `Row`."""

    def __init__(self, raw, dialect: str):
        self.raw = raw
        self.dialect = dialect

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def execute(self, sql: str, args: Sequence | None = ()):
        if self.postgres:
            return self.raw.execute(to_pyformat(sql), _pg_args(args))
        return self.raw.execute(sql, tuple(args or ()))

    def executemany(self, sql: str, rows: Iterable[Sequence]):
        if self.postgres:
            cur = self.raw.cursor()
            cur.executemany(to_pyformat(sql), [_pg_args(r) for r in rows])
            return cur
        return self.raw.executemany(sql, rows)

    def begin_write(self) -> None:
        """Take the write lock now (SQLite: BEGIN IMMEDIATE, so that a read-then-write cannot interleave
        with another process's). On Postgres rows are locked by the statements that read them
        (`for_update()`), and the transaction is already open."""
        if not self.postgres and not self.raw.in_transaction:
            self.raw.execute("BEGIN IMMEDIATE")

    def for_update(self, skip_locked: bool = False) -> str:
        """The clause that locks the rows a SELECT reads until the transaction ends ('' on SQLite, whose
        BEGIN IMMEDIATE already holds the whole file)."""
        if not self.postgres:
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying: the database unreachable or busy for a moment (a Postgres restart or
    failover, a connection the server closed, SQLite locked by another writer)."""
    errors: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
    try:
        import psycopg
        from psycopg_pool import PoolTimeout

        errors += (psycopg.OperationalError, PoolTimeout)
    except ImportError:  # pragma: no cover
        pass
    return errors


def mask_url(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    if "password=" in parts.query:
        parts = parts._replace(query=re.sub(r"(password=)[^&]*", r"\1***", parts.query))
    return urlunsplit(parts)


def resolve(db: str | Path = "") -> tuple[str, str]:
    """([store] db) -> (dialect, target): a SQLite file path, or a libpq URL. Anything else is refused."""
    text = str(db).strip()
    if not text:
        return "sqlite", str(paths.var_dir() / "calls.db")
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        url = "postgresql://" + text.split("://", 1)[1]
        return "postgresql", url
    if text.startswith("sqlite:///"):
        path = text[len("sqlite:///"):]
        if not path:
            raise StoreError("[store] db: sqlite:/// needs a file path (sqlite:///var/calls.db)")
        return "sqlite", path
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise StoreError(f"[store] db: {mask_url(text)!r}: only a SQLite path (or sqlite:///path) and "
                         f"postgresql://user:password@host:port/database are supported")
    return "sqlite", text


class Database:
    """A store's database. Thread-safe: SQLite opens a connection per transaction (cheap, WAL); Postgres
    draws from a pool of `pool_size` connections."""

    def __init__(self, dialect: str, target: str, pool_size: int = 4):
        self.dialect = dialect
        self.target = target
        self._pool = None
        self._local = threading.local()
        self._clock = (-1e9, 0.0)  # (when checked, server - local seconds)
        if dialect == "sqlite":
            self.path = Path(target)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.Error) as e:
                raise StoreError(f"[store] db: cannot open the SQLite file {target}: {e}") from e
        else:
            self.path = None
            self._pool = _open_pool(target, pool_size)

    @property
    def url(self) -> str:
        """Where it is, password masked."""
        return f"sqlite:///{self.target}" if self.dialect == "sqlite" else mask_url(self.target)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if self._pool is not None:
            with self._pool.connection() as raw:  # commits on success, rolls back on error
                yield Connection(raw, "postgresql")
            return
        # One connection per thread, kept: opening one per transaction tripled a call's save time.
        # A transaction opened inside another on the same thread gets a connection of its own, so that
        # the inner one's commit never ends the outer one early.
        local = self._local
        raw = getattr(local, "conn", None)
        if raw is None or getattr(local, "busy", False):
            raw = self._sqlite_connection()
            if getattr(local, "busy", False):
                try:
                    with raw:
                        yield Connection(raw, "sqlite")
                finally:
                    raw.close()
                return
            local.conn = raw
        local.busy = True
        try:
            with raw:
                yield Connection(raw, "sqlite")
        finally:
            local.busy = False

    def _sqlite_connection(self) -> sqlite3.Connection:
        raw = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        raw.row_factory = _sqlite_row
        raw.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        return raw

    def write(self, sql: str, args: Sequence = ()) -> int:
        """One statement in a transaction of its own; the rows it changed."""
        with self.connect() as conn:
            return conn.execute(sql, args).rowcount

    def one(self, sql: str, args: Sequence = ()) -> Row | None:
        with self.connect() as conn:
            return conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: Sequence = ()) -> list[Row]:
        with self.connect() as conn:
            return conn.execute(sql, args).fetchall()

    def now(self) -> float:
        """Seconds since the epoch on the database's clock: leases and heartbeats compared by workers on
        different machines must not depend on each machine's own clock. Postgres: this machine's clock
        corrected by its offset from the server's, measured at most every CLOCK_CHECK_S (one query);
        SQLite (one machine): time.time()."""
        if self._pool is None:
            return time.time()
        checked_at, offset = self._clock
        if time.monotonic() - checked_at > CLOCK_CHECK_S:
            before = time.time()
            with self.connect() as conn:
                server = float(conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])
            offset = server - (before + time.time()) / 2
            self._clock = (time.monotonic(), offset)
        return time.time() + offset

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _open_pool(url: str, size: int):
    try:
        import psycopg
        from psycopg_pool import ConnectionPool
    except ImportError as e:  # pragma: no cover - pinned in requirements.lock
        raise StoreError(f"[store] db is a Postgres URL but psycopg is not installed: {e}") from e
    # check: a connection is tried before it is handed out, so that one left dead by a Postgres restart or
    # failover is replaced instead of failing a call's save; max_lifetime: connections move to a new
    # primary within the hour
    pool = ConnectionPool(url, min_size=1, max_size=max(1, int(size)), open=False, name="voiceagent-store",
                          kwargs={"row_factory": _pg_row_factory}, timeout=10.0,
                          check=ConnectionPool.check_connection, max_lifetime=3600.0)
    try:
        # Fails at once with libpq's reason (no such host, refused, bad password, no such database)
        # instead of retrying in the background as a pool does.
        psycopg.connect(url, connect_timeout=10).close()
        pool.open(wait=True, timeout=15.0)
    except Exception as e:
        pool.close()
        raise StoreError(f"[store] db: cannot open the Postgres store at {mask_url(url)}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
    return pool


_opened: dict[tuple[str, str], Database] = {}
_opened_lock = threading.Lock()


def open_database(db: str | Path = "", pool_size: int = 4) -> Database:
    """The database [store] db names, at the schema's head revision. One per process and target: every
    store of a worker shares its pool."""
    dialect, target = resolve(db)
    if dialect == "sqlite":
        target = str(Path(target).resolve()) if Path(target).parent.exists() else target
    key = (dialect, target)
    with _opened_lock:
        database = _opened.get(key)
        if database is None:
            database = Database(dialect, target, pool_size)
            migrate(database)
            _opened[key] = database
        elif dialect == "sqlite" and not Path(target).exists():
            # the file was removed under us (tests, an operator starting over): a new, empty store
            database = Database(dialect, target, pool_size)
            migrate(database)
            _opened[key] = database
        return database


def close_all() -> None:
    with _opened_lock:
        for database in _opened.values():
            database.close()
        _opened.clear()


def current_revision(database: Database) -> str | None:
    try:
        with database.connect() as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return row[0] if row else None
    except Exception:  # no alembic_version table yet (a new database, or one from before migrations)
        return None


def migrate(database: Database, revision: str = "head") -> None:
    """Bring the database to `revision` with alembic, holding a lock so that only one process migrates."""
    if revision == "head" and current_revision(database) == SCHEMA_HEAD:
        return
    import sqlalchemy
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database.dialect == "sqlite":
        engine = sqlalchemy.create_engine(f"sqlite:///{database.path}", poolclass=sqlalchemy.pool.NullPool)
        lock_path = Path(f"{database.path}.migrate.lock")
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
    else:
        url = "postgresql+psycopg://" + database.target.split("://", 1)[1]
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    engine.dispose()
