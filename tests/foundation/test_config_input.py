"""Configuration a person gets wrong: one line naming the setting, no secret echoed, no hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from orchestrator.cli import database_problem
from orchestrator.config import load_settings
from orchestrator.db import make_engine
from orchestrator.errors import ConfigError

HANDOFF = str(Path(sys.executable).parent / "handoff")


def _handoff(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    return subprocess.run([HANDOFF, *args], capture_output=True, text=True, timeout=timeout,
                          env={**clean, **env}, cwd=cwd)


@pytest.mark.parametrize("raw", [
    "postgresql:scott:tiger-secret@db/handoff",
    "postgresql:scott:tiger-secret",
    "scott:tiger-secret@db",
    "postgresql//scott:tiger-secret@db/x",
])
def test_a_url_without_a_scheme_separator_never_echoes_its_password(raw):
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_DATABASE_URL": raw})
    assert str(error.value).startswith("HANDOFF_DATABASE_URL: ")
    assert "tiger-secret" not in str(error.value)


@pytest.mark.parametrize("raw, fragment", [
    ("postgresql://scott:tiger-secret@db.internal:fivefourthreetwo/handoff", "port that is not a number"),
    ("postgresql://scott:tiger-secret@[::1/handoff", "port that is not a number"),
    ("postgresql://scott:tiger-secret@[fe80::zz]/handoff", "not a valid IPv6 address"),
    ("postgresql://scott:tiger-secret@::1/handoff", "IPv6 host in brackets"),
])
def test_a_bad_port_or_ipv6_host_is_a_config_error_naming_the_setting(raw, fragment, tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_DATABASE_URL": raw})
    assert fragment in str(error.value)
    assert "tiger-secret" not in str(error.value)
    result = _handoff("status", env={"HANDOFF_DATABASE_URL": raw}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"handoff: error: {error.value}"]


def test_a_bracketed_ipv6_host_with_a_port_is_accepted():
    url = load_settings({"HANDOFF_DATABASE_URL": "postgresql://u@[::1]:5432/handoff"}).database_url
    assert url.host == "::1" and url.port == 5432


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "handoff.toml"
    path.write_bytes(b'[exceptions]\ndefault_owner = "lead@acme.example"\n# caf\xe9\n')
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert "line 3: the file is not UTF-8 text" in str(error.value)
    result = _handoff("status", env={"HANDOFF_CONFIG": str(path),
                                     "HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"}, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "not UTF-8" in result.stderr


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_in_the_settings(raw):
    with pytest.raises(ConfigError, match="in-memory database"):
        load_settings({"HANDOFF_DATABASE_URL": raw})


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "9" * 40])
def test_a_bad_connect_timeout_names_the_setting(raw):
    with pytest.raises(ConfigError, match="^HANDOFF_DATABASE_CONNECT_TIMEOUT: "):
        load_settings({"HANDOFF_DATABASE_CONNECT_TIMEOUT": raw})


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_status_gives_up_on_a_server_that_accepts_and_never_answers(silent_server, tmp_path):
    env = {"HANDOFF_DATABASE_URL": f"postgresql://handoff@127.0.0.1:{silent_server}/handoff",
           "HANDOFF_DATABASE_CONNECT_TIMEOUT": "2", "HANDOFF_EXCEPTION_OWNER": "lead@acme.example"}
    started = time.monotonic()
    result = _handoff("status", env=env, cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("handoff: error: cannot connect to the database"), lines
    assert elapsed < 30  # 2 s per attempt; without a timeout psycopg waits 130 s


def test_the_migration_hint_is_given_for_a_missing_table(fresh_database):
    engine = make_engine(fresh_database)
    try:
        with pytest.raises(DBAPIError) as error, engine.connect() as connection:
            connection.execute(text("SELECT id FROM accounts"))
        assert "has `handoff db upgrade` been run?" in database_problem(error.value)
    finally:
        engine.dispose()


def test_a_terminated_connection_is_not_blamed_on_migrations(backend, fresh_database):
    if backend != "postgresql":
        pytest.skip("an administrator terminating a session is a PostgreSQL event")
    engine = make_engine(fresh_database)  # pre-ping checks at checkout; the kill comes after
    admin = make_engine(fresh_database)
    try:
        with engine.connect() as victim:
            pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
            victim.commit()
            with admin.connect() as connection:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as error:
                victim.execute(text("SELECT 1"))
        line = database_problem(error.value)
        assert "handoff db upgrade" not in line
        assert "connection was lost" in line and "run the command again" in line
    finally:
        engine.dispose()
        admin.dispose()


def test_a_locked_sqlite_database_is_not_blamed_on_migrations(tmp_path):
    path = tmp_path / "locked.db"
    holder = make_engine(f"sqlite:///{path}")
    waiter = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})  # no busy wait
    try:
        with holder.connect() as first:
            first.execute(text("CREATE TABLE t (x INTEGER)"))
            first.commit()
            first.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock (BEGIN IMMEDIATE)
            with waiter.connect() as second:
                with pytest.raises(DBAPIError) as error:
                    second.execute(text("INSERT INTO t VALUES (2)"))
        line = database_problem(error.value)
        assert "locked" in line and "handoff db upgrade" not in line
    finally:
        holder.dispose()
        waiter.dispose()
