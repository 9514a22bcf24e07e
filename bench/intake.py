"""Intake + evaluation per signal against the database floor, and against history size, in one run.

    python bench/intake.py [--postgres-url URL | --database-url URL] [--signals N] [--batch B ...]
                           [--rounds R] [--history 10000,1000000] [--quick]

For each database (a temporary SQLite file; PostgreSQL at --postgres-url or
HANDOFF_TEST_POSTGRES_URL, in a scratch database created for the run and dropped after),
for each mix (no-enrollment: signals no shipped playbook enrolls on, exits on or wakes
for; shipped: the bundled sample signals with the shipped playbooks) and each batch size:

(b) product  N signals as JSON through `signals.ingest_many` in transactions of B, each
             followed by `engine.process_pending` for the batch, as a worker does.
(a) signals  the signal rows the product stored, written again with Core executemany in
             transactions of B: the floor of any intake.
(c) floor    every row the product inserted, counted per table from its own run (signals,
             audit events, journeys, step runs, tasks, outbox rows, ...), written again with
             Core executemany in the same batch size (each batch's rows: one transaction for
             the signals, one for the rest, as the product commits intake and evaluation apart).

Each of (a), (b) and (c) is the best of --rounds rounds (3 by default; one with --quick): every
round ingests N new signals into the same database and writes copies of that round's own rows.

With --history, per-signal cost with history: a database pre-filled with H signals of history (and
the journeys, step runs, tasks, audit events and outbox rows that come with them: copies
of a real product run, moved back in time and finished, written with COPY on PostgreSQL
and executemany on SQLite), ANALYZEd, then the shipped mix at batch 100, in rounds that
alternate between the sizes (best round kept); printed for each H with the ratio to the
smallest. --no-floor runs the history part only. --quick runs 1000 signals and 10k vs 100k history.

Prints figures and ratios; asserts nothing about speed.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, String, Table, UniqueConstraint, create_engine, func, insert, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import schema
from orchestrator.config import Settings, load_settings
from orchestrator.db import make_engine, make_session_factory, parse_database_url, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine as engine_module
from orchestrator.models import Base
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data, sample_signals
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import settle_heap

START = datetime(2026, 10, 5, 13, 0, tzinfo=UTC)
# Rows the product inserts land in these tables; the rest (accounts, playbooks) is set-up.
_SETUP_TABLES = {"owners", "accounts", "contacts", "deals", "external_ids", "playbook_versions", "job_runs",
                 "sync_cursors", "api_keys", "email_suppressions", "webhook_receipts"}


@contextmanager
def scratch_url(base: URL | None) -> Iterator[URL]:
    """A new empty database for this measurement, removed afterwards (SQLite when `base` is None)."""
    if base is None:
        with tempfile.TemporaryDirectory(prefix="handoff-bench-") as folder:
            yield parse_database_url(f"sqlite:///{Path(folder) / 'bench.db'}")
        return
    name = f"handoff_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the mixes ----------------------------------------------------------------------------------

def _known(template: dict[str, Any]) -> bool:
    return "domain" in template["account"] and template["account"]["domain"] != "unknown-co.example" \
        and "deal" not in template


def shipped_mix(count: int, prefix: str) -> list[dict[str, Any]]:
    """`count` signals cycling through the sample signals' types, payloads and known accounts."""
    return _cycle([s for s in sample_signals() if _known(s)], count, prefix)


def no_enrollment_mix(count: int, prefix: str) -> list[dict[str, Any]]:
    """Signals that no shipped playbook enrolls on, exits on or waits for (usage that did not drop,
    sentiment, escalations), on the sample accounts: evaluated (a condition, a monitor), nothing started."""
    templates = []
    for s in sample_signals():
        if not _known(s):
            continue
        if s["type"] == "product.usage":
            templates.append({**s, "payload": {**s["payload"], "usage_change_pct": 5}})
        elif s["type"] in ("sentiment.negative", "support.escalation"):
            templates.append(s)
    return _cycle(templates, count, prefix)


def _cycle(templates: list[dict[str, Any]], count: int, prefix: str) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        out.append({"type": template["type"], "account": dict(template["account"]),
                    "occurred_at": (START + timedelta(seconds=i)).isoformat(), "payload": dict(template["payload"]),
                    "dedupe_key": f"{prefix}-{i}"})
    return out


