"""Named templates: resolved at validation, stored with the playbook version, shown by diff."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.playbook import validate_paths
from orchestrator.playbook.library import library_near, load_library
from orchestrator.playbook.loader import load_playbook_text
from orchestrator.playbook.store import apply_playbooks, compiled, diff_playbooks, list_playbooks

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CONTEXT = {"account": {"name": "Globex"}, "owner": {"name": "Ana"}}


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "playbooks"
    shutil.copytree(SHIPPED, target)
    return target


def _kickoff(session):
    [version] = [v for v in list_playbooks(session=session) if v.playbook_id == "onboard-kickoff"]
    return version


def _welcome_args(playbook):
    step = next(s for s in playbook.steps if s.id == "welcome-email")
    return {key: value.render(CONTEXT) for key, value in step.call.args.items() if key != "to"}


def test_the_shipped_welcome_email_comes_from_its_named_template():
    library = library_near([SHIPPED])
    playbook = load_playbook_text((SHIPPED / "onboard" / "onboard-kickoff.yaml").read_text(),
                                  library=library)
    args = _welcome_args(playbook)
    assert args["subject"] == "Welcome to Acme, Globex"
    assert args["body"].startswith("Your kickoff is booked.") and "a kickoff call with Ana" in args["body"]
    assert library.templates["welcome-email"].locale == "en"


def test_a_hybrid_draft_can_name_a_template(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "brief.yaml").write_text("body: 'Renewal brief for {{ account.name }}'\n")
    text = """id: sample
name: Sample
stage: renew
maintainer: revops@acme.example
review_every: 365d
enroll: {on: renewal.upcoming}
steps:
  - id: review
    kind: hybrid
    draft: {template: brief}
    assign: {to: account.owner}
    sla: {due: 2 business days}
"""
    playbook = load_playbook_text(text, library=load_library([tmp_path / "templates"]))
    assert playbook.steps[0].draft.render(CONTEXT) == "Renewal brief for Globex"


def test_templates_are_stored_with_the_version_and_a_template_change_is_a_new_version(session, folder):
    apply_playbooks(session=session, paths=[folder], now=NOW, actor="revops@acme.example")
    first = _kickoff(session)
    assert set(first.templates) == {"welcome-email"}
    others = [v for v in list_playbooks(session=session) if v.playbook_id != "onboard-kickoff"]
    assert all(v.templates == {} for v in others)  # only what a playbook uses is stored with it

    template = folder / "templates" / "welcome-email.yaml"
    template.write_text(template.read_text().replace("Welcome to Acme", "Welcome aboard"))
    drift = diff_playbooks(session=session, paths=[folder]).drifted
    assert [c.playbook_id for c in drift] == ["onboard-kickoff"]
    assert 'template "welcome-email" changed' in drift[0].headline()
    assert '-subject: "Welcome to Acme, {{ account.name }}"' in drift[0].diff
    assert '+subject: "Welcome aboard, {{ account.name }}"' in drift[0].diff

    report = apply_playbooks(session=session, paths=[folder], now=NOW, actor="revops@acme.example")
    assert [(c.playbook_id, c.new_version) for c in report.stored] == [("onboard-kickoff", 2)]
    # The old version keeps its own text: journeys enrolled under it still send the old subject.
    assert _welcome_args(compiled(first))["subject"] == "Welcome to Acme, Globex"
    assert _welcome_args(compiled(_kickoff(session)))["subject"] == "Welcome aboard, Globex"


def test_apply_refuses_a_playbook_whose_template_is_missing(session, folder):
    (folder / "templates" / "welcome-email.yaml").unlink()
    report = apply_playbooks(session=session, paths=[folder], now=NOW, actor="revops@acme.example")
    assert not report.applied and list_playbooks(session=session) == []
    [finding] = [f for f in report.findings if f.is_error]
    assert finding.path.endswith("onboard-kickoff.yaml") and finding.rule == "template"
    assert 'no template named "welcome-email"' in finding.message


def test_validate_reports_a_broken_template_once_at_its_own_line(folder):
    template = folder / "templates" / "welcome-email.yaml"
    template.write_text(template.read_text().replace("{{ owner.name }}", "{{ owner.nmae }}"))
    errors = [f for f in validate_paths([folder], last_changed=None) if f.is_error]
    assert [(Path(f.path).name, f.line, f.column) for f in errors] == [("welcome-email.yaml", 7, 26)]
    assert 'did you mean "owner.name"' in errors[0].message
