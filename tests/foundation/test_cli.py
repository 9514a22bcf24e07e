"""The `handoff` command line as a user meets it: help, version, init, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import __version__
from orchestrator.cli import main
from orchestrator.playbook.library import is_template_file

HANDOFF = str(Path(sys.executable).parent / "handoff")
# Every shipped playbook file (signals*.yaml describe signal types, not playbooks).
SHIPPED_COUNT = sum(1 for p in (Path(__file__).resolve().parents[2] / "playbooks").rglob("*.yaml")
                    if not p.name.startswith("signals") and not is_template_file(p))


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([HANDOFF, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_help_lists_every_command_with_a_one_line_description():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, command in main.commands.items():
        assert name in result.output
        assert command.get_short_help_str().strip(), f"{name} has no description"
    assert {"init", "db", "version", "playbooks", "signals", "audit", "exceptions"} <= set(main.commands)


def test_the_console_script_prints_the_version():
    result = _run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"handoff {__version__}"


def test_init_migrates_and_loads_the_shipped_playbooks_idempotently(fresh_database):
    env = {"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)}
    first = CliRunner().invoke(main, ["init"], env=env)
    assert first.exit_code == 0, first.output
    assert first.output.count(": new (") == SHIPPED_COUNT
    second = CliRunner().invoke(main, ["init"], env=env)
    assert second.exit_code == 0, second.output
    assert ": new (" not in second.output and second.output.count("unchanged") == SHIPPED_COUNT
    assert f"playbook versions  {SHIPPED_COUNT}" in second.output


@pytest.mark.parametrize("url, fragment", [
    ("mysql://root@localhost/handoff", "unsupported database 'mysql'"),
    ("postgresql://nobody:hunter2@127.0.0.1:1/handoff", "cannot connect to the database"),
])
def test_a_wrong_database_url_is_one_clear_line_not_a_traceback(url, fragment, tmp_path):
    result = _run("status", env={"HANDOFF_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("handoff: error: ") and fragment in lines[0]
    assert "HANDOFF_DATABASE_URL" in lines[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_database_that_was_never_migrated_says_what_to_run(tmp_path):
    result = _run("status", env={"HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"},
                  cwd=tmp_path)
    assert result.returncode == 2
    assert "handoff db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_the_log_level_setting_is_applied(fresh_database):
    import logging

    root = logging.getLogger()
    before = root.level
    env = {"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False),
           "HANDOFF_LOG_LEVEL": "debug"}
    try:
        result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
        assert result.exit_code == 0, result.output
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)
