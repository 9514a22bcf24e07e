"""Where files that ship with Handoff live: inside the wheel, or in the source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str, marker: str) -> Path:
    # A wheel carries these folders under orchestrator/_shipped (see pyproject.toml);
    # an editable install or a checkout has them at the top of the repository.
    for candidate in (_PACKAGE / "_shipped" / name, _PACKAGE.parent / name):
        if (candidate / marker).exists():
            return candidate
    raise FileNotFoundError(f"{name}/ not found; is Handoff installed correctly?")


def migrations_dir() -> Path:
    """The Alembic scripts."""
    return _find("migrations", "env.py")


def shipped_playbooks_dir() -> Path:
    """The playbooks that ship with Handoff, one folder per stage."""
    return _find("playbooks", "onboard")
