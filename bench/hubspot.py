"""HubSpot connector: API calls per 100 tasks written back, and sync throughput, against the fake HubSpot.

    python bench/hubspot.py [--tasks N] [--companies N]

Everything talks HTTPS to the fake CRM v3 server of the test suite (tests/fakes/hubspot.py) through
the real hubspot-api-client, in one run:

(a) write-back: N tasks through `push` in batches of 100, (1) on a steady day and (2) with every 10th
    batch create's answer lost after HubSpot committed it. Prints API calls per 100 tasks against the
    minimum, one batch create per 100.
(b) sync: 50,000 companies. Baseline: bare client paging (`basic_api.get_page`, 100 a page, the
    client's own models), the least any sync must do. Then the connector's pull of the same records,
    and the sync: the pull with every page applied through `connectors.sync.apply_page` (bulk
    upsert, signals) into a scratch SQLite database and committed (`--upsert N` stops after N
    companies). Prints records per second and the ratio to the baseline. Rate limits are raised on both sides so the
    figures measure the software, not HubSpot's 100-requests-per-10-s floor (at that limit 50,000
    companies take at least 50 s whatever the client).

It asserts nothing about speed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the SDK: keep its own folder off the path so `import hubspot` finds the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from hubspot import HubSpot  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from urllib3.util.retry import Retry  # noqa: E402

from connectors.base import AccountRef, ConnectorContext, Outbound, TaskRef  # noqa: E402
from connectors.hubspot import HubSpotConnector  # noqa: E402
from connectors.sync import SyncReport, apply_page  # noqa: E402
from orchestrator import schema  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url  # noqa: E402
from orchestrator.models import Account  # noqa: E402
from tests.fakes.hubspot import FakeHubSpot  # noqa: E402

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
FAST = 1_000_000  # requests per 10 s on both sides when measuring software speed


def _settings(url: str) -> Settings:
    return Settings(database_url=parse_database_url(url), exception_owner="ops@acme.example")


def _connector(fake: FakeHubSpot, settings: Settings, **config: object) -> HubSpotConnector:
    context = ConnectorContext(name="hubspot", settings=settings, clock=lambda: datetime.now(UTC), timeout=30.0)
    return HubSpotConnector(config={"access_token": "test-token", "host": fake.url, "ca_bundle": fake.ca_path,
                                    **config}, context=context)


def _messages(companies: list[str], owner: str, start: int, count: int) -> list[Outbound]:
    out = []
    for n in range(start, start + count):
        out.append(Outbound(
            id=n, kind="crm.create_task", idempotency_key=f"task:{n}:create", attempts=0, target="crm",
            connector="hubspot", created_at=NOW,
            payload={"task_id": n, "subject": f"Renewal call {n}", "description": "brief", "priority": "high",
                     "status": "open", "due_at": (NOW + timedelta(days=2)).isoformat()},
            account=AccountRef(id=n, name="Acme", domain=None, external_ids={"hubspot": companies[n % len(companies)]}),
            task=TaskRef(id=n, title="t", crm_id=None, crm_source=None, owner_email=None,
                         owner_external_ids={"hubspot": owner})))
    return out


def write_back(tasks: int, *, lose_every: int | None) -> tuple[float, int, int]:
    """(calls per 100 tasks, tasks in HubSpot, duplicates)"""
    with FakeHubSpot() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.add_property("tasks", "handoff_key", unique=True)
        companies = [fake.add("companies", {"name": f"Co {i}"}) for i in range(50)]
        owner = fake.add_owner(email="rep@acme.example")
        connector = _connector(fake, _settings(f"sqlite:///{tmp}/x.db"))
        before = fake.count()
        for batch_number, start in enumerate(range(0, tasks, 100)):
            if lose_every and batch_number % lose_every == lose_every - 1:
                fake.drop("POST", r"/tasks/batch/create$", after_commit=True)
            results = connector.push(_messages(companies, owner, start + 1, min(100, tasks - start)))
            assert all(r.outcome == "delivered" for r in results), results[:3]
        calls = fake.count() - before
        keys = [t.properties.get("handoff_key") for t in fake.live("tasks")]
        connector.close()
        return calls / (tasks / 100), len(keys), len(keys) - len(set(keys))


def sync_throughput(companies: int, upsert: int) -> dict[str, float]:
    """records per second: bare paging, connector pull, connector pull + upsert into SQLite (first `upsert`)."""
    rates: dict[str, float] = {}
    with FakeHubSpot(ten_secondly_limit=FAST, secondly_search_limit=FAST) as fake, \
            tempfile.TemporaryDirectory() as tmp:
        owner = fake.add_owner(email="rep@acme.example", first="Rae", last="Rep")
        for i in range(companies):
            fake.add("companies", {"name": f"Company {i}", "domain": f"company{i}.example", "industry": "Software",
                                   "annualrevenue": str(1000 + i), "hubspot_owner_id": owner})
        properties = ["name", "domain", "industry", "annualrevenue", "hubspot_owner_id", "hs_lastmodifieddate"]

        client = HubSpot(access_token="test-token", host=fake.url, ssl_ca_cert=fake.ca_path, retry=Retry(0))
        api = client.crm.companies.basic_api
        started = time.perf_counter()
        seen, after = 0, None
        while True:
            page = api.get_page(limit=100, after=after, properties=properties)
            seen += len(page.results)
            after = page.paging.next.after if page.paging and page.paging.next else None
            if after is None:
                break
        rates["bare client paging"] = seen / (time.perf_counter() - started)
        assert seen == companies

        settings = _settings(f"sqlite:///{tmp}/sync.db")
        connector = _connector(fake, settings, requests_per_10s=10_000, search_per_second=100)
        started = time.perf_counter()
        pulled = sum(len(p.records) for p in connector.pull(cursor=None, full=True) if p.object_type == "companies")
        rates["connector pull"] = pulled / (time.perf_counter() - started)
        assert pulled == companies

        engine = make_engine(settings.database_url)
        schema.upgrade(engine)
        sessions = make_session_factory(engine)
        limit = upsert or companies
        report = SyncReport(name="hubspot")
        started = time.perf_counter()
        applied = 0
        for page in connector.pull(cursor=None, full=True):
            if page.object_type == "companies" and applied >= limit:
                break
            with sessions.begin() as session:  # what connectors.sync does with each page
                apply_page(session, settings=settings, name="hubspot", page=page, now=NOW, report=report)
            applied += len(page.records) if page.object_type == "companies" else 0
        elapsed = time.perf_counter() - started
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Account)) or 0
        label = "all" if stored >= companies else f"first {stored}"
        rates[f"sync: pull + upsert into SQLite ({label})"] = stored / elapsed
        assert stored >= min(limit, companies), stored
        connector.close()
        engine.dispose()
    return rates


@click.command()
@click.option("--tasks", default=10_000, show_default=True, help="tasks written back")
@click.option("--companies", default=50_000, show_default=True, help="companies synced")
@click.option("--upsert", default=0, show_default=True, help="upsert only the first N companies (0: all)")
def main(tasks: int, companies: int, upsert: int) -> None:
    steady, count, doubles = write_back(tasks, lose_every=None)
    print(f"write-back, {tasks} tasks: {steady:.2f} API calls per 100 tasks (minimum 1.00: one batch create "
          f"per 100); in HubSpot {count}, duplicates {doubles}")
    faulty, count, doubles = write_back(tasks, lose_every=10)
    print(f"write-back with every 10th batch's answer lost after commit: {faulty:.2f} calls per 100 tasks "
          f"(minimum 1.00); in HubSpot {count}, duplicates {doubles}")
    rates = sync_throughput(companies, upsert)
    base = rates["bare client paging"]
    print(f"sync, {companies} companies (records per second):")
    for name, rate in rates.items():
        print(f"  {name:<48} {rate:>9.0f}/s   {rate / base:5.2f}x bare client paging")


if __name__ == "__main__":
    main()
