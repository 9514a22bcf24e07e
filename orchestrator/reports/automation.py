"""Automation mix: automated, human and hybrid step runs per stage, and the share of each oversight level.

Definitions: README, "Reporting".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun
from orchestrator.reports._sql import parse_grouping
from orchestrator.reports.scope import EVERYTHING, Scope, journey_scope, run_dimension, with_run_joins

__all__ = ["GROUPINGS", "automation_report"]

KINDS = ("automated", "human", "hybrid")
LEVELS = ("in_the_loop", "on_the_loop", "out_of_loop")
# stage is the default; kind: one row per step kind, its oversight shares over that kind's runs.
GROUPINGS: tuple[str, ...] = ("stage", "playbook", "kind", "team", "segment")


def automation_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                      scope: Scope = EVERYTHING, by: str | None = None) -> list[dict[str, Any]]:
    """Per stage (or `by` group): step runs by kind, and automated runs' oversight shares."""
    (key,) = parse_grouping(by, allowed=GROUPINGS, default="stage")
    oversight = func.coalesce(StepRun.oversight, "out_of_loop")
    group = StepRun.kind if key == "kind" else run_dimension(key)
    query = with_run_joins(
        select(group.label("grp"), StepRun.kind, oversight.label("oversight"), func.count())
        .join(Journey, Journey.id == StepRun.journey_id)
        .where(StepRun.started_at >= since, StepRun.started_at < until,
               StepRun.kind.in_(KINDS), *journey_scope(scope))
        .group_by(group, StepRun.kind, oversight))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    groups: dict[str, dict[str, Any]] = {}
    for name, kind, level, count in found:  # at most groups x kinds x levels aggregated rows
        row = groups.setdefault(name, {**{kind_: 0 for kind_ in KINDS}, **{f"_{level_}": 0 for level_ in LEVELS}})
        row[kind] += count
        if kind == "automated" or key == "kind":
            row[f"_{level}"] = row.get(f"_{level}", 0) + count
    rows = []
    for name in sorted(groups):
        row = groups[name]
        total = sum(row[kind] for kind in KINDS)
        levelled = total if key == "kind" else row["automated"]
        out = {key: name, "runs": total, **({} if key == "kind" else {kind: row[kind] for kind in KINDS}),
               "automated_share": round(row["automated"] / total, 4) if total else None}
        for level in LEVELS:
            out[f"{level}_share"] = round(row[f"_{level}"] / levelled, 4) if levelled else None
        rows.append(out)
    return rows
