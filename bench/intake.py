"""Signals per second: intake + evaluation against a raw INSERT of the same rows, in one run.

    python bench/intake.py [--signals N] [--batch B] [--database-url URL]

(a) raw: the signal rows, accounts already resolved, written with one SQLAlchemy Core
    executemany into the signals table: the floor any intake path is measured against.
(b) intake + evaluation: the same signals as JSON objects through `signals.ingest`
    (validation, account resolution by domain, dedupe) in transactions of B signals, each
    followed by `engine.process_pending` (enrollment, steps, tasks, outbox) with the
    shipped playbooks and the sample accounts, as a worker would.

Each run uses a scratch database: a temporary SQLite file by default, or with
--database-url a new database created next to the one named (PostgreSQL) and dropped
afterwards. Prints both rates and the ratio (b)/(a); it asserts nothing about speed.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine, delete, insert, select, text
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.config import Settings, load_settings
from orchestrator.db import make_engine, make_session_factory, parse_database_url, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine as engine_module
from orchestrator.models import Account, Signal
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data, sample_signals
from orchestrator.resources import shipped_playbooks_dir

START = datetime(2026, 10, 5, 13, 0, tzinfo=UTC)


@contextmanager
def scratch_url(database_url: str | None) -> Iterator[URL]:
    """A new empty database for this run, removed afterwards."""
    if database_url is None:
        with tempfile.TemporaryDirectory(prefix="handoff-bench-") as folder:
            yield parse_database_url(f"sqlite:///{Path(folder) / 'bench.db'}")
        return
    url = parse_database_url(database_url)
    if url.get_backend_name() != "postgresql":
        # A SQLite URL names a file we would write into; use a fresh file beside it instead.
        path = Path(url.database or ".").resolve().parent / f"handoff-bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield parse_database_url(f"sqlite:///{path}")
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"handoff_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_signals(count: int) -> list[dict[str, Any]]:
    """`count` signals cycling through the sample signals' types, payloads and known accounts."""
    templates = [s for s in sample_signals() if "domain" in s["account"]
                 and s["account"]["domain"] != "unknown-co.example" and "deal" not in s]
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        out.append({"type": template["type"], "account": dict(template["account"]),
                    "occurred_at": (START + timedelta(minutes=i)).isoformat(),
                    "payload": dict(template["payload"]), "dedupe_key": f"bench-{i}"})
    return out


def progress(items: list[Any], label: str) -> Any:
    # click ships a progress bar; show it only to a person watching a terminal.
    if sys.stderr.isatty():
        return click.progressbar(items, label=label, file=sys.stderr)
    return _Plain(items)


class _Plain:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __enter__(self) -> list[Any]:
        return self.items

    def __exit__(self, *_: Any) -> None:
        return None


def run(count: int, batch: int, database_url: str | None) -> dict[str, Any]:
    raw_signals = make_signals(count)
    with scratch_url(database_url) as url:
        db = make_engine(url)
        try:
            schema.upgrade(db)
            sessions = make_session_factory(db)
            settings: Settings = replace(load_settings({}), database_url=url, exception_owner="ops-lead@example.com")
            with unit_of_work(sessions) as session:
                applied = apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=START,
                                          actor="bench")
                assert applied.applied, applied.findings
                load_sample_data(session=session)
                ids = dict(session.execute(select(Account.domain, Account.id)).tuples().all())

            # (a) the same rows, accounts resolved beforehand, one executemany.
            now = START + timedelta(minutes=count)
            rows = [{"type": s["type"], "dedupe_key": s["dedupe_key"], "account_id": ids[s["account"]["domain"]],
                     "source": "bench", "payload": s["payload"],
                     "occurred_at": datetime.fromisoformat(s["occurred_at"]), "received_at": now,
                     "processed_at": now} for s in raw_signals]
            started = time.perf_counter()
            with db.begin() as connection:
                connection.execute(insert(Signal), rows)
            raw_seconds = time.perf_counter() - started
            with db.begin() as connection:
                connection.execute(delete(Signal))

            # (b) intake + evaluation, in worker-sized transactions.
            statuses: Counter[str] = Counter()
            engine_counts: Counter[str] = Counter()
            batches = [raw_signals[i:i + batch] for i in range(0, count, batch)]
            started = time.perf_counter()
            with progress(batches, "intake + evaluation") as bar:
                for chunk in bar:
                    with unit_of_work(sessions) as session:
                        for item in chunk:
                            result = signals.ingest(session=session, raw=item, source="bench", now=now,
                                                    settings=settings)
                            statuses[result.status] += 1
                    with unit_of_work(sessions) as session:
                        report = engine_module.process_pending(session=session, settings=settings, now=now,
                                                               limit=batch)
                        engine_counts.update(report.counts)
            full_seconds = time.perf_counter() - started
        finally:
            db.dispose()
    return {"backend": url.get_backend_name(), "signals": count, "batch": batch,
            "raw_seconds": raw_seconds, "full_seconds": full_seconds,
            "statuses": dict(statuses), "engine": dict(engine_counts)}


@click.command()
@click.option("--signals", "count", default=2000, show_default=True, type=click.IntRange(min=1),
              help="How many signals to write in each measurement.")
@click.option("--batch", default=100, show_default=True, type=click.IntRange(min=1),
              help="Signals per intake transaction and per engine pass.")
@click.option("--database-url", default=None,
              help="Measure on this server (a scratch database is created beside it); default a temp SQLite file.")
def main(count: int, batch: int, database_url: str | None) -> None:
    """Benchmark signal intake + evaluation against a raw insert of the same rows."""
    result = run(count, batch, database_url)
    raw_rate = result["signals"] / result["raw_seconds"]
    full_rate = result["signals"] / result["full_seconds"]
    ratio = full_rate / raw_rate
    click.echo(f"Handoff intake benchmark: {result['signals']} signals on {result['backend']}, "
               f"batches of {result['batch']}")
    click.echo(f"  (a) raw INSERT, Core executemany       {result['raw_seconds']:9.3f} s  "
               f"{raw_rate:12.1f} signals/s")
    click.echo(f"  (b) intake + evaluation (ingest+engine) {result['full_seconds']:8.3f} s  "
               f"{full_rate:12.1f} signals/s")
    click.echo(f"  ratio (b)/(a): {ratio:.4f}  (intake + evaluation is {1 / ratio:.1f}x the cost of a raw insert)")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result["statuses"].items()))
    engine_counts = ", ".join(f"{k} {v}" for k, v in sorted(result["engine"].items())) or "nothing"
    click.echo(f"  intake: {statuses}; engine: {engine_counts}")


if __name__ == "__main__":
    main()
