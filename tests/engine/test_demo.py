"""`handoff demo` runs the whole loop on a fresh database, prints its summary, and can run again."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from orchestrator.cli.demo import demo
from orchestrator.config import load_settings
from orchestrator.db import unit_of_work
from orchestrator.models import Account, CustomerTouch, ExceptionItem, Journey, OutboxMessage, Signal, StepRun, Task
from orchestrator.playbook import load_playbook
from orchestrator.playbook.library import is_template_file
from orchestrator.replay.samples import sample_signals
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import Runtime, build_runtime

_COUNTED = (Signal, Journey, StepRun, Task, OutboxMessage, ExceptionItem, CustomerTouch)


def _run_demo(url: URL) -> str:
    # The demo writes the sample handoff.toml where it runs: in a folder of its own.
    with tempfile.TemporaryDirectory(prefix="handoff-demo-") as folder, contextlib.chdir(folder):
        result = CliRunner().invoke(
            demo, [], env={"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False),
                           "HANDOFF_CONFIG": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def runtime(fresh_database: URL) -> Iterator[Runtime]:
    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)})
    runtime = build_runtime(settings)
    yield runtime
    runtime.close()


def _counts(runtime: Runtime) -> dict[str, int]:
    with unit_of_work(runtime.sessions) as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0 for m in _COUNTED}


def test_demo_on_a_fresh_database_runs_every_shipped_playbook_and_prints_the_summary(
        fresh_database: URL, runtime: Runtime) -> None:
    output = _run_demo(fresh_database)

    shipped = {load_playbook(p).id for p in shipped_playbooks_dir().rglob("*.yaml") if not is_template_file(p)}
    with unit_of_work(runtime.sessions) as session:
        enrolled = set(session.scalars(select(Journey.playbook_id).distinct()))
        assert enrolled == shipped
        tasks = list(session.scalars(select(Task)))
        assert tasks and all(task.brief_text and task.brief for task in tasks)
        kickoff = session.scalars(select(Task).join(Account).where(
            Account.domain == "acme-robotics.example", Task.title.like("Kickoff call%"))).one()
        assert "deal.closed_won" in kickoff.brief_text  # the trigger
        assert "Book a 45-minute kickoff" in kickoff.brief_text  # the recommendation
        assert "Grace Park" in kickoff.brief_text  # the evidence: key contacts
        outcomes = set(session.scalars(select(Task.outcome).where(Task.outcome.is_not(None))))
        assert {"approved", "rejected", "published", "done"} <= outcomes
        statuses = list(session.scalars(select(StepRun.status)))
        assert statuses.count("timed_out") >= 3 and statuses.count("overridden") == 1
        categories = set(session.scalars(select(ExceptionItem.category)))
        assert {"unknown_account", "unmatched_branch", "no_assignee"} <= categories

    for heading in ("Journeys per playbook", "Tasks per owner", "Automated vs human steps",
                    "Customer-touch caps and protected zones hit: 2", "Exception items (open) by category",
                    "waiting for the CRM", "Example task #"):
        assert heading in output
    assert "customer-touch cap reached" in output and "protected human zone" in output
    assert "Recommendation" in output and "Key contacts" in output  # the full example brief
    for playbook_id in shipped:
        assert playbook_id in output


def test_running_the_demo_twice_changes_nothing_the_second_time(fresh_database: URL, runtime: Runtime) -> None:
    _run_demo(fresh_database)
    before = _counts(runtime)

    output = _run_demo(fresh_database)

    assert _counts(runtime) == before
    assert f"0 accepted, {len(sample_signals())} duplicate" in output  # every sample line, again
    assert "nothing left to act on" in output


def test_without_a_config_of_your_own_the_demo_uses_the_sample_teams_exception_owners(fresh_database, tmp_path,
                                                                                      monkeypatch):
    from click.testing import CliRunner
    from sqlalchemy import select

    from orchestrator.cli import main
    from orchestrator.db import make_engine, make_session_factory, unit_of_work
    from orchestrator.models import ExceptionItem

    monkeypatch.chdir(tmp_path)  # no ./handoff.toml here
    url = fresh_database.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["demo"], env={"HANDOFF_DATABASE_URL": url, "HANDOFF_CONFIG": "",
                                                     "HANDOFF_EXCEPTION_OWNER": None})
    assert result.exit_code == 0, result.output
    assert "wrote handoff.toml (the sample team's configuration)" in result.output
    db = make_engine(fresh_database)
    with unit_of_work(make_session_factory(db)) as session:
        owners = {item.category: item.owner for item in session.scalars(select(ExceptionItem))}
    db.dispose()
    assert owners["unknown_account"] == "jonas.weber@acme.example"
    assert owners["unmatched_branch"] == "maya.chen@acme.example"
