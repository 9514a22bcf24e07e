"""The engine's batched path stores exactly what the one-by-one path stores.

The same mixed input — the sample signals with the shipped playbooks, duplicates within a
batch and across batches, a signal for an unknown account, a malformed line, and an engine
failure on one signal of a batch (a trigger that refuses one account's step runs) — goes
through intake and evaluation in batches, and, in a second database, one signal at a time:
each line ingested alone, each signal evaluated alone on the one-by-one path (its own
savepoint, its journeys read from the database). Every stored row must be the same. One more
playbook, applied as an older release without lint would have, loops on the sample's support
escalation: in a batch, its journey fails the batch and runs again alone, where the loop guard parks it.

Ids are compared by rank within their table (PostgreSQL sequences skip the ids of rolled-back
inserts, so the two paths number rows differently there), and digits inside text by rank too
for the same reason; on SQLite the rows must be identical to the id.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text

from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import Account, Base, ExceptionItem
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data, sample_signals
from orchestrator.resources import shipped_playbooks_dir
from tests.conftest import create_database, drop_database
from tests.engine.conftest import HEADER, install_playbook

NOW = datetime.fromisoformat(sample_signals()[0]["occurred_at"]) + timedelta(days=40)
BATCH = 7
FAULTY = "cedar-analytics.example"  # what enrolls it (a lead, a usage drop) fails at its first step run
SPIN = """
    id: spin
    name: Spin
    stage: adopt
""" + HEADER + """
    enroll: {on: support.escalation}
    steps:
      - {id: there, kind: goto, to: back}
      - {id: back, kind: goto, to: there}
