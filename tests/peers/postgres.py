"""A real Postgres server for tests: Debian's postgresql, started in a temporary directory on a free
loopback port, one per test session; each test gets a database of its own.

    with PostgresServer() as pg:
        url = pg.create_database()      # postgresql://postgres@127.0.0.1:PORT/t_1a2b...
        ...

Nothing is read from or written to /etc or /var/lib/postgresql. Postgres refuses to run as root: as root,
the data directory is given to the `postgres` user that Debian's package makes, and the server runs as it
(runuser). fsync is off: the tests care what is stored, not that it survives a power cut.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from .ports import HOST, free_port


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    return Path(which).resolve().parent if which else None


def available() -> bool:
    bindir = _bindir()
    return bindir is not None and (bindir / "initdb").exists()


class PostgresError(RuntimeError):
    pass


class PostgresServer:
    def __init__(self, port: int | None = None):
        self.bindir = _bindir()
        if self.bindir is None:
            raise PostgresError("postgres is not installed (Debian package postgresql)")
        self.port = port or free_port("tcp")
        self.dir = Path(tempfile.mkdtemp(prefix="va-postgres-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen | None = None
        self._as_root = os.geteuid() == 0

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)

    def start(self) -> "PostgresServer":
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o700)
        init = subprocess.run(self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise PostgresError(f"initdb failed: {init.stderr[-2000:]}")
        log = open(self.dir / "postgres.log", "w")
        self.proc = subprocess.Popen(
            self._cmd(str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
                      "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                      "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=64MB"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", HOST, "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise PostgresError("postgres did not become ready in 30 s")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown would wait for clients; SIGTERM is postgres' fast-ish mode
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