MIXES: dict[str, Callable[[int, str], list[dict[str, Any]]]] = {
    "no-enrollment": no_enrollment_mix, "shipped": shipped_mix}


# -- one database -------------------------------------------------------------------------------

@dataclass
class Setup:
    db: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    now: datetime


def prepare(url: URL) -> Setup:
    """A database with the shipped playbooks and the sample data, and the process settled as a worker's
    is once started (`runtime.settle_heap`)."""
    db = make_engine(url)
    schema.upgrade(db)
    sessions = make_session_factory(db)
    settings: Settings = replace(load_settings({}), database_url=url, exception_owner="ops-lead@example.com")
    with unit_of_work(sessions) as session:
        applied = apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=START, actor="bench")
        assert applied.applied, applied.findings
        load_sample_data(session=session)
    settle_heap()
    return Setup(db=db, sessions=sessions, settings=settings, now=START + timedelta(days=1))


def _tables() -> list[Table]:
    return [table for table in Base.metadata.sorted_tables if "id" in table.c and table.name not in _SETUP_TABLES]


def watermarks(db: Engine) -> dict[str, int]:
    with db.connect() as connection:
        return {table.name: connection.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
                for table in _tables()}


def new_rows(db: Engine, since: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Every row inserted since `since`, per table, in id order."""
    found: dict[str, list[dict[str, Any]]] = {}
    with db.connect() as connection:
        for table in _tables():
            rows = [dict(row._mapping) for row in
                    connection.execute(select(table).where(table.c.id > since[table.name]).order_by(table.c.id))]
            if rows:
                found[table.name] = rows
    return found


def run_product(setup: Setup, raws: list[dict[str, Any]], batch: int,
                marks: list[dict[str, int]] | None = None) -> float:
    """Seconds to ingest and evaluate `raws` in batches of `batch`.

    With `marks`, the tables' id watermarks after each batch are appended to it (not timed).
    """
    seconds = 0.0
    for i in range(0, len(raws), batch):
        started = time.perf_counter()
        with unit_of_work(setup.sessions) as session:
            results = signals.ingest_many(session=session, raws=raws[i:i + batch], source="bench", now=setup.now,
                                          settings=setup.settings)
        evaluated = 0
        while evaluated < len(results):  # one engine pass per batch, unless it left some pending
            with unit_of_work(setup.sessions) as session:
                report = engine_module.process_pending(session=session, settings=setup.settings, now=setup.now,
                                                       limit=batch)
            if not report.signals:
                break
            evaluated += report.signals
        seconds += time.perf_counter() - started
        assert all(r.status == "accepted" for r in results), [r for r in results if r.status != "accepted"][:1]
        if marks is not None:
            marks.append(watermarks(setup.db))
    return seconds


def warm_up(setup: Setup) -> None:
    """Compile the statements and playbooks once, as a running service has (caches are per engine)."""
    run_product(setup, shipped_mix(50, "warm-up"), 50)


# -- copies of the product's rows ----------------------------------------------------------------

def _unique_strings(table: Table) -> set[str]:
    names = {column.name for column in table.columns if column.unique}
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            names.update(column.name for column in constraint.columns)
    for index in table.indexes:
        if index.unique:
            names.update(column.name for column in index.columns)
    return {name for name in names if isinstance(table.c[name].type, String)}


class Copier:
    """Makes copies of a set of product rows that can be inserted beside them.

    Ids move past the table's current maximum, references to copied rows move with them,
    unique text gets a suffix; `shift` moves every timestamp back and `finish` ends what
    was open (history, not live work).
    """

    def __init__(self, db: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows
        self.first = {name: table_rows[0]["id"] for name, table_rows in rows.items()}
        self.span = {name: table_rows[-1]["id"] - table_rows[0]["id"] + 1 for name, table_rows in rows.items()}
        self.base = watermarks(db)
        self.tables = {table.name: table for table in _tables() if table.name in rows}
        self.unique = {name: _unique_strings(table) for name, table in self.tables.items()}
        self.references = {name: {column.name: next(iter(column.foreign_keys)).column.table.name
                                  for column in table.columns if column.foreign_keys}
                           for name, table in self.tables.items()}

    def copy(self, k: int, *, shift: timedelta | None = None, finish: bool = False) -> dict[str, list[dict[str, Any]]]:
        """The k-th copy (k >= 0), table by table."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, table_rows in self.rows.items():
            refs, unique = self.references[name], self.unique[name]
            copies = []
            for row in table_rows:
                new = dict(row)
                new["id"] = self._moved(name, row["id"], k)
                for column, target in refs.items():
                    value = row[column]
                    if value is not None and target in self.first and \
                            self.first[target] <= value < self.first[target] + self.span[target]:
                        new[column] = self._moved(target, value, k)
                for column in unique:
                    if new[column] is not None:
                        new[column] = f"{new[column]}~{k}"
                if shift is not None:
                    for column, value in new.items():
                        if isinstance(value, datetime):
                            new[column] = value - shift
                if finish:
                    _finish(name, new)
                copies.append(new)
            out[name] = copies
        return out

    def bounds(self, marks: list[dict[str, int]], k: int) -> list[dict[str, int]]:
        """The product's per-batch watermarks as ids of the k-th copy."""
        return [{name: self._moved(name, mark[name], k) for name in self.rows} for mark in marks]

    def _moved(self, table: str, ident: int, k: int) -> int:
        return self.base[table] + k * self.span[table] + (ident - self.first[table]) + 1


def _finish(table: str, row: dict[str, Any]) -> None:
    if table == "signals":
        row["processed_at"] = row["processed_at"] or row["received_at"]
        row["retry_at"] = None
    elif table == "journeys" and row["ended_at"] is None:
        row.update(status="completed", ended_at=row["enrolled_at"], wait_until=None, wait_signal=None,
                   enrollment_key=f"{row['enrollment_key']}#{row['id']}")
    elif table == "tasks" and row["status"] in ("open", "acknowledged"):
        row.update(status="done", outcome="done", completed_at=row["created_at"], next_escalation_at=None,
                   sla_check_at=None)
    elif table == "step_runs":
        if row["status"] in ("waiting", "running"):
            row.update(status="done", finished_at=row["started_at"])
        row["override_until"] = None
    elif table == "outbox_messages" and row["status"] == "pending":
        row["status"] = "delivered"
    elif table == "exception_items" and row["status"] == "open":
        row.update(status="resolved", next_escalation_at=None)


def write_floor(db: Engine, copies: dict[str, list[dict[str, Any]]], batches: list[dict[str, int]], *,
                only: str | None = None) -> float:
    """Seconds to write `copies` with Core executemany, each product batch's rows in its own transactions.

    `batches` are the copied ids' upper bounds per batch (the product's watermarks, moved
    like the ids): a batch writes what the product wrote in that batch, parents first.
    """
    tables = {table.name: table for table in _tables()}
    order = [name for name in tables if name in copies and (only is None or name == only)]
    cursor = dict.fromkeys(order, 0)
    parts: list[dict[str, list[dict[str, Any]]]] = []
    for bound in batches:
        part = {}
        for name in order:
            rows = copies[name]
            end = cursor[name]
            while end < len(rows) and rows[end]["id"] <= bound[name]:
                end += 1
            part[name], cursor[name] = rows[cursor[name]:end], end
        parts.append(part)
    assert all(cursor[name] == len(copies[name]) for name in order)
    started = time.perf_counter()
    for part in parts:
        if part.get("signals"):
            with db.begin() as connection:  # intake's transaction
                connection.execute(insert(tables["signals"]), part["signals"])
        rest = [name for name in order if name != "signals" and part[name]]
        if rest:
            with db.begin() as connection:  # evaluation's transaction
                for name in rest:
                    connection.execute(insert(tables[name]), part[name])
    return time.perf_counter() - started


def bulk_write(db: Engine, copies: dict[str, list[dict[str, Any]]]) -> None:
    """Write history fast: COPY on PostgreSQL, one executemany per table on SQLite."""
    tables = {table.name: table for table in _tables()}
    order = [name for name in tables if name in copies and copies[name]]
    if db.dialect.name != "postgresql":
        with db.begin() as connection:
            for name in order:
                connection.execute(insert(tables[name]), copies[name])
        return
    from psycopg.types.json import Jsonb

    with db.begin() as connection:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for name in order:
            columns = list(copies[name][0])
            with cursor.copy(f'COPY {name} ({", ".join(columns)}) FROM STDIN') as copy:
                for row in copies[name]:
                    copy.write_row([Jsonb(v) if isinstance(v, dict | list) else v for v in row.values()])
    catch_up_sequences(db, order)


def catch_up_sequences(db: Engine, names: list[str]) -> None:
    """On PostgreSQL, move these tables' id sequences past rows written with explicit ids (copies)."""
    if db.dialect.name != "postgresql":
        return
    with db.begin() as connection:
        for name in names:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                    f"(SELECT max(id) FROM {name}))"))


