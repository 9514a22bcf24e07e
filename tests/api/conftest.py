"""An app over a migrated database per backend, with a small team, their accounts, tasks and keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from orchestrator import schema
from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.models import Account, Journey, Owner, PlaybookVersion, Signal, Task
from orchestrator.runtime import Runtime
from tests.conftest import T0, create_database, drop_database

PLAYBOOK = """
id: discount
name: Discount
stage: acquire
maintainer: revops@acme.example
review_every: 365d
enroll: {on: discount.requested}
steps:
  - id: wait
    kind: wait
    for: deal.closed_won
    timeout: 14d
    on_timeout: {exit: true}
"""


@dataclass
class World:
    client: FlaskClient
    runtime: Runtime
    keys: dict[str, str]
    ids: dict[str, int]

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.open(path, method=method, headers=headers, **kwargs)


def _seed(sessions: Any) -> tuple[dict[str, str], dict[str, int]]:
    with unit_of_work(sessions) as session:
        mia = Owner(email="mia@acme.example", name="Mia Lead", role="sales-lead")
        sam = Owner(email="sam@acme.example", name="Sam Rep", role="sdr", manager=mia)
        rita = Owner(email="rita@acme.example", name="Rita Rep", role="sdr", manager=mia)
        gone = Owner(email="gone@acme.example", name="Gone", role="sdr", active=False)
        session.add_all([mia, sam, rita, gone])
        session.flush()
        own = Account(name="Sam's Co", domain="sams.example", owner=sam, stage="acquire", stage_entered_at=T0)
        other = Account(name="Rita's Co", domain="ritas.example", owner=rita, stage="acquire", stage_entered_at=T0)
        session.add_all([own, other])
        version = PlaybookVersion(playbook_id="discount", version=1, name="Discount", stage="acquire",
                                  checksum=hashlib.sha256(PLAYBOOK.encode()).hexdigest(), source_text=PLAYBOOK,
                                  source_path="discount.yaml")
        session.add(version)
        session.flush()
        # Sam asked for a discount on his own deal; the approval is his manager's.
        request = Signal(type="discount.requested", dedupe_key="d1", source="test", account_id=own.id,
                         payload={"requested_by": "sam@acme.example", "pct": 30}, occurred_at=T0, received_at=T0)
        session.add(request)
        session.flush()
        journey = Journey(account_id=own.id, playbook_id="discount", playbook_version_id=version.id,
                          enrollment_key="discount:1", trigger_signal_id=request.id, status="waiting", enrolled_at=T0)
        session.add(journey)
        session.flush()
        approval = Task(account_id=own.id, journey_id=journey.id, owner_id=mia.id, kind="approval",
                        title="Approve 30% for Sam's Co", due_at=T0 + timedelta(days=1))
        sams_task = Task(account_id=own.id, owner_id=sam.id, kind="action", title="Call Sam's Co",
                         due_at=T0 + timedelta(days=1))
        ritas_task = Task(account_id=other.id, owner_id=rita.id, kind="action", title="Call Rita's Co",
                          due_at=T0 + timedelta(days=1))
        session.add_all([approval, sams_task, ritas_task])
        session.flush()
        keys = {
            "admin": create_key(session, name="revops", role="admin", now=T0),
            "leader": create_key(session, name="vp", role="leader", now=T0),
            "sam": create_key(session, name="sam", role="rep", owner=sam, now=T0),
            "rita": create_key(session, name="rita", role="rep", owner=rita, now=T0),
            "mia": create_key(session, name="mia", role="rep", owner=mia, now=T0),
            "ingest": create_key(session, name="product", role="ingest", now=T0),
        }
        ids = {"approval": approval.id, "sams_task": sams_task.id, "ritas_task": ritas_task.id,
               "own": own.id, "other": other.id, "journey": journey.id}
    return keys, ids


@pytest.fixture
def world(backend: str, tmp_path: Any) -> Iterator[World]:
    url = create_database(backend, tmp_path)
    engine: Engine = make_engine(url)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=engine.url, exception_owner="ops@acme.example")
    runtime = Runtime(settings=settings, engine=engine, sessions=sessions, clock=FrozenClock(T0 + timedelta(hours=1)))
    keys, ids = _seed(sessions)
    app = create_app(runtime=runtime)
    app.testing = True
    yield World(client=app.test_client(), runtime=runtime, keys=keys, ids=ids)
    engine.dispose()
    drop_database(url)
