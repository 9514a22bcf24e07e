"""Automation mix: automated, human and hybrid step runs per stage, and the share of each oversight level.

Definitions: README, "Reporting".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, PlaybookVersion, StepRun

__all__ = ["automation_report"]

KINDS = ("automated", "human", "hybrid")
LEVELS = ("in_the_loop", "on_the_loop", "out_of_loop")


def automation_report(*, sessions: sessionmaker[Session], since: datetime,
                      until: datetime) -> list[dict[str, Any]]:
    """Per stage (then playbook): step runs by kind, and automated runs' oversight shares."""
    oversight = func.coalesce(StepRun.oversight, "out_of_loop")
    query = (select(PlaybookVersion.stage, StepRun.kind, oversight.label("oversight"), func.count())
             .join(Journey, Journey.id == StepRun.journey_id)
             .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
             .where(StepRun.started_at >= since, StepRun.started_at < until,
                    StepRun.kind.in_(KINDS))
             .group_by(PlaybookVersion.stage, StepRun.kind, oversight))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    stages: dict[str, dict[str, Any]] = {}
    for stage, kind, level, count in found:  # at most stages x kinds x levels aggregated rows
        row = stages.setdefault(stage, {"stage": stage, **{kind_: 0 for kind_ in KINDS},
                                        **{f"_{level_}": 0 for level_ in LEVELS}})
        row[kind] += count
        if kind == "automated":
            row[f"_{level}"] = row.get(f"_{level}", 0) + count
    rows = []
    for stage in sorted(stages):
        row = stages[stage]
        automated = row["automated"]
        total = sum(row[kind] for kind in KINDS)
        out = {"stage": stage, "runs": total, **{kind: row[kind] for kind in KINDS},
               "automated_share": round(automated / total, 4) if total else None}
        for level in LEVELS:
            out[f"{level}_share"] = round(row[f"_{level}"] / automated, 4) if automated else None
        rows.append(out)
    return rows