def analyze(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text("ANALYZE"))


# -- the measurements ---------------------------------------------------------------------------

@dataclass
class FloorResult:
    backend: str
    mix: str
    batch: int
    signals: int
    product: float
    signal_floor: float
    full_floor: float
    rows: dict[str, int]


def measure_floor(base: URL | None, mix: str, batch: int, count: int, rounds: int = 3) -> FloorResult:
    """The best of `rounds` for each of (a), (b) and (c), on one database: each round ingests `count` new
    signals and writes copies of that round's own rows, so a busy moment slows one round, not the result."""
    product = signal_floor = full_floor = math.inf
    with scratch_url(base) as url:
        setup = prepare(url)
        try:
            warm_up(setup)
            for n in range(rounds):
                raws = MIXES[mix](count, f"{mix}-{batch}-{n}")
                before = watermarks(setup.db)
                marks: list[dict[str, int]] = []
                product = min(product, run_product(setup, raws, batch, marks))
                written = new_rows(setup.db, before)
                assert len(written.get("signals", [])) == count
                if n == 0:
                    rows = {name: len(table_rows) for name, table_rows in written.items()}
                copier = Copier(setup.db, written)
                signal_floor = min(signal_floor, write_floor(setup.db, copier.copy(0), copier.bounds(marks, 0),
                                                             only="signals"))
                full_floor = min(full_floor, write_floor(setup.db, copier.copy(1), copier.bounds(marks, 1)))
                catch_up_sequences(setup.db, list(written))  # the next round's product rows come after
        finally:
            setup.db.dispose()
    return FloorResult(backend=url.get_backend_name(), mix=mix, batch=batch, signals=count, product=product,
                       signal_floor=signal_floor, full_floor=full_floor, rows=rows)


