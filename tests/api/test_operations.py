"""What an operator relies on: size and rate limits, readiness, metrics, request logs, key management."""

from __future__ import annotations

import json
import logging
import re

from click.testing import CliRunner
from sqlalchemy import func, select, text

from orchestrator.api import create_app
from orchestrator.api.app import MAX_BODY_BYTES
from orchestrator.cli import main
from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, JobRun, OutboxMessage, Signal, SlaEvent, Task


def _count(world, model) -> int:
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_body_over_the_limit_is_413_unread_and_nothing_is_stored(world):
    big = b'{"reason": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for path, key in (("/signals", "ingest"), (f"/tasks/{world.ids['sams_task']}/wait", "sam")):
        response = world.call("POST", path, key, data=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, path
        assert response.mimetype == "application/problem+json"
    assert (_count(world, Signal), _count(world, SlaEvent), _count(world, AuditEvent)) == (1, 0, 0)


def test_each_key_has_its_own_budget_and_naming_a_prefix_spends_none_of_it(world):
    app = create_app(runtime=world.runtime, rate_limit="3 per minute")
    client = app.test_client()

    def get(key: str) -> int:
        return client.get("/tasks", headers={"Authorization": f"Bearer {key}"}).status_code

    sam, rita = world.keys["sam"], world.keys["rita"]
    forged = "_".join(sam.split("_", 2)[:2]) + "_not-the-secret"
    assert [get(forged) for _ in range(2)] == [401, 401]  # the caller's address budget, not Sam's
    assert [get(sam) for _ in range(4)] == [200, 200, 200, 429]
    limited = client.get("/tasks", headers={"Authorization": f"Bearer {sam}"})
    assert limited.mimetype == "application/problem+json" and limited.headers["Retry-After"]
    assert get(rita) == 200


def test_readyz_says_not_ready_while_the_schema_is_behind(world):
    assert world.call("GET", "/readyz", None).status_code == 200
    with world.runtime.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0032_exception_groups'"))
    response = world.call("GET", "/readyz", None)
    assert response.status_code == 503
    assert "schema at 0032_exception_groups, latest is" in response.get_json()["detail"]


def _samples(body: str) -> dict[str, float]:
    found = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_report_signals_tasks_by_sla_state_breaches_outbox_connector_errors_and_jobs(world):
    from datetime import timedelta

    now = world.runtime.clock.now()
    with unit_of_work(world.runtime.sessions) as session:
        session.get(Task, world.ids["ritas_task"]).due_at = now - timedelta(minutes=5)  # breached now
        session.get(Task, world.ids["approval"]).paused_at = now  # waiting on the customer
        session.add(SlaEvent(task_id=world.ids["ritas_task"], kind="due_breached", at=now))
        session.add_all([
            OutboxMessage(kind="crm.update_field", target="crm", connector="hubspot", idempotency_key="m1",
                          created_at=now - timedelta(minutes=10)),
            OutboxMessage(kind="crm.update_field", target="crm", connector="hubspot", idempotency_key="m2",
                          created_at=now - timedelta(minutes=2), attempts=2, last_error="HTTP 502"),
            OutboxMessage(kind="notify.email", target="email", connector="smtp", idempotency_key="m3",
                          status="dead", attempts=8, last_error="550 no such user"),
        ])
        session.add(JobRun(job_id="sla-sweep", last_duration_ms=1500, runs=7, failed_runs=1))
    samples = _samples(world.call("GET", "/metrics", None).get_data(as_text=True))
    assert samples['handoff_signals_ingested_total{source="test"}'] == 1
    assert samples['handoff_tasks_open{sla_state="breached"}'] == 1
    assert samples['handoff_tasks_open{sla_state="paused"}'] == 1
    assert samples['handoff_tasks_open{sla_state="on_track"}'] == 1
    assert samples['handoff_tasks_open{sla_state="at_risk"}'] == 0
    assert samples['handoff_sla_breaches_total{kind="due"}'] == 1
    assert samples['handoff_sla_breaches_total{kind="ack"}'] == 0
    assert samples['handoff_outbox_pending{connector="hubspot",target="crm"}'] == 2
    assert samples['handoff_outbox_oldest_seconds{connector="hubspot",target="crm"}'] == 600
    assert samples['handoff_connector_errors{connector="hubspot",state="retrying",target="crm"}'] == 1
    assert samples['handoff_connector_errors{connector="smtp",state="dead",target="email"}'] == 1
    assert samples['handoff_job_last_duration_seconds{job="sla-sweep"}'] == 1.5
    assert samples['handoff_job_runs_total{job="sla-sweep"}'] == 7
    assert samples['handoff_job_failed_runs_total{job="sla-sweep"}'] == 1


def test_each_request_logs_one_json_line_with_its_id_and_never_a_key_a_body_or_a_query(world, caplog):
    key = world.keys["sam"]
    caplog.set_level(logging.INFO, logger="orchestrator.api")
    response = world.call("POST", f"/tasks/{world.ids['sams_task']}/wait?secret=q-value", "sam",
                          json={"reason": "customer-secret-reason"}, headers={"X-Request-Id": "req-123"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "req-123"
    world.call("GET", "/tasks", None)  # refused: still one line, with a fresh id
    lines = [record.getMessage() for record in caplog.records if record.name == "orchestrator.api"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert (first["request_id"], first["route"], first["status"], first["method"]) == (
        "req-123", "/tasks/<id:task_id>/wait", 200, "POST")
    assert first["key"] is not None and second["key"] is None and second["status"] == 401
    assert re.fullmatch(r"[0-9a-f]{32}", second["request_id"])
    everything = "\n".join(record.getMessage() for record in caplog.records)
    secret = key.split("_", 2)[2]
    assert secret not in everything and "customer-secret-reason" not in everything and "q-value" not in everything


def test_apikeys_create_shows_the_key_once_list_never_and_revoke_ends_it(world):
    env = {"HANDOFF_DATABASE_URL": world.runtime.settings.database_url.render_as_string(hide_password=False),
           "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"}
    runner = CliRunner()
    created = runner.invoke(main, ["apikeys", "create", "--role", "rep", "--name", "sam's laptop",
                                   "--owner", "sam@acme.example"], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert re.fullmatch(r"hk_[0-9a-f]{8}_\S{40,}", key)
    assert "not shown again" in created.stderr
    world.keys["new"] = key
    assert world.call("GET", "/tasks", "new").status_code == 200
    listed = runner.invoke(main, ["apikeys", "list"], env=env)
    prefix = key.split("_")[1]
    assert listed.exit_code == 0 and f"hk_{prefix}  rep" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout and "sam's laptop" in listed.stdout
    assert runner.invoke(main, ["apikeys", "create", "--role", "rep", "--name", "x"], env=env).exit_code != 0
    revoked = runner.invoke(main, ["apikeys", "revoke", f"hk_{prefix}"], env=env)
    assert revoked.exit_code == 0 and revoked.stdout == f"hk_{prefix} revoked\n"
    assert world.call("GET", "/tasks", "new").status_code == 401
    assert "revoked" in runner.invoke(main, ["apikeys", "list"], env=env).stdout


def test_every_list_filters_and_a_bad_filter_names_itself(world):
    ids = world.ids
    world.call("POST", f"/tasks/{ids['sams_task']}/ack", "sam")

    def listed(path: str, key: str = "admin") -> list[int]:
        response = world.call("GET", path, key)
        assert response.status_code == 200, (path, response.get_json())
        return [item["id"] for item in response.get_json()["items"]]

    assert listed("/accounts?domain=RITAS.example") == [ids["other"]]
    assert listed("/accounts?stage=acquire") == [ids["own"], ids["other"]]
    assert listed("/accounts?segment=enterprise") == []
    assert listed("/accounts?domain=ritas.example", key="sam") == []  # a rep's filter stays within their own
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        acked = session.scalars(select(AuditEvent.id).where(AuditEvent.action == "task_acknowledged")).all()
    assert listed(f"/accounts/{ids['own']}/timeline?action=task_acknowledged") == acked
    assert listed(f"/accounts/{ids['own']}/timeline?playbook=nope") == []
    assert listed(f"/journeys?account_id={ids['own']}&status=waiting&playbook=discount") == [ids["journey"]]
    assert listed("/exceptions?status=open&category=no_assignee") == []
    assert listed(f"/journeys/{ids['journey']}/steps?overridable=true") == []
    for path, field in (("/accounts?owner_id=0", "owner_id"), ("/accounts?domain=" + "x" * 300, "domain"),
                        (f"/accounts/{ids['own']}/timeline?journey_id=-3", "journey_id"),
                        (f"/journeys/{ids['journey']}/steps?overridable=maybe", "overridable"),
                        ("/exceptions?status=closed", "status")):
        response = world.call("GET", path, "admin")
        assert (response.status_code, response.get_json()["field"]) == (422, field), path
