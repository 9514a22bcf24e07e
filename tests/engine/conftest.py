"""Engine test helpers: install playbooks straight from YAML text, feed signals through intake."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.config import Settings
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import PlaybookVersion
from orchestrator.playbook import load_playbook_text

# The keys every inline test playbook shares (indented like the playbooks that use it).
HEADER = """
    maintainer: revops@acme.example
    review_every: 365d
"""


def install_playbook(session: Session, text: str, path: str = "test.yaml", *, lint: bool = True) -> PlaybookVersion:
    """Validate `text` and make it the active version of its playbook (lint=False: as an older release did)."""
    text = textwrap.dedent(text)
    playbook = load_playbook_text(text, path, lint=lint)
    for old in session.scalars(select(PlaybookVersion).where(
            PlaybookVersion.playbook_id == playbook.id, PlaybookVersion.active)):
        old.active = False
    session.flush()
    count = len(session.scalars(select(PlaybookVersion.id).where(
        PlaybookVersion.playbook_id == playbook.id)).all())
    version = PlaybookVersion(playbook_id=playbook.id, version=count + 1, name=playbook.name,
                              stage=playbook.stage, source_text=text, source_path=path,
                              checksum=hashlib.sha256(text.encode()).hexdigest(), active=True)
    session.add(version)
    session.flush()
    return version


class Feeder:
    """Send signals through the real intake and engine, as the CLI and API do."""

    def __init__(self, session: Session, settings: Settings, clock: Any) -> None:
        self.session, self.settings, self.clock = session, settings, clock

    def __call__(self, type: str, account: Any, payload: dict[str, Any] | None = None, *,
                 at: datetime | None = None, deal: Any = None) -> engine.ProcessReport:
        raw: dict[str, Any] = {
            "type": type, "account": {"id": account.id}, "payload": payload or {},
            "occurred_at": (at or self.clock.now()).isoformat(),
        }
        if deal is not None:
            raw["deal"] = {"id": deal.id}
        result = signals.ingest(session=self.session, raw=raw, source="test",
                                now=self.clock.now(), settings=self.settings)
        assert result.status == "accepted", result
        return self.process()

    def process(self) -> engine.ProcessReport:
        report = engine.process_pending(session=self.session, settings=self.settings,
                                        now=self.clock.now())
        self.session.flush()
        return report

    def sweep(self) -> int:
        moved = engine.sweep_timeouts(session=self.session, settings=self.settings,
                                      now=self.clock.now())
        self.session.flush()
        return moved


@pytest.fixture
def feed(session: Session, settings: Settings, clock: Any) -> Feeder:
    return Feeder(session, settings, clock)