def _prefill(setup: Setup, history: int, template_size: int) -> None:
    """`history` signals of finished history: copies of a real product run, moved back a week each."""
    before = watermarks(setup.db)
    run_product(setup, shipped_mix(template_size, "template"), 100)
    copier = Copier(setup.db, new_rows(setup.db, before))
    copies = max(math.ceil(history / template_size) - 1, 0)
    chunk = 25
    for first in range(0, copies, chunk):
        block: dict[str, list[dict[str, Any]]] = {}
        for k in range(first, min(first + chunk, copies)):
            for name, rows in copier.copy(k, shift=timedelta(days=7 * (k + 1)), finish=True).items():
                block.setdefault(name, []).extend(rows)
        bulk_write(setup.db, block)
    analyze(setup.db)


def measure_history(base: URL | None, sizes: list[int], count: int,
                    rounds: int = 3) -> dict[int, tuple[float, float]]:
    """Per history size: (best seconds per signal of the shipped mix at batch 100, seconds the prefill took).

    Every size gets its own database, all pre-filled first; then the rounds alternate between
    them (`count` signals per size in all), so a busy machine slows every size alike, and the
    best round of each is kept.
    """
    with ExitStack() as stack:
        setups: dict[int, Setup] = {}
        prefill: dict[int, float] = {}
        for history in sizes:
            setup = prepare(stack.enter_context(scratch_url(base)))
            stack.callback(setup.db.dispose)
            started = time.perf_counter()
            warm_up(setup)
            _prefill(setup, history, template_size=min(2000, history))
            prefill[history] = time.perf_counter() - started
            setups[history] = setup
        best = dict.fromkeys(sizes, math.inf)
        per_round = max(count // rounds, 100)
        for n in range(rounds):
            for history in sizes:
                seconds = run_product(setups[history], shipped_mix(per_round, f"measure-{n}"), 100)
                best[history] = min(best[history], seconds / per_round)
    return {history: (best[history], prefill[history]) for history in sizes}


def _postgres_url(option: str | None) -> URL | None:
    value = option or os.environ.get("HANDOFF_TEST_POSTGRES_URL")
    return parse_database_url(value) if value else None


def _databases(database_url: str | None, postgres_url: str | None) -> list[tuple[str, URL | None]]:
    if database_url is not None:
        url = parse_database_url(database_url)
        return [("postgresql", url)] if url.get_backend_name() == "postgresql" else [("sqlite", None)]
    pg = _postgres_url(postgres_url)
    return [("sqlite", None)] + ([("postgresql", pg)] if pg is not None else [])


def _report(r: FloorResult) -> list[str]:
    rows = sum(r.rows.values()) / r.signals
    per = ", ".join(f"{name} {n / r.signals:.2f}" for name, n in sorted(r.rows.items()))
    return [
        f"Handoff intake benchmark: {r.signals} signals on {r.backend}, batches of {r.batch}, {r.mix} mix",
        f"  (a) raw INSERT, Core executemany, the signal rows      {r.signal_floor:8.3f} s  "
        f"{r.signals / r.signal_floor:10.1f} signals/s",
        f"  (b) intake + evaluation (ingest_many + engine)         {r.product:8.3f} s  "
        f"{r.signals / r.product:10.1f} signals/s",
        f"  (c) full floor, every row (b) wrote, Core executemany  {r.full_floor:8.3f} s  "
        f"{r.signals / r.full_floor:10.1f} signals/s",
        f"  ratio (b)/(a): {r.signal_floor / r.product:.4f}  (intake + evaluation is "
        f"{r.product / r.signal_floor:.1f}x the signal rows alone)",
        f"  ratio (b)/(c): {r.full_floor / r.product:.4f}  (intake + evaluation is "
        f"{r.product / r.full_floor:.2f}x the full floor)",
        f"  rows written per signal: {rows:.2f} ({per})",
    ]


@click.command()
@click.option("--database-url", default=None,
              help="Measure on this database only (PostgreSQL: scratch databases are created beside it).")
@click.option("--postgres-url", default=None,
              help="Besides SQLite, measure on this PostgreSQL server (default $HANDOFF_TEST_POSTGRES_URL).")
@click.option("--signals", "count", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Signals per floor measurement.")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(min=1), default=(100, 1000),
              show_default=True, help="Signals per intake transaction and engine pass (repeatable).")
@click.option("--history", default="", help="History sizes in signals, comma-separated, e.g. 10000,1000000.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Rounds per floor measurement; the best of each of (a), (b), (c) is kept.")
@click.option("--quick", is_flag=True, help="1000 signals per measurement, one round, and history 10k vs 100k.")
@click.option("--no-floor", is_flag=True, help="Only the history measurement.")
def main(database_url: str | None, postgres_url: str | None, count: int, batches: tuple[int, ...], history: str,
         rounds: int, quick: bool, no_floor: bool) -> None:
    """Benchmark intake + evaluation against the database floor (and, with --history, against history size)."""
    if quick:
        count, rounds, history = 1000, 1, history or "10000,100000"
    summary = []
    for backend, base in [] if no_floor else _databases(database_url, postgres_url):
        for mix in MIXES:
            for batch in batches:
                r = measure_floor(base, mix, batch, count, rounds)
                for line in _report(r):
                    click.echo(line)
                summary.append(f"{backend:<11} {mix:<14} {batch:>5} {1000 * r.product / count:8.3f} "
                               f"{1000 * r.signal_floor / count:8.3f} {1000 * r.full_floor / count:7.3f} "
                               f"{r.product / r.signal_floor:9.1f} {r.product / r.full_floor:8.2f} "
                               f"{sum(r.rows.values()) / r.signals:6.2f}")
    if summary:
        click.echo(f"\nSummary, ms per signal ({count} signals per measurement, best of {rounds} rounds)")
        click.echo(f"{'database':<11} {'mix':<14} {'batch':>5} {'product':>8} {'signals':>8} {'floor':>7} "
                   f"{'x signals':>9} {'x floor':>8} {'rows':>6}")
        for line in summary:
            click.echo(line)
    sizes = [int(part) for part in history.split(",") if part]
    if not sizes:
        return
    measured = 1000 if quick else 3000
    click.echo(f"\nHistory: shipped mix, batch 100, best of 3 rounds of {measured // 3} signals, ms per signal")
    for backend, base in _databases(database_url, postgres_url):
        results = measure_history(base, sizes, measured)
        smallest = results[sizes[0]][0]
        for h, (per_signal, prefill) in results.items():
            click.echo(f"{backend:<11} {h:>9} signals of history  {1000 * per_signal:7.3f}  "
                       f"x{per_signal / smallest:5.2f}  (prefill {prefill:.0f} s)")


if __name__ == "__main__":
    main()
