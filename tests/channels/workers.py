"""Delivery worker processes for the channel tests (module level, so `spawn` can import them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from connectors.registry import load_registry
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, parse_database_url
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing


def run_worker(url: str, connectors: dict[str, Any], now: str, worker: str, lease_seconds: float,
               limit: int) -> None:
    """Deliver through the real connectors until nothing is due."""
    settings = Settings(database_url=parse_database_url(url), exception_owner="ops-lead@acme.example",
                        connectors=connectors)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    install_routing(sessions, settings.connectors)
    registry = load_registry()
    while deliver_due(sessions=sessions, settings=settings, registry=registry, now=datetime.fromisoformat(now),
                      worker_id=worker, lease=timedelta(seconds=lease_seconds), limit=limit).claimed:
        pass
    engine.dispose()
