"""Applying playbooks stores versions only on change; diff shows drift between files and the database."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.playbook.library import is_template_file
from orchestrator.playbook.store import (
    active_playbooks,
    apply_playbooks,
    diff_playbooks,
    list_playbooks,
)

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
SHIPPED_COUNT = sum(1 for p in SHIPPED.rglob("*.yaml") if not p.name.startswith("signals") and not is_template_file(p))
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "playbooks"
    shutil.copytree(SHIPPED, target)
    return target


def apply(session, folder):
    return apply_playbooks(session=session, paths=[folder], now=NOW, actor="revops@acme.example")


def test_apply_then_diff_shows_no_drift(session, folder):
    report = apply(session, folder)
    assert report.applied and len(report.stored) == SHIPPED_COUNT
    assert diff_playbooks(session=session, paths=[folder]).drifted == []


def test_applying_twice_stores_nothing_new(session, folder):
    apply(session, folder)
    again = apply(session, folder)
    assert again.applied and again.stored == []
    assert {v.version for v in list_playbooks(session=session)} == {1}


def test_editing_a_file_makes_diff_name_the_changed_step(session, folder):
    apply(session, folder)
    path = folder / "onboard" / "onboard-kickoff.yaml"
    path.write_text(path.read_text().replace("due: 2 business days", "due: 3 business days"))
    drift = diff_playbooks(session=session, paths=[folder]).drifted
    assert [c.kind for c in drift] == ["changed"]
    assert 'step "kickoff-call" changed' in drift[0].headline()
    assert "+      due: 3 business days" in drift[0].diff


def test_applying_an_edit_stores_version_two_and_retires_version_one(session, folder):
    apply(session, folder)
    path = folder / "renew" / "renewal-review.yaml"
    path.write_text(path.read_text().replace("timeout: 30d", "timeout: 21d"))
    report = apply(session, folder)
    assert [(c.playbook_id, c.old_version, c.new_version) for c in report.stored] == [
        ("renewal-review", 1, 2)
    ]
    active = {v.playbook_id: v.version for v in list_playbooks(session=session)}
    assert active["renewal-review"] == 2


def test_apply_with_one_invalid_file_changes_nothing(session, folder):
    (folder / "adopt" / "broken.yaml").write_text("id: broken\nname: x\n")
    report = apply(session, folder)
    assert not report.applied
    assert any(f.is_error and "broken.yaml" in f.path for f in report.findings)
    assert list_playbooks(session=session) == []


def test_a_new_file_shows_as_new_and_a_deleted_one_as_missing(session, folder):
    apply(session, folder)
    (folder / "expand" / "expansion-handoff.yaml").unlink()
    text = (folder / "acquire" / "speed-to-lead.yaml").read_text()
    (folder / "acquire" / "speed-to-lead-2.yaml").write_text(text.replace("id: speed-to-lead", "id: lead-two"))
    kinds = {c.playbook_id: c.kind for c in diff_playbooks(session=session, paths=[folder]).drifted}
    assert kinds == {"lead-two": "new", "expansion-handoff": "missing"}


def test_diffing_one_file_does_not_call_the_others_missing(session, folder):
    apply(session, folder)
    assert diff_playbooks(session=session, paths=[folder / "renew" / "renewal-review.yaml"]).drifted == []


def test_active_playbooks_compile_from_the_stored_text(session, folder):
    apply(session, folder)
    compiled = {playbook.id for _version, playbook in active_playbooks(session=session)}
    assert compiled == {p.stem for p in SHIPPED.rglob("*.yaml")
                        if not p.name.startswith("signals") and not is_template_file(p)}
    assert {"speed-to-lead", "onboard-kickoff", "usage-drop-rescue", "expansion-handoff", "renewal-review"} <= compiled
