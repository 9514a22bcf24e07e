"""No placeholder exception owner: commands refuse to start without one; the demo brings the sample team's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import exception_queue
from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.models.exceptions import Category

HANDOFF = str(Path(sys.executable).parent / "handoff")
NO_OWNER = "exceptions.default_owner: no exception owner is configured"


def _handoff(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    return subprocess.run([HANDOFF, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**clean, **env})


def test_without_a_configured_owner_there_is_none_and_asking_for_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.exception_owner is None
    with pytest.raises(ConfigError, match=NO_OWNER):
        settings.require_exception_owner()
    with pytest.raises(ConfigError, match=NO_OWNER):
        settings.exception_category("loop_guard")


def test_an_item_is_never_queued_for_a_placeholder(session, clock):
    settings = Settings(database_url=session.get_bind().engine.url)
    with pytest.raises(ConfigError, match=NO_OWNER):
        exception_queue.raise_item(session, settings=settings, category=Category.LOOP_GUARD, message="loop",
                                   at=clock.now())


def test_the_owner_can_come_from_the_environment():
    assert load_settings({"HANDOFF_EXCEPTION_OWNER": " lead@acme.example "}).exception_owner == "lead@acme.example"
    with pytest.raises(ConfigError, match="^HANDOFF_EXCEPTION_OWNER: 'revops' is not an email address$"):
        load_settings({"HANDOFF_EXCEPTION_OWNER": "revops"})


@pytest.mark.parametrize("command", [["tasks", "list"], ["engine", "run"], ["exceptions", "list"], ["init"]])
def test_commands_refuse_to_start_without_an_owner_in_one_line(tmp_path, command):
    result = _handoff(*command, cwd=tmp_path, env={"HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and NO_OWNER in result.stderr, result.stderr
    assert not (tmp_path / "h.db").exists()  # refused before anything was done


@pytest.mark.slow
def test_the_demo_and_every_later_command_read_the_same_configuration(tmp_path):
    env = {"HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'handoff.db'}"}
    demo = _handoff("demo", cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr
    assert "wrote handoff.toml (the sample team's configuration)" in demo.stdout
    assert (tmp_path / "handoff.toml").read_text().startswith("# The sample team's configuration")

    status = _handoff("status", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert "config_file: handoff.toml" in status.stdout
    items = _handoff("exceptions", "list", cwd=tmp_path, env=env)
    assert items.returncode == 0, items.stderr
    owners = {word for line in items.stdout.splitlines() for word in line.split() if "@" in word}
    assert owners and owners <= {"maya.chen@acme.example", "jonas.weber@acme.example"}, owners

    again = _handoff("demo", cwd=tmp_path, env=env)  # the file is the user's now: read, not rewritten
    assert again.returncode == 0, again.stderr
    assert "wrote handoff.toml" not in again.stdout
