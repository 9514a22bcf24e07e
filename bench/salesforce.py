"""Salesforce connector against the fake org (tests/fakes/salesforce.py), in one run:

    python bench/salesforce.py [--accounts N] [--tasks T]

(a) baseline: bare simple-salesforce `query_all_iter` paging of the same Account rows (the same
    fields, the same HTTPS server, nothing stored): the floor any sync is measured against.
(b) sync: the connector's pull (every object, cursors, derived signals) with each page upserted
    through `intake.records.upsert_records` and committed with its cursor, into a scratch SQLite
    database, as `connectors.sync` does; peak Python memory of (b) from tracemalloc.
(c) write-back: T `crm.create_task` messages pushed in `max_batch` chunks; API calls counted at
    the fake org, against the minimum of one sObject Collections call per 200 Tasks.

Prints rates, the ratio (b)/(a), peak memory and calls per 100 tasks; it asserts nothing about speed.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fakes lives beside bench/

import requests  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from connectors.base import AccountRef, ConnectorContext, Outbound, TaskRef  # noqa: E402
from connectors.salesforce import SalesforceConnector  # noqa: E402
from orchestrator import schema  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url, unit_of_work  # noqa: E402
from orchestrator.intake.records import upsert_records  # noqa: E402
from orchestrator.models import Account  # noqa: E402
from tests.fakes.salesforce import FakeSalesforce, iter_accounts, seed_users  # noqa: E402

FIELDS = "Id, IsDeleted, SystemModstamp, AnnualRevenue, Industry, Name, OwnerId, Website"


def _connector(fake: FakeSalesforce) -> SalesforceConnector:
    refresh = fake.register_refresh_token(client_id="bench", client_secret="bench")
    config = SalesforceConnector.config_schema().load({
        "auth": "refresh_token", "login_url": fake.url, "ca_bundle": str(fake.ca_bundle), "client_id": "bench",
        "client_secret": "bench", "refresh_token": refresh, "timeout": 120})
    return SalesforceConnector(config=config, context=ConnectorContext(name="salesforce", settings=None))  # type: ignore[arg-type]


def _baseline(fake: FakeSalesforce) -> tuple[float, float, int]:
    from simple_salesforce import Salesforce  # the connector package is the only importer in the product

    http = requests.Session()
    http.verify, http.trust_env = str(fake.ca_bundle), False
    sf = Salesforce(session_id=fake.access_token(), instance_url=fake.url, session=http)
    started, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in sf.query_all_iter(f"SELECT {FIELDS} FROM Account ORDER BY SystemModstamp, Id",
                                             include_deleted=True))
    return time.perf_counter() - started, time.process_time() - cpu, count


def _sync(fake: FakeSalesforce, folder: Path) -> tuple[float, float, int, int, int]:
    engine = make_engine(parse_database_url(f"sqlite:///{folder / 'bench.db'}"))
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    connector = _connector(fake)
    tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    calls = 0
    for page in connector.pull(cursor=None):
        with unit_of_work(sessions) as session:
            upsert_records(session, source="salesforce", records=page.records, now=connector.context.clock())
        calls += page.api_calls
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with unit_of_work(sessions, read_only=True) as session:
        stored = session.scalar(select(func.count()).select_from(Account)) or 0
    connector.close()
    engine.dispose()
    return elapsed, cpu, stored, peak, calls


def _write_back(fake: FakeSalesforce, tasks: int, owner_id: str, account_id: str) -> int:
    connector = _connector(fake)
    messages = [Outbound(id=n, kind="crm.create_task", idempotency_key=f"task:{n}:create", attempts=0,
                         payload={"subject": f"Task {n}", "description": "brief", "owner_email": "rep0@acme.example",
                                  "priority": "normal", "status": "open", "due_date": "2026-12-04"},
                         account=AccountRef(id=1, name="A", domain=None, external_ids={"salesforce": account_id}),
                         task=TaskRef(id=n, title="t", crm_id=None, crm_source=None, owner_email="rep0@acme.example",
                                      owner_external_ids={"salesforce": owner_id}))
                for n in range(1, tasks + 1)]
    before = fake.org.api_calls()
    for start in range(0, len(messages), connector.max_batch):
        results = connector.push(messages[start:start + connector.max_batch])
        assert all(result.outcome == "delivered" for result in results), "write-back failed"
    connector.close()
    return fake.org.api_calls() - before


@click.command()
@click.option("--accounts", default=100_000, show_default=True, help="Accounts in the fake org.")
@click.option("--tasks", default=1000, show_default=True, help="Tasks written back.")
def main(accounts: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="handoff-bench-sf-") as tmp, FakeSalesforce(tmp_dir=Path(tmp)) as fake:
        users = seed_users(fake.org, count=20)
        owner_ids = [user["Id"] for user in users]
        for values in iter_accounts(accounts, owner_ids):
            fake.org.insert("Account", values)
        baseline, baseline_cpu, rows = _baseline(fake)
        sync_time, sync_cpu, stored, peak, calls = _sync(fake, Path(tmp))
        account_id = next(iter(fake.org.records["Account"]))
        api_calls = _write_back(fake, tasks, owner_ids[1], account_id)
    minimum = math.ceil(tasks / 200)
    click.echo(f"accounts in the org            {accounts:>12,}")
    # CPU seconds are this process's: the client and the in-process fake server together.
    click.echo(f"(a) bare query_all paging      {rows / baseline:>12,.0f} rows/s  ({baseline:.1f} s wall, "
               f"{baseline_cpu:.1f} s CPU)")
    click.echo(f"(b) connector sync + upsert    {stored / sync_time:>12,.0f} accounts/s  ({sync_time:.1f} s wall, "
               f"{sync_cpu:.1f} s CPU, {stored:,} stored, {calls} API calls)")
    click.echo(f"    ratio (b)/(a)              {(stored / sync_time) / (rows / baseline):>12.3f}")
    click.echo(f"    peak memory of (b)         {peak / 2**20:>12.1f} MiB (tracemalloc)")
    click.echo(f"(c) write-back of {tasks} tasks    {api_calls * 100 / tasks:>12.2f} API calls per 100 tasks "
               f"(minimum {minimum * 100 / tasks:.2f}: one per 200)")


if __name__ == "__main__":
    main()
