"""/healthz, /readyz and /metrics: for load balancers and Prometheus (no key needed, no customer data)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.api.app import runtime
from orchestrator.api.problems import problem
from orchestrator.db import unit_of_work
from orchestrator.models import (
    OPEN_STATUSES,
    ExceptionItem,
    JobRun,
    OutboxMessage,
    OutboxStatus,
    Signal,
    SlaEvent,
    SlaEventKind,
    SlaState,
    Task,
)
from orchestrator.runtime import Runtime
from orchestrator.work.sla import state_condition

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
    """Read from the database on each scrape, so every API replica and worker reports the same figures.

    Counts that only grow (signals ingested, breaches, job runs) are counters read from the rows
    that record them; what is pending or open right now is a gauge. No customer data: labels are
    SLA states, targets, connector and job names, signal sources.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = self.rt.clock.now()
        with unit_of_work(self.rt.sessions, read_only=True) as session:
            pending = session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None)))
            yield GaugeMetricFamily("handoff_signals_pending", "Signals waiting for the engine", value=pending or 0)
            ingested = CounterMetricFamily("handoff_signals_ingested", "Signals stored, by source", labels=["source"])
            for source, count in session.execute(select(Signal.source, func.count()).group_by(Signal.source)):
                ingested.add_metric([source], count)
            yield ingested
            yield self._tasks(session, now)
            breaches = CounterMetricFamily("handoff_sla_breaches", "SLA breaches recorded, ack or due",
                                           labels=["kind"])
            kinds = (SlaEventKind.ACK_BREACHED, SlaEventKind.DUE_BREACHED)
            counted = dict(session.execute(select(SlaEvent.kind, func.count()).where(SlaEvent.kind.in_(kinds))
                                           .group_by(SlaEvent.kind)).tuples().all())
            for kind in kinds:
                breaches.add_metric([str(kind).removesuffix("_breached")], counted.get(str(kind), 0))
            yield breaches
            yield from self._outbox(session, now)
            items = session.scalar(select(func.count()).select_from(ExceptionItem)
                                   .where(ExceptionItem.status == "open")) or 0
            yield GaugeMetricFamily("handoff_exceptions_open", "Open exception items", value=items)
            yield from self._jobs(session)

    def _tasks(self, session: Session, now: datetime) -> GaugeMetricFamily:
        tasks = GaugeMetricFamily("handoff_tasks_open", "Open tasks by SLA state, as of now", labels=["sla_state"])
        open_ = Task.status.in_([str(s) for s in OPEN_STATUSES])
        for state in SlaState:
            count = session.scalar(select(func.count()).select_from(Task)
                                   .where(open_, state_condition(state, now=now))) or 0
            tasks.add_metric([str(state)], count)
        return tasks

    def _outbox(self, session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
        labels = ["target", "connector"]
        depth = GaugeMetricFamily("handoff_outbox_pending", "Outbox messages not yet delivered", labels=labels)
        age = GaugeMetricFamily("handoff_outbox_oldest_seconds", "Age of the oldest pending message", labels=labels)
        errors = GaugeMetricFamily("handoff_connector_errors",
                                   "Messages whose delivery failed: retrying (pending after an error) or dead",
                                   labels=[*labels, "state"])
        for target, connector, count, oldest in session.execute(
                select(OutboxMessage.target, OutboxMessage.connector, func.count(), func.min(OutboxMessage.created_at))
                .where(OutboxMessage.status == OutboxStatus.PENDING)
                .group_by(OutboxMessage.target, OutboxMessage.connector)):
            depth.add_metric([target, connector or ""], count)
            age.add_metric([target, connector or ""], (now - oldest).total_seconds() if oldest else 0)
        failing = (OutboxMessage.status == OutboxStatus.DEAD) | (
            (OutboxMessage.status == OutboxStatus.PENDING) & OutboxMessage.last_error.is_not(None))
        for target, connector, status, count in session.execute(
                select(OutboxMessage.target, OutboxMessage.connector, OutboxMessage.status, func.count())
                .where(failing).group_by(OutboxMessage.target, OutboxMessage.connector, OutboxMessage.status)):
            errors.add_metric([target, connector or "", "dead" if status == OutboxStatus.DEAD else "retrying"], count)
        yield depth
        yield age
        yield errors

    def _jobs(self, session: Session) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        duration = GaugeMetricFamily("handoff_job_last_duration_seconds", "How long each job's last run took",
                                     labels=["job"])
        runs = CounterMetricFamily("handoff_job_runs", "Runs of each scheduled job", labels=["job"])
        failed = CounterMetricFamily("handoff_job_failed_runs", "Runs of each job that raised", labels=["job"])
        for job in session.scalars(select(JobRun).order_by(JobRun.job_id)):
            duration.add_metric([job.job_id], job.last_duration_ms / 1000)
            runs.add_metric([job.job_id], job.runs)
            failed.add_metric([job.job_id], job.failed_runs)
        yield duration
        yield runs
        yield failed


@blp.route("/metrics", methods=["GET"])
@blp.doc(security=[], responses={"200": {
    "description": "Prometheus text format",
    "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    """Prometheus metrics."""
    registry = CollectorRegistry()
    registry.register(_StateCollector(runtime()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
