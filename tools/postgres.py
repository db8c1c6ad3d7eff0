"""The metadata DB of every local Airflow: a PostgreSQL server in a folder of ours.

Debian's postgresql-15 binaries (`make` installs the package), a data folder given by
the caller, listening on 127.0.0.1 only (no Unix socket), password authentication.
PostgreSQL refuses to run as root: as root, the server runs as the `postgres` account
that Debian's package creates. The server is a process-group leader, so `make
demo-down` stops it with its backends; `stop()` stops exactly it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import psycopg2
from psycopg2 import sql

from tools.local_servers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
SERVICE_ACCOUNT = "postgres"  # created by Debian's package; used only when we are root
SUPERUSER = "airflow"
# A throwaway local server: durability is traded for speed on a loaded machine.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresServer:
    """One server, data in `root/data`; `new_database()` hands each stack a fresh DB."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.data = root / "data"
        self.log_path = root / "postgres.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._databases = 0

    @property
    def _password(self) -> str:
        return (self.root / ".password").read_text()

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one of its databases (psycopg2, as on Composer)."""
        return (
            f"postgresql+psycopg2://{SUPERUSER}:{self._password}@127.0.0.1:{self.port}/{database}"
        )

    def start(self, timeout: float = 60) -> Self:
        if not (BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({BIN}): run `make test` once")
        if not (self.data / "PG_VERSION").exists():
            self._init()
        options = [arg for name, value in SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [BIN / "postgres", "-D", self.data, "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, backends included
                user=_service_account(),
            )
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start; see {self.log_path}")
            time.sleep(0.1)
        return self

    def _init(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        password = self.root / ".password"
        password.write_text(secrets.token_hex(16))
        password.chmod(0o600)
        account = _service_account()
        pwfile = self.root / ".pwfile"  # initdb reads the password as the server's account
        shutil.copy(password, pwfile)
        if account:  # its data folder and the password for initdb belong to that account
            for path in (self.root, self.data, pwfile):
                shutil.chown(path, account)
        initdb = subprocess.run(
            [BIN / "initdb", "-D", self.data, "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, user=account,
        )  # fmt: skip
        pwfile.unlink()
        if initdb.returncode:
            raise RuntimeError(f"initdb failed in {self.data}:\n{initdb.stderr}")

    def _accepts_connections(self) -> bool:
        try:
            psycopg2.connect(self._dsn(), connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False

    def _dsn(self, database: str = "postgres") -> str:
        return libpq_dsn(self.url(database))

    def new_database(self, prefix: str = "airflow") -> str:
        """A new, empty database; its SQLAlchemy URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with _connection(self._dsn()) as conn:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (clients disconnected, then a checkpoint); killed after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def airflow_database_settings(url: str) -> dict[str, str]:
    """Airflow's settings for a metadata DB URL, as on Composer: psycopg2 for the sync
    engine, and the async engine on the URL Airflow derives from it (asyncpg).

    Not psycopg 3: SQLAlchemy's psycopg dialect casts string parameters (`::VARCHAR`),
    and Airflow's DAG dependencies query (`jsonb #> %s`) then fails with "operator does
    not exist: jsonb #> character varying" (the UI's dependencies view answers 500).
    """
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}


def libpq_dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL made here."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@contextmanager
def _connection(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection closed at the end (psycopg2's own `with` only ends the transaction)."""
    conn = psycopg2.connect(dsn)
    try:
        yield conn
    finally:
        conn.close()


def tables_containing(url: str, texts: Iterable[str]) -> list[str]:
    """The tables of the database with a row whose text form contains one of `texts`."""
    found = []
    with _connection(libpq_dsn(url)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            query = sql.SQL("SELECT 1 FROM {} AS t WHERE strpos(t::text, %s) > 0 LIMIT 1")
            query = query.format(sql.Identifier(table))
            if any(_has_row(cursor, query, text) for text in texts):
                found.append(table)
    return found


def _has_row(cursor: psycopg2.extensions.cursor, query: sql.Composed, text: str) -> bool:
    cursor.execute(query, (text,))
    return cursor.fetchone() is not None


def _service_account() -> str | None:
    return SERVICE_ACCOUNT if os.geteuid() == 0 else None


@contextmanager
def own_database(root: Path) -> Iterator[str]:
    """A server of its own in `root`, stopped at the end; the URL of a fresh database."""
    with PostgresServer(root) as server:
        yield server.new_database()
