"""Outbox delivery throughput through the files connector, against writing the same rows to a file directly.

    python bench/delivery.py [--messages N] [--database-url URL]

(a) direct: the N messages' journal lines (the same JSON the files connector writes),
    appended to a file with one write and one fsync: the floor any delivery path is measured
    against.
(b) outbox delivery: N pending outbox messages delivered by `deliver_due` through the files
    connector: lease claims committed before the push, batches of `max_batch`, the journal's
    idempotency check and fsync, then marking each message delivered, as `handoff outbox
    deliver --once` does.

Each run uses a scratch SQLite file (or, with --database-url, a new PostgreSQL database
created beside the one named and dropped afterwards). Prints both rates and the ratio
(b)/(a); it asserts nothing about speed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import URL

from connectors.registry import load_registry
from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, parse_database_url
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.models import OutboxMessage

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@contextmanager
def scratch(database_url: str | None, folder: Path) -> Iterator[URL]:
    if database_url is None or parse_database_url(database_url).get_backend_name() != "postgresql":
        yield parse_database_url(f"sqlite:///{folder / 'bench.db'}")
        return
    url = parse_database_url(database_url)
    name = f"handoff_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _payload(n: int) -> dict[str, object]:
    return {"task_id": n, "subject": f"Kickoff call with account {n}", "description": "Book a kickoff. " * 20,
            "owner_email": f"rep{n % 7}@acme.example", "due_date": "2026-11-25", "priority": "normal"}


def direct(path: Path, count: int) -> float:
    """Seconds to write the same journal lines straight to a file."""
    started = time.perf_counter()
    lines = [json.dumps({"outbox_id": n, "idempotency_key": f"task:{n}:create", "kind": "crm.create_task",
                         "target": "crm", "payload": _payload(n), "account": None, "task": None,
                         "written_at": NOW.isoformat()}, sort_keys=True) + "\n" for n in range(count)]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - started


def through_outbox(url: URL, folder: Path, count: int) -> tuple[float, int]:
    """Seconds for deliver_due to deliver `count` pending messages through the files connector."""
    settings = Settings(database_url=url, exception_owner="ops-lead@example.com",
                        connectors={"files": {"journal": str(folder / "journal.jsonl")}})
    engine = make_engine(url)
    schema.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(OutboxMessage), [
            {"kind": "crm.create_task", "target": "crm", "connector": "files", "idempotency_key": f"task:{n}:create",
             "payload": _payload(n), "status": "pending", "attempts": 0,
             "next_attempt_at": NOW - timedelta(minutes=1), "created_at": NOW} for n in range(count)])
    sessions = make_session_factory(engine)
    install_routing(sessions, settings.connectors)
    registry = load_registry()
    started = time.perf_counter()
    report = deliver_due(sessions=sessions, settings=settings, registry=registry, now=NOW, worker_id="bench",
                         limit=count)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, report.delivered


@click.command()
@click.option("--messages", default=5000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--database-url", default=None, help="A PostgreSQL URL to run on (a scratch database beside it).")
def main(messages: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
        folder = Path(tmp)
        with scratch(database_url, folder) as url:
            raw = direct(folder / "direct.jsonl", messages)
            delivered_in, delivered = through_outbox(url, folder, messages)
    if delivered != messages:
        click.echo(f"only {delivered} of {messages} messages were delivered", err=True)
        sys.exit(1)
    backend = url.get_backend_name()
    click.echo(f"{messages} messages, {backend}")
    click.echo(f"  (a) direct file write:          {messages / raw:12,.0f} messages/s")
    click.echo(f"  (b) outbox -> files connector:  {messages / delivered_in:12,.0f} messages/s")
    click.echo(f"  ratio (b)/(a): {raw / delivered_in:.4f} (delivery runs at 1/{delivered_in / raw:,.0f} "
               "of a plain file write)")


if __name__ == "__main__":
    main()
