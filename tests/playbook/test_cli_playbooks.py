"""`handoff playbooks ...` end to end with click's runner, on a migrated database of its own."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import schema
from orchestrator.cli.playbooks import playbooks
from orchestrator.db import make_engine, make_session_factory
from orchestrator.playbook.library import is_template_file
from orchestrator.runtime import Runtime

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
SHIPPED_COUNT = sum(1 for p in SHIPPED.rglob("*.yaml") if not p.name.startswith("signals") and not is_template_file(p))
BROKEN = Path(__file__).resolve().parent / "broken"


@pytest.fixture
def runtime(fresh_database, settings, clock):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield Runtime(settings=settings, engine=engine, sessions=make_session_factory(engine), clock=clock)
    engine.dispose()


@pytest.fixture
def folder(tmp_path):
    shutil.copytree(SHIPPED, tmp_path / "playbooks")
    return tmp_path / "playbooks"


def run(args, runtime=None):
    return CliRunner().invoke(playbooks, args, obj={"runtime": runtime} if runtime else None)


def test_validate_prints_one_line_per_finding_and_exits_1_on_errors():
    result = run(["validate", str(BROKEN / "goto-unknown-step.yaml")])
    assert result.exit_code == 1
    assert result.stdout.strip().endswith('there is no step "cal" in this playbook (did you mean "call"?)')
    assert "1 playbook file checked: 1 error, 0 warnings" in result.stderr


def test_validate_of_the_shipped_folder_is_clean():
    result = run(["validate", str(SHIPPED)])
    assert result.exit_code == 0 and result.stdout == ""


def test_schema_prints_json():
    assert json.loads(run(["schema"]).stdout)["title"] == "Handoff playbook"


def test_rules_lists_every_rule_with_its_explanation():
    output = run(["rules"]).stdout
    assert "protected-human-zone" in output and "review-overdue  (warning" in output


def test_apply_then_diff_shows_no_drift(runtime, folder):
    applied = run(["apply", str(folder), "--actor", "ana@acme.example"], runtime)
    assert applied.exit_code == 0, applied.output
    assert "onboard-kickoff: applied as version 1 (new)" in applied.stdout
    diff = run(["diff", str(folder)], runtime)
    assert diff.exit_code == 0 and "no drift" in diff.stderr


def test_editing_a_file_makes_diff_exit_2_and_name_the_change(runtime, folder):
    run(["apply", str(folder)], runtime)
    path = folder / "expand" / "expansion-handoff.yaml"
    path.write_text(path.read_text().replace("estimate_minutes: 30", "estimate_minutes: 45"))
    diff = run(["diff", str(folder)], runtime)
    assert diff.exit_code == 2
    assert 'expansion-handoff: changed since version 1' in diff.stdout
    assert 'step "ae-handoff" changed' in diff.stdout


def test_apply_twice_is_idempotent_and_list_shows_version_one(runtime, folder):
    run(["apply", str(folder)], runtime)
    again = run(["apply", str(folder)], runtime)
    assert again.exit_code == 0 and f"0 of {SHIPPED_COUNT} playbooks stored a new version" in again.stderr
    header, *listed = run(["list"], runtime).stdout.splitlines()
    assert header.split()[:2] == ["PLAYBOOK", "VERSION"]
    assert len(listed) == SHIPPED_COUNT and all(" v1 " in line for line in listed)


def test_apply_with_an_invalid_file_stores_nothing(runtime, folder):
    shutil.copy(BROKEN / "human-step-without-sla.yaml", folder / "onboard" / "draft.yaml")
    result = run(["apply", str(folder)], runtime)
    assert result.exit_code == 1 and "nothing applied" in result.stderr
    assert run(["list"], runtime).stdout == ""


def test_fields_prints_the_dictionary_with_the_catalog_and_a_folders_own_types(tmp_path):
    shipped = run(["fields"]).stdout.splitlines()
    assert any(line.split() == ["account.health", "built", "in"] for line in shipped)
    assert any(line.startswith("signal.days_to_renewal") and "renewal.upcoming: Days to renewal" in line
               for line in shipped)
    (tmp_path / "signals.yaml").write_text("signals:\n  trial.started:\n    fields:\n      plan: text\n"
                                           "attributes:\n  account:\n    tier: {label: Support tier}\n")
    own = run(["fields", str(tmp_path)]).stdout
    assert "trial.started: Plan (text)" in own and "Support tier" in own
    (tmp_path / "signals.yaml").write_text("signals:\n  trial.started:\n    fields:\n      plan: {kind: money}\n")
    broken = run(["fields", str(tmp_path)])
    assert broken.exit_code == 1 and 'signals.yaml:4:20: error: [catalog]' in broken.stderr


def test_validate_reads_the_signals_file_beside_the_playbooks(tmp_path):
    (tmp_path / "stage").mkdir()
    playbook = tmp_path / "stage" / "p.yaml"
    playbook.write_text((BROKEN / "field-unknown-custom-attribute.yaml").read_text())
    assert "1 warning" in run(["validate", str(playbook)]).stderr
    (tmp_path / "signals.yaml").write_text("attributes:\n  account:\n    seats_bought: whole\n")
    result = run(["validate", str(playbook)])
    assert result.exit_code == 0 and "0 errors, 0 warnings" in result.stderr


def test_history_lists_every_version_and_activate_rolls_back_without_a_copy(runtime, folder):
    from sqlalchemy import select

    from orchestrator.db import unit_of_work
    from orchestrator.models import AuditEvent, PlaybookVersion

    path = folder / "renew" / "renewal-review.yaml"
    assert run(["apply", str(folder), "--actor", "ann@acme.example"], runtime).exit_code == 0
    path.write_text(path.read_text().replace("timeout: 30d", "timeout: 21d"))
    assert run(["apply", str(folder), "--actor", "bob@acme.example"], runtime).exit_code == 0
    shown = run(["history", "renewal-review"], runtime)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[1].split()[:2] == ["v2", "active"] and "bob@acme.example" in lines[1]
    assert lines[2].split()[:2] == ["v1", "-"] and "ann@acme.example" in lines[2]
    rolled = run(["activate", "renewal-review", "--version", "1", "--actor", "cy@acme.example"], runtime)
    assert rolled.exit_code == 0, rolled.output
    with unit_of_work(runtime.sessions) as session:
        rows = session.scalars(select(PlaybookVersion).where(PlaybookVersion.playbook_id == "renewal-review")
                               .order_by(PlaybookVersion.version)).all()
        assert [(v.version, v.active) for v in rows] == [(1, True), (2, False)]  # no third copy
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "playbook_activated")).one()
        assert (event.actor, event.playbook_version, event.reason) == (
            "cy@acme.example", 1, "cy@acme.example activated version 1 (was 2)")
    missing = run(["activate", "renewal-review", "--version", "7"], runtime)
    # The top-level command turns these into one-line errors; this group alone raises them.
    assert "has no version 7 (stored: 1, 2)" in str(missing.exception)
    unknown = run(["history", "nope"], runtime)
    assert "no playbook 'nope'" in str(unknown.exception)


def test_diff_between_two_stored_versions_names_step_and_template_changes(runtime, folder):
    path = folder / "onboard" / "onboard-kickoff.yaml"
    template = folder / "templates" / "welcome-email.yaml"
    assert run(["apply", str(folder), "--actor", "ann@acme.example"], runtime).exit_code == 0
    path.write_text(path.read_text().replace("due: 2 business days", "due: 3 business days"))
    template.write_text(template.read_text().replace("Welcome to Acme", "Welcome aboard"))
    assert run(["apply", str(folder), "--actor", "bob@acme.example"], runtime).exit_code == 0

    shown = run(["diff", "onboard-kickoff", "--from", "1", "--to", "2"], runtime)
    assert shown.exit_code == 0, shown.output
    first, *rest = shown.stdout.splitlines()
    # The step that sends the template changed too: its subject is different now.
    assert first == ('onboard-kickoff version 1 -> 2: step "kickoff-call" changed; step "welcome-email" changed; '
                     'template "welcome-email" changed')
    assert "-      due: 2 business days" in rest and "+      due: 3 business days" in rest
    assert '+subject: "Welcome aboard, {{ account.name }}"' in rest
    same = run(["diff", "onboard-kickoff", "--from", "2", "--to", "2"], runtime)
    assert "versions 2 and 2 are the same text" in same.stdout
    missing = run(["diff", "onboard-kickoff", "--from", "1", "--to", "5"], runtime)
    assert "has no version 5 (stored: 1, 2)" in str(missing.exception)
    assert run(["diff", "onboard-kickoff", "--from", "1"], runtime).exit_code == 2  # usage: --to missing


def test_pause_and_resume_from_the_cli(runtime, folder):
    assert run(["apply", str(folder), "--actor", "ann@acme.example"], runtime).exit_code == 0
    paused = run(["pause", "renewal-review", "--by", "ops@acme.example", "--reason", "pricing change"], runtime)
    assert paused.exit_code == 0, paused.output
    assert paused.stdout == "renewal-review: paused, no new enrollments; 0 running journeys continue\n"
    again = run(["pause", "renewal-review", "--by", "ops@acme.example"], runtime)
    assert "already paused" in str(again.exception)
    header, *listed = run(["list"], runtime).stdout.splitlines()
    state = header.split().index("STATE")
    states = {line.split()[0]: line.split()[state] for line in listed}
    assert states["renewal-review"] == "paused"
    assert set(states.values()) == {"paused", "active"} and list(states.values()).count("paused") == 1
    resumed = run(["resume", "renewal-review", "--by", "ops@acme.example"], runtime)
    assert resumed.stdout == "renewal-review: resumed, enrollments open again\n"
    assert all(" paused " not in line for line in run(["list"], runtime).stdout.splitlines())
    assert "no playbook 'nope'" in str(run(["resume", "nope", "--by", "ops@acme.example"], runtime).exception)
