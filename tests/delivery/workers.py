"""Worker processes for the multi-process delivery tests (module level, so `spawn` can import them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, parse_database_url
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from tests.delivery import fakes


def settings_for(url: str, **config: Any) -> Settings:
    return Settings(database_url=parse_database_url(url), exception_owner="ops-lead@example.com",
                    connectors={"fakecrm": {"default_crm": True, **config}})


def run_worker(url: str, config: dict[str, Any], now: str, lease_seconds: float, claim_limit: int) -> None:
    """Deliver until nothing is due (or forever, if the connector hangs and the test kills us)."""
    settings = settings_for(url, **config)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    install_routing(sessions, settings.connectors)
    while True:
        report = deliver_due(sessions=sessions, settings=settings, registry=fakes.registry(),
                             now=datetime.fromisoformat(now), worker_id=config["worker"],
                             lease=timedelta(seconds=lease_seconds), limit=claim_limit)
        if report.claimed == 0:
            break
    engine.dispose()
