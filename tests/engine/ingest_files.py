"""Run `handoff signals ingest` on real files against a database of its own; read back the per-line report."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.cli import main
from orchestrator.db import make_engine
from orchestrator.models import Account, Signal


def signal(**overrides: Any) -> dict[str, Any]:
    """A valid signal for acme.example, unique unless the caller says otherwise."""
    raw: dict[str, Any] = {"type": "product.usage", "account": {"domain": "acme.example"},
                           "occurred_at": "2026-11-23T13:00:00Z",
                           "payload": {"active_users": 3, "nonce": uuid.uuid4().hex}}
    raw.update(overrides)
    return raw


def line(**overrides: Any) -> bytes:
    return json.dumps(signal(**overrides)).encode()


@dataclass
class Outcome:
    exit_code: int
    report: list[str]  # the "line N: ..." lines, in order
    output: str


class IngestDatabase:
    """A migrated database with one account (acme.example), fed through the CLI."""

    def __init__(self, url: URL, work_dir: Path) -> None:
        self.url, self.work_dir = url, work_dir
        engine = make_engine(url)
        schema.upgrade(engine)
        with Session(engine) as session:
            session.add(Account(name="Acme", domain="acme.example"))
            session.commit()
        engine.dispose()
        self.env = {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False), "HANDOFF_CONFIG": ""}

    def ingest_bytes(self, data: bytes) -> Outcome:
        path = self.work_dir / f"signals-{uuid.uuid4().hex[:8]}.jsonl"
        path.write_bytes(data)
        try:
            return self.ingest_file(path)
        finally:
            path.unlink()

    def ingest_lines(self, lines: list[bytes]) -> Outcome:
        return self.ingest_bytes(b"\n".join(lines) + b"\n")

    def ingest_file(self, path: Path) -> Outcome:
        result = CliRunner().invoke(main, ["signals", "ingest", str(path)], env=self.env)
        # Anything but a clean exit (0, or 1 for rejected lines) is an uncaught exception.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"ingest crashed: {result.exception!r}\n{result.output[-2000:]}")
        assert "Traceback" not in result.output
        report = [text for text in result.output.splitlines() if text.startswith("line ")]
        return Outcome(result.exit_code, report, result.output)

    def signal_count(self) -> int:
        engine = make_engine(self.url)
        with Session(engine) as session:
            count = session.scalar(select(func.count()).select_from(Signal)) or 0
        engine.dispose()
        return count


def normalized(report: list[str]) -> list[str]:
    """The report without row ids, which differ between backends (PostgreSQL spends ids on conflicts)."""
    return [re.sub(r"(signal|exception item) \d+", r"\1 N", text) for text in report]
