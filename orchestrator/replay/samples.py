"""Bundled sample data: a small revenue team, their accounts, and a month of signals.

The demo (`handoff demo`), `handoff playbooks simulate --sample` and the benchmark all
start from this data. It ships inside the package (`orchestrator/sample_data/`), so a
plain `pip install` carries it.

Loading is idempotent by the records' CRM ids: every owner, account, contact and deal
carries an external id, and a record whose external id is already known is left as it
is. Running the loader twice therefore adds nothing the second time, and never undoes
what the engine has since changed on those rows (an account's stage, say).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.clock import ensure_utc
from orchestrator.intake.records import Record, upsert_records

__all__ = ["SampleReport", "load_sample_data", "sample_accounts", "sample_config_path", "sample_decisions",
           "sample_folder", "sample_owners", "sample_records",
           "sample_signals", "sample_signals_text"]

_KINDS = ("owner", "account", "contact", "deal")


@dataclass
class SampleReport:
    """How many sample records were created and how many were already there, per kind."""

    created: Counter[str] = field(default_factory=Counter)
    existing: Counter[str] = field(default_factory=Counter)
    external_ids_added: int = 0

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def __str__(self) -> str:
        parts = [f"{self.created[kind]} {kind}s created, {self.existing[kind]} already there"
                 for kind in _KINDS if self.created[kind] or self.existing[kind]]
        return "; ".join(parts) or "no sample records"


# -- reading the bundled files ------------------------------------------------------------------

def sample_config_path() -> Path:
    """The sample team's handoff.toml (exception owners, calendar, caps)."""
    return Path(str(resources.files("orchestrator").joinpath("sample_data", "handoff.toml")))


def _read(name: str) -> str:
    return resources.files("orchestrator").joinpath("sample_data", name).read_text(encoding="utf-8")


def sample_owners() -> list[dict[str, Any]]:
    """The sample people: AEs, CSMs, SDRs, a CS lead and managers, as stored in owners.json."""
    return json.loads(_read("owners.json"))


def sample_accounts() -> list[dict[str, Any]]:
    """The sample accounts, each with its contacts and deals nested."""
    return json.loads(_read("accounts.json"))


def sample_signals_text() -> str:
    """The sample signals as JSON lines, exactly as `handoff signals ingest` reads them."""
    return _read("signals.jsonl")


def sample_signals() -> list[dict[str, Any]]:
    """A few weeks of signals from 2026-10-05, in the order they occurred."""
    rows = [json.loads(line) for line in sample_signals_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda row: _when(row["occurred_at"]))


def sample_decisions() -> list[dict[str, Any]]:
    """What the sample reps do with their tasks during the demo: when, on which account's step, which outcome.

    Each entry names an account by domain and a playbook step id; an entry with
    `"override": true` overrides an on_the_loop step instead of closing a task.
    """
    return sorted(json.loads(_read("decisions.json")), key=lambda row: _when(row["at"]))


# -- loading ------------------------------------------------------------------------------------

def sample_folder() -> Path:
    """The bundled sample data as a folder of exports, in the `files` connector's format."""
    return Path(str(resources.files("orchestrator").joinpath("sample_data")))


def sample_records() -> list[Record]:
    """The sample team as canonical records, read by the `files` connector's export reader.

    The demo's data takes the path any folder of exports takes (`handoff import FOLDER`):
    the connector's reader, then `intake.records.upsert_records`. Only owners and accounts
    (with their nested contacts and deals) are read here: the demo replays the signals
    itself, on a frozen clock.
    """
    # Imported here: the replay package uses the connector, the core never does.
    from connectors.files.exports import read_records

    folder = sample_folder()
    return [*read_records(folder / "owners.json", kind="owner", source="sample"),
            *read_records(folder / "accounts.json", kind="account", source="sample")]


def load_sample_data(*, session: Session, now: datetime | None = None) -> SampleReport:
    """Add the sample owners, accounts, contacts and deals that are not in the database yet.

    Works inside the caller's transaction (flushes, never commits), through the same
    record-upsert path as the connectors; rows already there are left exactly as they are.
    """
    upserted = upsert_records(session, source="sample", records=sample_records(),
                              now=now or datetime.now(UTC), update_existing=False)
    if upserted.problems:
        raise ValueError("the bundled sample data is inconsistent: " + "; ".join(upserted.problems[:3]))
    return SampleReport(created=Counter(upserted.created), existing=Counter(upserted.unchanged),
                        external_ids_added=upserted.external_ids_added)


def _when(text: str) -> datetime:
    return ensure_utc(datetime.fromisoformat(text))
