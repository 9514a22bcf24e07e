"""The playbook lifecycle over HTTP: apply, history, diff, activate, pause and resume (admin; leaders read)."""

from __future__ import annotations

from sqlalchemy import select

from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent
from tests.api.conftest import PLAYBOOK

YAML = {"Content-Type": "application/yaml"}


def test_apply_a_change_then_diff_history_and_roll_back(world):
    changed = PLAYBOOK.replace("timeout: 14d", "timeout: 21d")
    applied = world.call("POST", "/playbooks/apply?path=discount.yaml", "admin", data=changed, headers=YAML)
    assert applied.status_code == 200, applied.get_json()
    change = applied.get_json()["change"]
    assert (change["kind"], change["new_version"], change["summary"]) == ("changed", 2, ['step "wait" changed'])

    history = world.call("GET", "/playbooks/discount/history", "leader").get_json()["items"]
    assert [(v["version"], v["active"]) for v in history] == [(2, True), (1, False)]
    assert history[0]["applied_by"] == "apikey:revops"  # the admin key of the test world

    diff = world.call("GET", "/playbooks/discount/diff?from=1&to=2", "leader").get_json()
    assert diff["summary"] == ['step "wait" changed'] and "+    timeout: 21d" in diff["diff"]
    assert world.call("GET", "/playbooks/discount/diff?from=1&to=9", "leader").status_code == 404

    rolled = world.call("POST", "/playbooks/discount/activate", "admin", json={"version": 1})
    assert rolled.status_code == 200 and rolled.get_json()["active"] is True
    history = world.call("GET", "/playbooks/discount/history", "admin").get_json()["items"]
    assert [(v["version"], v["active"]) for v in history] == [(2, False), (1, True)]


def test_an_invalid_playbook_is_not_applied_and_says_where(world):
    broken = PLAYBOOK.replace("timeout: 14d", "timeout: soon")
    answer = world.call("POST", "/playbooks/apply", "admin", data=broken, headers=YAML)
    assert answer.status_code == 422
    body = answer.get_json()
    assert body["applied"] is False and body["change"] is None
    [finding] = body["findings"]
    assert (finding["line"], finding["column"]) == (12, 14) and '"soon" is not a duration' in finding["message"]
    assert [v["version"] for v in world.call("GET", "/playbooks/discount/history", "admin").get_json()["items"]] \
        == [1]


def test_pause_and_resume_are_audited_and_a_second_pause_conflicts(world):
    paused = world.call("POST", "/playbooks/discount/pause", "admin", json={"reason": "pricing", "running": "park"})
    assert paused.status_code == 200, paused.get_json()
    assert paused.get_json()["paused"] is True
    assert world.call("POST", "/playbooks/discount/pause", "admin", json={}).status_code == 409
    assert world.call("POST", "/playbooks/discount/pause", "admin", json={"running": "stop"}).status_code == 422
    resumed = world.call("POST", "/playbooks/discount/resume", "admin", json={})
    assert resumed.status_code == 200 and resumed.get_json()["paused"] is False
    assert sorted(resumed.get_json()["resumed"]) == sorted(paused.get_json()["parked"])
    assert world.call("POST", "/playbooks/discount/resume", "admin", json={}).status_code == 409
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["playbook_paused", "playbook_resumed"])).order_by(AuditEvent.id))]
    assert actions == ["playbook_paused", "playbook_resumed"]


def test_retry_with_latest_moves_a_parked_journey_to_the_active_version(world):
    from orchestrator.models import Journey, PlaybookVersion

    assert world.call("POST", "/playbooks/apply", "admin", data=PLAYBOOK.replace("timeout: 14d", "timeout: 21d"),
                      headers=YAML).get_json()["change"]["new_version"] == 2
    with unit_of_work(world.runtime.sessions) as session:
        journey = session.get(Journey, world.ids["journey"])
        journey.status, journey.current_step_id = "stalled", "wait"  # parked by a bug
        journey.wait_signal = journey.wait_until = None
    answer = world.call("POST", f"/journeys/{world.ids['journey']}/retry", "admin", json={"latest": True})
    assert answer.status_code == 200, answer.get_json()
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        journey = session.get(Journey, world.ids["journey"])
        version = session.get(PlaybookVersion, journey.playbook_version_id)
        assert (version.version, journey.status, journey.wait_signal) == (2, "waiting", "deal.closed_won")
