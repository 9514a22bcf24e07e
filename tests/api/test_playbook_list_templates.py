"""GET /playbooks pages with a cursor and filters; apply and validate carry the named templates a playbook uses."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from orchestrator.db import unit_of_work
from orchestrator.models import PlaybookVersion
from orchestrator.playbook.store import compiled
from tests.api.conftest import PLAYBOOK

ROOT = Path(__file__).resolve().parents[2]
KICKOFF = (ROOT / "playbooks/onboard/onboard-kickoff.yaml").read_text(encoding="utf-8")
WELCOME = (ROOT / "playbooks/templates/welcome-email.yaml").read_text(encoding="utf-8")
YAML = {"Content-Type": "application/yaml"}


def _copy(playbook_id: str, *, stage: str = "acquire", maintainer: str = "revops@acme.example") -> str:
    return (PLAYBOOK.replace("id: discount", f"id: {playbook_id}").replace("stage: acquire", f"stage: {stage}")
            .replace("maintainer: revops@acme.example", f"maintainer: {maintainer}"))


def _ids(world, query: str, key: str = "leader") -> list[list[str]]:
    """Every page of GET /playbooks?query, following the cursor, as lists of ids."""
    pages, after = [], ""
    while True:
        answer = world.call("GET", f"/playbooks?{query}{after}", key)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        pages.append([item["playbook_id"] for item in body["items"]])
        if body["next"] is None:
            return pages
        after = f"&after={body['next']}"


def test_playbooks_page_with_a_cursor_and_filter_by_stage_status_and_maintainer(world):
    assert "id: discount" in PLAYBOOK
    for playbook_id, stage, maintainer in (("alpha", "acquire", "mia@acme.example"),
                                           ("beta", "expand", "MIA@acme.example"),
                                           ("gamma", "acquire", "revops@acme.example"),
                                           ("delta", "expand", "revops@acme.example")):
        answer = world.call("POST", f"/playbooks/apply?path={playbook_id}.yaml", "admin",
                            data=_copy(playbook_id, stage=stage, maintainer=maintainer), headers=YAML)
        assert answer.status_code == 200, answer.get_json()
    assert world.call("POST", "/playbooks/gamma/pause", "admin", json={"reason": "pricing"}).status_code == 200

    assert _ids(world, "limit=2") == [["alpha", "beta"], ["delta", "discount"], ["gamma"]]
    assert _ids(world, "limit=1&stage=acquire") == [["alpha"], ["discount"], ["gamma"]]
    assert _ids(world, "limit=10&status=paused") == [["gamma"]]
    assert _ids(world, "limit=2&status=active") == [["alpha", "beta"], ["delta", "discount"]]
    assert _ids(world, "limit=1&maintainer=mia@ACME.example") == [["alpha"], ["beta"]]
    assert _ids(world, "maintainer=revops@acme.example&stage=acquire&status=active") == [["discount"]]
    [gamma] = world.call("GET", "/playbooks?after=delta&limit=2", "admin").get_json()["items"][1:]
    assert (gamma["playbook_id"], gamma["paused"], gamma["maintainer"]) == ("gamma", True, "revops@acme.example")
    assert world.call("GET", "/playbooks?stage=nowhere", "admin").status_code == 422
    assert world.call("GET", "/playbooks?status=stopped", "admin").get_json()["field"] == "status"


def test_the_kickoff_playbook_applies_over_http_with_its_template_stored_and_used(world):
    body = {"playbook": KICKOFF, "templates": {"welcome-email": WELCOME, "unused": "body: not stored\n"}}
    checked = world.call("POST", "/playbooks/validate", "admin", json=body)
    assert checked.status_code == 200 and checked.get_json()["valid"] is True, checked.get_json()
    # Without its template the same playbook does not validate, and says where it names it.
    alone = world.call("POST", "/playbooks/validate", "admin", data=KICKOFF, headers=YAML).get_json()
    assert alone["valid"] is False and any('no template named "welcome-email"' in f["message"]
                                           for f in alone["findings"])

    applied = world.call("POST", "/playbooks/apply?path=onboard-kickoff.yaml", "admin", json=body)
    assert applied.status_code == 200, applied.get_json()
    assert applied.get_json()["change"]["kind"] == "new"
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        version = session.scalar(select(PlaybookVersion).where(PlaybookVersion.playbook_id == "onboard-kickoff"))
        assert version.templates == {"welcome-email": WELCOME}  # only what it uses, as the CLI stores it
        # The version runs with the template's text filled in where the playbook names it.
        assert "Welcome to Acme, {{ account.name }}" in repr(compiled(version).steps)

    changed = {"playbook": KICKOFF, "templates": {"welcome-email": WELCOME.replace("30 days", "45 days")}}
    again = world.call("POST", "/playbooks/apply", "admin", json=changed).get_json()
    assert 'template "welcome-email" changed' in again["change"]["summary"]
    diff = world.call("GET", "/playbooks/onboard-kickoff/diff?from=1&to=2", "leader").get_json()
    assert "templates/welcome-email.yaml" in diff["diff"] and "+  a check-in" not in diff["diff"]
    assert "-  Your kickoff is booked. Here is what the first 30 days look like:" in diff["diff"]
    # The same body again stores nothing new.
    assert world.call("POST", "/playbooks/apply", "admin", json=changed).get_json()["change"]["kind"] == "unchanged"


def test_a_broken_template_is_a_located_422_and_nothing_is_stored(world):
    broken = WELCOME.replace("{{ owner.name }}", "{{ owner.name ")
    answer = world.call("POST", "/playbooks/apply", "admin",
                        json={"playbook": KICKOFF, "templates": {"welcome-email": broken}})
    assert answer.status_code == 422, answer.get_json()
    body = answer.get_json()
    assert body["applied"] is False and body["change"] is None and body["field"] == "templates.welcome-email"
    located = [f for f in body["findings"] if f["path"] == "templates/welcome-email.yaml"]
    assert located and (located[0]["line"], located[0]["column"]) == (5, 7)
    assert located[0]["text"].startswith("templates/welcome-email.yaml:5:7: error:")
    assert len(located) == 1  # reported once, though the playbook also uses it
    checked = world.call("POST", "/playbooks/validate", "admin",
                         json={"playbook": KICKOFF, "templates": {"welcome-email": broken}}).get_json()
    assert checked["valid"] is False and checked["findings"] == body["findings"]
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.scalar(select(PlaybookVersion).where(PlaybookVersion.playbook_id == "onboard-kickoff")) \
            is None


def test_malformed_template_bodies_name_the_field_and_store_nothing(world):
    for body, field in (({"templates": {}}, "playbook"),
                        ({"playbook": KICKOFF, "templates": {"../etc": WELCOME}}, "templates"),
                        ({"playbook": KICKOFF, "templates": {"welcome-email": 3}}, "templates"),
                        ({"playbook": KICKOFF, "templates": {"welcome-email": "x" * (64 * 1024 + 1)}},
                         "templates"),
                        ({"playbook": KICKOFF, "templates": {f"t{n}": WELCOME for n in range(51)}}, "templates"),
                        ([KICKOFF], "playbook")):
        answer = world.call("POST", "/playbooks/apply", "admin", json=body)
        assert answer.status_code == 422 and answer.get_json()["field"].startswith(field), answer.get_json()
    too_big = world.call("POST", "/playbooks/apply", "admin", data="x" * (256 * 1024 + 1), headers=YAML)
    assert too_big.status_code == 413
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert [v.playbook_id for v in session.scalars(select(PlaybookVersion))] == ["discount"]