"""


def _lines() -> list[str]:
    lines = [json.dumps(s) for s in sample_signals()]
    # A duplicate within the first batch, one across batches, a malformed line, an unknown account.
    lines.insert(2, lines[1])
    lines.insert(12, lines[3])
    lines.insert(5, '{"type": "product.usage", "account": ')
    lines.insert(9, json.dumps({"type": "product.usage", "account": {"domain": "nobody-here.example"},
                                "occurred_at": "2026-10-07T10:00:00Z", "payload": {"active_users": 3}}))
    lead = json.dumps({"type": "lead.created", "account": {"domain": FAULTY},
                       "occurred_at": "2026-10-06T09:00:00Z", "payload": {"email": "pat@cedar.example"}})
    lines.insert(10, lead)  # in the second batch, with signals of other accounts around it
    return lines


_FAULT = {
    "sqlite": ["""
        CREATE TRIGGER inject_fault BEFORE INSERT ON step_runs
        WHEN (SELECT account_id FROM journeys WHERE id = NEW.journey_id) = {account}
        BEGIN SELECT RAISE(ABORT, 'injected'); END
    """],
    "postgresql": ["""
        CREATE FUNCTION inject_fault() RETURNS trigger AS $$
        BEGIN
          IF (SELECT account_id FROM journeys WHERE id = NEW.journey_id) = {account} THEN
            RAISE EXCEPTION 'injected' USING ERRCODE = '22023';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql
    """, "CREATE TRIGGER inject_fault BEFORE INSERT ON step_runs FOR EACH ROW EXECUTE FUNCTION inject_fault()"],
}


def _prepared(backend: str, tmp_path: Any) -> tuple[Engine, Settings]:
    url = create_database(backend, tmp_path)
    db = make_engine(url)
    schema.upgrade(db)
    settings = Settings(database_url=url, exception_owner="ops-lead@example.com")
    with unit_of_work(make_session_factory(db)) as session:
        assert apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=NOW, actor="test").applied
        install_playbook(session, SPIN, "adopt/spin.yaml", lint=False)
        load_sample_data(session=session)
        account = session.scalars(select(Account.id).where(Account.domain == FAULTY)).one()
        for statement in _FAULT[backend]:
            session.execute(text(statement.replace("{account}", str(account))))
    return db, settings


def _batched(db: Engine, settings: Settings, lines: list[str]) -> None:
    sessions = make_session_factory(db)
    for i in range(0, len(lines), BATCH):
        with unit_of_work(sessions) as session:
            signals.ingest_many(session=session, raws=lines[i:i + BATCH], source="test", now=NOW,
                                settings=settings)
        with unit_of_work(sessions) as session:
            engine.process_pending(session=session, settings=settings, now=NOW, limit=BATCH)
    # Signals the engine itself stored (a monitor's firing) are taken by the next pass, as the drain does.
    while True:
        with unit_of_work(sessions) as session:
            if not engine.process_pending(session=session, settings=settings, now=NOW, limit=BATCH).signals:
                break


def _one_by_one(db: Engine, settings: Settings, lines: list[str]) -> None:
    sessions = make_session_factory(db)
    for i in range(0, len(lines), BATCH):
        for line in lines[i:i + BATCH]:
            with unit_of_work(sessions) as session:
                signals.ingest(session=session, raw=line, source="test", now=NOW, settings=settings)
        while True:
            with unit_of_work(sessions) as session:
                if not engine.process_pending(session=session, settings=settings, now=NOW, limit=1,
                                              batched=False).signals:
                    break


_TABLES = ("signals", "journeys", "step_runs", "tasks", "outbox_messages", "exception_items", "customer_touches",
           "stage_changes", "accounts", "sla_events", "audit_events", "health_scores")
# Set from the wall clock when the sample accounts were loaded, not by intake or the engine.
_WALL_CLOCK = {("accounts", "created_at"), ("accounts", "updated_at")}
# JSON keys that hold row ids, and the table they point into.
_ID_KEYS = {"signal_id": "signals", "journey_id": "journeys", "task_id": "tasks", "exception_id": "exception_items",
            "step_run_id": "step_runs", "sample_signal_ids": "signals", "outbox_id": "outbox_messages",
            "held_outbox_id": "outbox_messages", "trigger_signal_id": "signals"}


def _stored(db: Engine, *, by_rank: bool) -> dict[str, list[Any]]:
    tables = {table.name: table for table in Base.metadata.sorted_tables}
    with db.connect() as connection:
        raw = {name: [{k: v for k, v in row._mapping.items() if (name, k) not in _WALL_CLOCK}
                      for row in connection.execute(select(tables[name]).order_by(tables[name].c.id))]
               for name in _TABLES}
    if not by_rank:
        out: dict[str, list[Any]] = {name: rows for name, rows in raw.items() if name != "audit_events"}
        out["audit_events"] = sorted(repr({k: v for k, v in row.items() if k != "id"}) for row in raw["audit_events"])
        return out
    rank = {name: {row["id"]: n for n, row in enumerate(rows)} for name, rows in raw.items()}
    references = {name: {column.name: next(iter(column.foreign_keys)).column.table.name
                         for column in tables[name].columns if column.foreign_keys} for name in _TABLES}

    def ids(value: Any, table: str) -> Any:
        if isinstance(value, list):
            return [rank[table].get(v, ("?", v)) for v in value]
        return rank[table].get(value, ("?", value)) if value is not None else None

    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ids(v, _ID_KEYS[k]) if k in _ID_KEYS else normal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [normal(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"\d+", "#", value)
        return value

    out = {}
    for name, rows in raw.items():
        normalized = []
        for row in rows:
            new = {}
            for column, value in row.items():
                if column == "id":
                    continue
                target = references[name].get(column) or _ID_KEYS.get(column)
                new[column] = ids(value, target) if target in rank else normal(value)
            normalized.append(new)
        out[name] = sorted(map(repr, normalized)) if name == "audit_events" else normalized
    return out


def _first_difference(table: str, batched: list[Any], single: list[Any]) -> str:
    for n, (a, b) in enumerate(zip(batched, single, strict=False)):
        if a != b:
            if isinstance(a, dict):
                a, b = ({k: v for k, v in a.items() if v != b.get(k)}, {k: v for k, v in b.items() if v != a.get(k)})
            return f"{table} row {n}: batched {a} one by one {b}"
    return f"{table}: {len(batched)} rows batched, {len(single)} one by one"


def test_batches_and_one_by_one_store_the_same_rows(backend, tmp_path):
    lines = _lines()
    batched_db, settings = _prepared(backend, tmp_path)
    single_db, single_settings = _prepared(backend, tmp_path)
    try:
        _batched(batched_db, settings, lines)
        _one_by_one(single_db, single_settings, lines)
        with unit_of_work(make_session_factory(batched_db), read_only=True) as session:
            failures = session.scalars(select(ExceptionItem.message)
                                       .where(ExceptionItem.category == "engine_error")).all()
            assert any("lead.created" in failure for failure in failures), failures  # the failure did happen
            assert session.scalars(select(ExceptionItem.category)
                                   .where(ExceptionItem.category == "unknown_account")).all()
            assert session.scalars(select(ExceptionItem.category)  # and so did the loop
                                   .where(ExceptionItem.category == "loop_guard")).all()
        batched, single = _stored(batched_db, by_rank=True), _stored(single_db, by_rank=True)
        for table in _TABLES:
            assert batched[table] == single[table], _first_difference(table, batched[table], single[table])
        # The two duplicates and the malformed line not stored (health.dropped comes from the engine, not a line).
        assert len([s for s in batched["signals"] if s["type"] != "health.dropped"]) <= len(lines) - 3
        if backend == "sqlite":  # ids are handed out alike: the rows are identical, ids and all
            exact_batched, exact_single = _stored(batched_db, by_rank=False), _stored(single_db, by_rank=False)
            for table in _TABLES:
                assert exact_batched[table] == exact_single[table], \
                    _first_difference(table, exact_batched[table], exact_single[table])
    finally:
        for db in (batched_db, single_db):
            url = db.url
            db.dispose()
            drop_database(url)
