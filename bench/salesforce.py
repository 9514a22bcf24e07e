"""Salesforce connector against the fake org (tests/fakes/salesforce.py), in one run:

    python bench/salesforce.py [--accounts N] [--tasks T]

(a) baseline: bare simple-salesforce `query_all_iter` paging of the same Account rows (the same
    fields, the same HTTPS server, nothing stored): the floor any sync is measured against.
(b) sync: the connector's pull (every object, derived signals) with each page applied through
    `connectors.sync.apply_page` (records upserted in bulk, signals stored) and committed, into a
    scratch SQLite database, as `connectors.sync` does; its peak memory is the growth of the
    process's resident high-water mark over the sync (`--trace-memory` adds tracemalloc's peak).
(c) write-back: T `crm.create_task` messages pushed in `max_batch` chunks; API calls counted at
    the fake org, against the minimum of one sObject Collections call per 200 Tasks.

Prints rates, the ratio (b)/(a), peak memory and calls per 100 tasks; it asserts nothing about speed.
"""

from __future__ import annotations

import math
import resource
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
from connectors.sync import SyncReport, apply_page  # noqa: E402
from orchestrator import schema  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url, unit_of_work  # noqa: E402
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


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _sync(fake: FakeSalesforce, folder: Path, *, trace: bool) -> tuple[float, float, int, int, int, int]:
    """(seconds, CPU seconds, accounts stored, peak RSS growth, tracemalloc peak or 0, API calls)."""
    url = parse_database_url(f"sqlite:///{folder / 'bench.db'}")
    engine = make_engine(url)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=url, exception_owner="ops@acme.example")
    connector = _connector(fake)
    report = SyncReport(name="salesforce")
    if trace:
        tracemalloc.start()
    rss_before = _rss()
    started, cpu = time.perf_counter(), time.process_time()
    for page in connector.pull(cursor=None):
        with unit_of_work(sessions) as session:  # what connectors.sync does with each page
            apply_page(session, settings=settings, name="salesforce", page=page, now=connector.context.clock(),
                       report=report)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # ru_maxrss is the process's high-water mark (KiB): its growth over the sync is the sync's peak.
    peak_rss = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)
    traced = 0
    if trace:
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    with unit_of_work(sessions, read_only=True) as session:
        stored = session.scalar(select(func.count()).select_from(Account)) or 0
    connector.close()
    engine.dispose()
    return elapsed, cpu, stored, peak_rss, traced, report.api_calls


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
@click.option("--trace-memory", is_flag=True, help="Also trace Python allocations of the sync (slows it down).")
def main(accounts: int, tasks: int, trace_memory: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="handoff-bench-sf-") as tmp, FakeSalesforce(tmp_dir=Path(tmp)) as fake:
        users = seed_users(fake.org, count=20)
        owner_ids = [user["Id"] for user in users]
        for values in iter_accounts(accounts, owner_ids):
            fake.org.insert("Account", values)
        # The sync first: the process's memory high-water mark then belongs to it.
        sync_time, sync_cpu, stored, peak_rss, traced, calls = _sync(fake, Path(tmp), trace=trace_memory)
        baseline, baseline_cpu, rows = _baseline(fake)
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
    click.echo(f"    peak memory of (b)         {peak_rss / 2**20:>12.1f} MiB (RSS growth over the sync, "
               "the in-process fake org's answers included)")
    if trace_memory:
        click.echo(f"    traced Python peak of (b)  {traced / 2**20:>12.1f} MiB (tracemalloc; (b) ran traced)")
    click.echo(f"(c) write-back of {tasks} tasks    {api_calls * 100 / tasks:>12.2f} API calls per 100 tasks "
               f"(minimum {minimum * 100 / tasks:.2f}: one per 200)")


if __name__ == "__main__":
    main()
