"""Every route against every role: allowed or denied, object-level checks, segregation of duties."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from orchestrator.db import unit_of_work
from orchestrator.models import Signal, Task

ROLES = ["admin", "leader", "sam", "ingest", None]

SIGNAL = {"type": "product.usage", "account": {"domain": "sams.example"}, "occurred_at": "2026-11-23T14:00:00Z",
          "payload": {"active_users": 3}}


def _routes(ids: dict[str, int]) -> list[tuple[str, str, dict, set[str | None]]]:
    """(method, path, body, roles allowed) for every route."""
    readers = {"admin", "leader", "sam"}
    return [
        ("GET", "/tasks", {}, readers),
        ("GET", f"/tasks/{ids['sams_task']}", {}, readers),
        ("POST", f"/tasks/{ids['sams_task']}/ack", {}, {"admin", "sam"}),
        ("POST", f"/tasks/{ids['sams_task']}/wait", {"reason": "waiting on the customer"}, {"admin", "sam"}),
        ("POST", f"/tasks/{ids['sams_task']}/resume", {}, {"admin", "sam"}),
        ("GET", "/journeys", {}, readers),
        ("GET", f"/journeys/{ids['journey']}", {}, readers),
        ("POST", f"/journeys/{ids['journey']}/end", {"reason": "test"}, {"admin"}),
        ("GET", "/exceptions", {}, readers),
        ("GET", "/accounts", {}, readers),
        ("GET", f"/accounts/{ids['own']}", {}, readers),
        ("GET", f"/accounts/{ids['own']}/timeline", {}, readers),
        ("GET", "/playbooks", {}, readers),
        ("GET", "/reports/sla", {}, {"admin", "leader"}),
        ("GET", "/reports/sla?format=csv&by=team", {}, {"admin", "leader"}),
        ("POST", "/signals", SIGNAL, {"admin", "ingest"}),
        # last: it changes who owns the task the routes above read
        ("POST", f"/tasks/{ids['sams_task']}/reassign", {"owner_email": "rita@acme.example", "reason": "cover"},
         {"admin"}),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_route_allows_exactly_its_roles(world, role):
    for method, path, body, allowed in _routes(world.ids):
        response = world.call(method, path, role, json=body if method == "POST" else None)
        if role is None:
            assert response.status_code == 401, (method, path)
        elif role in allowed:
            assert response.status_code < 400, (method, path, role, response.get_json())
        else:
            assert response.status_code == 403, (method, path, role, response.status_code)
        assert response.mimetype in ("application/json", "application/problem+json", "text/csv")


def test_a_rep_reading_or_deciding_another_reps_task_gets_404(world):
    ritas = world.ids["ritas_task"]
    assert world.call("GET", f"/tasks/{ritas}", "sam").status_code == 404
    assert world.call("POST", f"/tasks/{ritas}/decision", "sam", json={"outcome": "done"}).status_code == 404
    assert world.call("POST", f"/tasks/{ritas}/ack", "sam").status_code == 404
    assert world.call("GET", f"/accounts/{world.ids['other']}", "sam").status_code == 404
    listed = world.call("GET", "/tasks", "sam").get_json()["items"]
    assert {t["id"] for t in listed} == {world.ids["sams_task"]}
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, ritas).status == "open"


def test_a_requester_cannot_approve_their_own_request_even_as_the_managers_peer(world):
    approval = world.ids["approval"]
    # Sam cannot see it (assigned to his manager) ...
    assert world.call("POST", f"/tasks/{approval}/decision", "sam", json={"outcome": "approved"}).status_code == 404
    # ... and an admin key bound to Sam is still Sam: segregation of duties wins over the role.
    with unit_of_work(world.runtime.sessions) as session:
        from orchestrator.apikeys import create_key
        from orchestrator.models import Owner
        sam = session.scalars(select(Owner).where(Owner.email == "sam@acme.example")).one()
        sams_admin = create_key(session, name="sam-admin", role="admin", owner=sam, now=world.runtime.clock.now())
    world.keys["sams_admin"] = sams_admin
    refused = world.call("POST", f"/tasks/{approval}/decision", "sams_admin", json={"outcome": "approved"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "requested" in refused.get_json()["detail"]
    # The manager, who is the assignee, may.
    approved = world.call("POST", f"/tasks/{approval}/decision", "mia", json={"outcome": "approved"})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["completed_by"] == "mia@acme.example"


def test_a_manager_may_decide_their_reports_task_and_a_peer_may_not(world):
    sams = world.ids["sams_task"]
    with unit_of_work(world.runtime.sessions) as session:
        # Rita sees only her own tasks, so she cannot even find Sam's.
        assert session.get(Task, sams).owner.email == "sam@acme.example"
    assert world.call("POST", f"/tasks/{sams}/decision", "rita", json={"outcome": "done"}).status_code == 404
    response = world.call("POST", f"/tasks/{sams}/decision", "admin", json={"outcome": "done"})
    assert response.status_code == 200
    assert response.get_json()["completed_by"] == "apikey:revops"


def test_a_second_decision_on_one_task_gets_409(world):
    sams = world.ids["sams_task"]
    first = world.call("POST", f"/tasks/{sams}/decision", "sam", json={"outcome": "done"})
    second = world.call("POST", f"/tasks/{sams}/decision", "admin", json={"outcome": "done"})
    assert (first.status_code, second.status_code) == (200, 409)
    assert second.get_json()["type"] == "/problems/conflict"


def test_a_stale_etag_is_refused_with_412(world):
    sams = world.ids["sams_task"]
    read = world.call("GET", f"/tasks/{sams}", "sam")
    tag = read.headers["ETag"]
    assert world.call("POST", f"/tasks/{sams}/ack", "sam", headers={"If-Match": tag}).status_code == 200
    stale = world.call("POST", f"/tasks/{sams}/decision", "sam", json={"outcome": "done"}, headers={"If-Match": tag})
    assert stale.status_code == 412


def test_a_revoked_or_forged_key_is_refused(world):
    forged = world.keys["sam"][:-4] + "abcd"
    world.keys["forged"] = forged
    assert world.call("GET", "/tasks", "forged").status_code == 401
    with unit_of_work(world.runtime.sessions) as session:
        from orchestrator.apikeys import revoke_key
        revoke_key(session, prefix=world.keys["sam"].split("_")[1], now=world.runtime.clock.now())
    assert world.call("GET", "/tasks", "sam").status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({**SIGNAL, "occurred_at": "2026-11-23T14:00:00"}, "occurred_at"),
    ({**SIGNAL, "type": "Bad Type"}, "type"),
    ({**SIGNAL, "account": {"domain": "x.example", "id": 3}}, "account"),
    ({k: v for k, v in SIGNAL.items() if k != "account"}, "account"),
])
def test_a_malformed_signal_is_a_422_naming_the_field_and_nothing_is_stored(world, body, field):
    response = world.call("POST", "/signals", "ingest", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["field"] == field
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Signal).where(Signal.source == "api")) == 0


def test_a_batch_gets_a_result_per_item_and_is_idempotent(world):
    batch = [SIGNAL, {**SIGNAL, "type": "nope"}, {**SIGNAL, "payload": {"active_users": 4}}]
    first = world.call("POST", "/signals", "ingest", json=batch).get_json()
    assert (first["accepted"], first["rejected"], first["duplicates"]) == (2, 1, 0)
    assert first["results"][1]["field"] == "type"
    again = world.call("POST", "/signals", "ingest", json=batch).get_json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)


@pytest.mark.parametrize(("path", "query", "field"), [
    ("/tasks", "limit=0", "limit"),
    ("/tasks", "owner_id=99999999999999", "owner_id"),
    ("/tasks", "status=bogus", "status"),
    ("/journeys", "after=-1", "after"),
])
def test_bad_query_parameters_are_a_problem_naming_the_field(world, path, query, field):
    response = world.call("GET", f"{path}?{query}", "admin")
    assert response.status_code == 422
    assert response.get_json()["field"] == field


def test_pagination_walks_every_task_once(world):
    seen, cursor = [], None
    while True:
        page = world.call("GET", "/tasks?limit=1" + (f"&after={cursor}" if cursor else ""), "admin").get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted({world.ids["approval"], world.ids["sams_task"], world.ids["ritas_task"]})


def test_health_ready_metrics_and_openapi_need_no_key(world):
    assert world.call("GET", "/healthz", None).status_code == 200
    ready = world.call("GET", "/readyz", None)
    assert ready.status_code == 200, ready.get_json()
    metrics = world.call("GET", "/metrics", None).get_data(as_text=True)
    assert "handoff_tasks_open" in metrics and "handoff_signals_pending" in metrics
    spec = world.call("GET", "/openapi.json", None).get_json()
    assert "/tasks/{task_id}/decision" in spec["paths"]
    docs = world.call("GET", "/docs", None).get_data(as_text=True)
    assert "/tasks/{task_id}/decision" in docs and "cdn" not in docs.lower()


def test_two_concurrent_decisions_on_one_task_one_wins_the_other_gets_409(world):
    import threading

    sams = world.ids["sams_task"]
    barrier, codes = threading.Barrier(2), []
    # Two clients of one app, as two browser tabs or two people would be.
    clients = [world.client.application.test_client() for _ in range(2)]

    def decide(client, key):
        barrier.wait(10)
        response = client.post(f"/tasks/{sams}/decision", json={"outcome": "done"},
                               headers={"Authorization": f"Bearer {world.keys[key]}"})
        codes.append(response.status_code)

    pairs = zip(clients, ["sam", "admin"], strict=True)
    threads = [threading.Thread(target=decide, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 409]
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        from orchestrator.models import AuditEvent
        completions = session.scalars(select(AuditEvent).where(AuditEvent.action == "task_completed")).all()
        assert len(completions) == 1


def test_a_nul_in_a_query_parameter_or_a_key_is_a_clear_4xx_on_both_databases(world):
    response = world.call("GET", "/tasks?playbook=%00", "admin")
    assert (response.status_code, response.get_json()["field"]) == (400, "playbook")
    world.keys["nul"] = "hk_\x00\x00\x00\x00\x00\x00\x00\x00_secret"
    assert world.client.get("/tasks", headers={"Authorization": "Bearer hk_0000000\x00_x"}).status_code == 401


def test_a_strange_signal_body_is_refused_naming_the_field(world):
    body = '{"type": "product.usage", "account": {"domain": "sams.example"}, ' \
           '"occurred_at": "2026-11-23T14:00:00Z", "payload": {"big": ' + "9" * 5000 + "}}"
    response = world.call("POST", "/signals", "ingest", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.get_json()["field"] == "payload.big"
    deep = world.call("POST", "/signals", "ingest", data="[" * 30000 + "]" * 30000,
                      headers={"Content-Type": "application/json"})
    assert deep.status_code == 400
