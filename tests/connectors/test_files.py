"""The files connector: a folder of exports as a source (cursor on modification), a journal as the CRM."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from connectors.base import ConnectorContext, Outbound, PermanentError
from connectors.files import FilesConnector
from connectors.sync import read_cursor, sync
from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.models import Account, Contact, Deal, Owner, Signal, SyncCursor
from orchestrator.runtime import Runtime, build_runtime
from tests.conftest import T0

OWNERS_CSV = """external_id,email,name,role,manager,timezone
U1,boss@acme.example,Boss,sales-manager,,Europe/Berlin
U2,rep@acme.example,Rep,ae,boss@acme.example,
"""
ACCOUNTS_CSV = """external_id,name,domain,owner,arr,attributes.tier
A1,Zeta,zeta.example,U2,50000,gold
A2,Eta,eta.example,rep@acme.example,,
"""
CONTACTS_CSV = """external_id,account,name,email,is_primary
C1,A1,Ada,ada@zeta.example,true
C2,,Bob,bob@eta.example,false
"""
DEALS_JSON = [{"external_id": "D1", "account_domain": "eta.example", "name": "Eta new", "amount": "9000",
               "owner": "U2"}]
SIGNALS = [{"type": "product.usage", "account": {"domain": "zeta.example"}, "occurred_at": "2026-11-20T10:00:00Z",
            "payload": {"active_users": 3}}]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "owners.csv").write_text(OWNERS_CSV)
    (folder / "accounts.csv").write_text(ACCOUNTS_CSV)
    (folder / "contacts.csv").write_text(CONTACTS_CSV.replace("C2,,", "C2,A2,"))
    (folder / "deals.json").write_text(json.dumps(DEALS_JSON))
    (folder / "signals.jsonl").write_text("\n".join(json.dumps(s) for s in SIGNALS) + "\n")
    return folder


@pytest.fixture
def runtime(fresh_database: URL, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(database_url=fresh_database, exception_owner="ops-lead@example.com",
                        connectors={"files": {"folder": str(tmp_path / "exports"),
                                              "journal": str(tmp_path / "journal.jsonl")}})
    made = build_runtime(settings, clock=FrozenClock(T0))
    schema.upgrade(made.engine)
    yield made
    made.close()


def _count(runtime: Runtime, model: type) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_folder_syncs_once_then_only_what_changed(runtime: Runtime, tmp_path: Path) -> None:
    folder = _folder(tmp_path)

    first = sync(runtime=runtime, name="files")

    assert (first.fetched, first.created, first.signals_derived, first.signals_stored) == (8, 7, 1, 1)
    assert first.problems == []
    with runtime.sessions() as session:
        zeta = session.scalars(select(Account).where(Account.domain == "zeta.example")).one()
        assert zeta.owner is not None and zeta.owner.manager is not None
        assert zeta.owner.manager.email == "boss@acme.example" and zeta.attributes == {"tier": "gold"}
        assert session.scalars(select(Contact).where(Contact.email == "ada@zeta.example")).one().is_primary
        assert session.scalars(select(Deal)).one().account.domain == "eta.example"
    assert _count(runtime, Signal) == 1
    assert set(read_cursor(runtime, "files")["files"]) == {"owners.csv", "accounts.csv", "contacts.csv",
                                                           "deals.json", "signals.jsonl"}

    assert sync(runtime=runtime, name="files").fetched == 0  # nothing changed

    (folder / "accounts.csv").write_text(ACCOUNTS_CSV.replace("50000", "75000"))
    os.utime(folder / "accounts.csv", ns=(1, 1))  # a different modification time, whatever the clock
    changed = sync(runtime=runtime, name="files")
    assert (changed.fetched, changed.updated, changed.created) == (2, 1, 0)

    full = sync(runtime=runtime, name="files", full=True)
    assert (full.fetched, full.created, full.updated, full.signals_stored) == (8, 0, 0, 0)
    assert _count(runtime, Owner) == 2 and _count(runtime, SyncCursor) == 1


def test_a_broken_file_stops_the_sync_with_one_line_naming_file_and_line(runtime: Runtime, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "deals.json").write_text('[{"external_id": "D1",\n "name": }]')
    with pytest.raises(PermanentError, match=r"^deals\.json:2: not valid JSON"):
        sync(runtime=runtime, name="files")
    # The pages before the broken file were committed with their cursor: a rerun resumes there.
    assert _count(runtime, Contact) == 2
    assert "deals.json" not in read_cursor(runtime, "files")["files"]


def _message(n: int, key: str | None = None) -> Outbound:
    return Outbound(id=n, kind="crm.create_task", idempotency_key=key or f"task:{n}:create",
                    payload={"subject": f"Task {n}"}, attempts=0, target="crm", connector="files")


def _journal_connector(path: Path, settings: Settings) -> FilesConnector:
    return FilesConnector(config={"journal": str(path)},
                          context=ConnectorContext(name="files", settings=settings, clock=lambda: T0))


def test_the_journal_writes_each_message_once_across_instances_and_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    settings = Settings(database_url=URL.create("sqlite", database=str(tmp_path / "x.db")))
    first = _journal_connector(path, settings)
    results = first.push([_message(1), _message(2)])
    assert [(r.outcome, r.remote_id) for r in results] == [("delivered", "journal:1"), ("delivered", "journal:2")]

    # Another worker process (a second instance) re-delivers message 2: not written again.
    again = _journal_connector(path, settings).push([_message(2), _message(3)])
    assert [r.remote_id for r in again] == ["journal:2", "journal:3"]
    with path.open("a") as handle:
        handle.write('{"idempotency_key": "task:9:cre')  # a crash mid-write
    after_crash = first.push([_message(1), _message(4)])
    assert [r.remote_id for r in after_crash] == ["journal:1", "journal:5"]

    lines = path.read_text().splitlines()
    keys = [json.loads(line)["idempotency_key"] for line in lines if not line.startswith('{"idempotency_key": "t')]
    assert keys == ["task:1:create", "task:2:create", "task:3:create", "task:4:create"]
    assert json.loads(lines[0])["payload"] == {"subject": "Task 1"} and json.loads(lines[0])["written_at"] == str(
        T0.isoformat())


def test_the_journal_defaults_to_a_file_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=URL.create("sqlite", database=str(tmp_path / "db" / "handoff.db")))
    connector = FilesConnector(config={"journal": "handoff-journal.jsonl"},
                               context=ConnectorContext(name="files", settings=settings,
                                                        data_dir=tmp_path / "db"))
    assert connector.journal_path == tmp_path / "db" / "handoff-journal.jsonl"
    assert not connector.has_source() and connector.check() == ["journal folder " + str(tmp_path / "db")
                                                                + " does not exist"]


def test_pages_are_bounded_and_the_cursor_moves_with_a_files_last_page(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    rows = "\n".join(f"U{n},u{n}@acme.example,U {n},ae" for n in range(1200))
    (folder / "owners.csv").write_text("external_id,email,name,role\n" + rows + "\n")
    settings = Settings(database_url=URL.create("sqlite", database=str(tmp_path / "x.db")))
    connector = FilesConnector(config={"folder": str(folder), "source": "files", "journal": "j.jsonl"},
                               context=ConnectorContext(name="files", settings=settings, data_dir=tmp_path))
    pages = list(connector.pull(cursor=None))
    assert [len(page.records) for page in pages] == [500, 500, 200]
    assert [page.cursor is not None for page in pages] == [False, False, True]
    assert list(connector.pull(cursor=pages[-1].cursor)) == []


def test_an_enabled_source_gets_a_sync_job(runtime: Runtime, tmp_path: Path) -> None:
    from orchestrator.worker.jobs import all_jobs, run_at

    _folder(tmp_path)
    jobs = {job.id: job for job in all_jobs(runtime)}
    assert {"sync.files", "outbox.deliver", "signals.drain"} <= set(jobs)
    result = run_at(jobs["sync.files"], runtime=runtime, now=T0)
    assert result.items == 8 and result.detail.startswith("files: fetched 8, created 7")
