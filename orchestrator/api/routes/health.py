"""/healthz, /readyz and /metrics: for load balancers and Prometheus (no key needed, no customer data)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text

from orchestrator import schema
from orchestrator.api.app import runtime
from orchestrator.api.problems import problem
from orchestrator.db import unit_of_work
from orchestrator.models import OPEN_STATUSES, ExceptionItem, OutboxMessage, OutboxStatus, Signal, Task
from orchestrator.runtime import Runtime

blp = Blueprint("health", __name__, description="Liveness, readiness and metrics.")


class Status(Schema):
    status = fields.String(required=True)
    schema = fields.String()


@blp.route("/healthz", methods=["GET"])
@blp.doc(security=[])
@blp.response(200, Status)
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.doc(security=[])
@blp.response(200, Status)
def readyz() -> Any:
    """The database answers and its schema is at the latest migration."""
    rt = runtime()
    try:
        with unit_of_work(rt.sessions, read_only=True) as session:
            session.execute(text("SELECT 1"))
        current, head = schema.current_revision(rt.engine), schema.head_revision(rt.engine)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not ready", said without detail
        return problem(status=503, title="Service Unavailable", detail=f"database: {type(exc).__name__}")
    if current != head:
        return problem(status=503, title="Service Unavailable", detail=f"schema at {current}, latest is {head}")
    return {"status": "ready", "schema": current}


class _StateCollector:
    """Read on each scrape: what is pending, open and breached right now."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.rt.clock.now()
        with unit_of_work(self.rt.sessions, read_only=True) as session:
            pending = session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None)))
            yield GaugeMetricFamily("handoff_signals_pending", "Signals waiting for the engine", value=pending or 0)
            tasks = GaugeMetricFamily("handoff_tasks_open", "Open tasks by SLA state", labels=["sla_state"])
            open_ = Task.status.in_([str(s) for s in OPEN_STATUSES])
            breached = session.scalar(select(func.count()).select_from(Task).where(open_, Task.due_at < now)) or 0
            total = session.scalar(select(func.count()).select_from(Task).where(open_)) or 0
            tasks.add_metric(["breached"], breached)
            tasks.add_metric(["on_track"], total - breached)
            yield tasks
            depth = GaugeMetricFamily("handoff_outbox_pending", "Outbox messages not yet delivered", labels=["target"])
            age = GaugeMetricFamily("handoff_outbox_oldest_seconds", "Age of the oldest pending message",
                                    labels=["target"])
            for target, count, oldest in session.execute(
                    select(OutboxMessage.target, func.count(), func.min(OutboxMessage.created_at))
                    .where(OutboxMessage.status == OutboxStatus.PENDING).group_by(OutboxMessage.target)):
                depth.add_metric([target], count)
                age.add_metric([target], (now - oldest).total_seconds() if oldest else 0)
            yield depth
            yield age
            items = session.scalar(select(func.count()).select_from(ExceptionItem)
                                   .where(ExceptionItem.status == "open")) or 0
            yield GaugeMetricFamily("handoff_exceptions_open", "Open exception items", value=items)


@blp.route("/metrics", methods=["GET"])
@blp.doc(security=[], responses={"200": {
    "description": "Prometheus text format",
    "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    """Prometheus metrics."""
    registry = CollectorRegistry()
    registry.register(_StateCollector(runtime()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
