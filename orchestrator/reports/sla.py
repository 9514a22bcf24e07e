"""The SLA report: adherence, breaches, escalations by rung, times to ack and done, time paused.

Tasks created in the period, grouped by one of GROUPINGS or one of them and the ISO week of
creation (`team,week`: the weekly trend per team). Every figure is a SQL aggregate (nearest-rank
percentiles over window functions, `_sql.nearest_rank`); each is defined once in the README
("SLA report figures").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Account, Journey, Owner, PlaybookVersion, SlaEvent, SlaEventKind, StepRun, Task
from orchestrator.reports._sql import count_if, first_of, iso_week, nearest_rank, parse_grouping, seconds_between
from orchestrator.reports.scope import EVERYTHING, Scope

__all__ = ["GROUPINGS", "FINISHED", "sla_report", "sla_tasks", "task_dimension"]

GROUPINGS: tuple[str, ...] = ("owner", "team", "stage", "playbook", "step", "segment", "week")
FINISHED = ("done", "approved", "published", "rejected")  # cancelled: nobody had to finish it


def task_dimension(name: str) -> Any:
    """The group a task falls in under grouping `name` (over the joins `_base` makes)."""
    columns: dict[str, Any] = {
        "owner": Owner.email,
        "team": func.coalesce(Owner.team, "(no team)"),
        "stage": func.coalesce(PlaybookVersion.stage, "(no playbook)"),
        "playbook": func.coalesce(Journey.playbook_id, "(no playbook)"),
        "step": func.coalesce(Journey.playbook_id + literal("/") + StepRun.step_id, "(no step)"),
        "segment": func.coalesce(Account.segment, "(no segment)"),
        "week": iso_week(Task.created_at),
    }
    return columns[name]


def _base(keys: tuple[str, ...], *, since: Any, until: Any, scope: Scope) -> Any:
    first_response = first_of(Task.acknowledged_at, Task.completed_at)
    query = (select(*[task_dimension(key).label(f"g{n}") for n, key in enumerate(keys)],
                    Task.id.label("task_id"), Task.ack_outcome, Task.due_outcome, Task.paused_seconds,
                    # Cancelled before anyone responded is no response; a late ack after it still is.
                    (seconds_between(first_response, Task.created_at) / 60.0).label("ack_min"),
                    Task.outcome, (seconds_between(Task.completed_at, Task.created_at) / 60.0).label("done_min"))
             .join(Owner, Owner.id == Task.owner_id)
             .join(Account, Account.id == Task.account_id)
             .outerjoin(Journey, Journey.id == Task.journey_id)
             .outerjoin(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
             .outerjoin(StepRun, StepRun.id == Task.step_run_id)
             .where(Task.created_at >= since, Task.created_at < until))
    if scope.team:
        query = query.where(Owner.team == scope.team)
    if scope.stage:
        query = query.where(PlaybookVersion.stage == scope.stage)
    if scope.playbook:
        query = query.where(Journey.playbook_id == scope.playbook)
    # Read three times (counts, ack times, done times): MATERIALIZED makes both databases join once.
    return query.cte("sla_tasks").prefix_with("MATERIALIZED")


def sla_tasks(*, since: Any, until: Any, scope: Scope, by: str, group: str, which: str,
              rung: int | None = None) -> Any:
    """SELECT of the ids of the tasks behind figure `which` of group `group` (under grouping `by`);
    `escalated` with a `rung`: those whose rung fired (each rung fires once per task)."""
    base = _base((by,), since=since, until=until, scope=scope)
    fired = select(SlaEvent.task_id).where(SlaEvent.kind == str(SlaEventKind.ESCALATED))
    if rung is not None:
        fired = fired.where(SlaEvent.level == rung)
    condition = {
        "tasks": None,
        "ack_breached": base.c.ack_outcome == "breached",
        "due_breached": base.c.due_outcome == "breached",
        "breaches": or_(base.c.ack_outcome == "breached", base.c.due_outcome == "breached"),
        "paused": base.c.paused_seconds > 0,
        "escalated": base.c.task_id.in_(fired),
    }[which]
    query = select(base.c.task_id).where(base.c.g0 == group)
    return query.where(condition) if condition is not None else query


def sla_report(*, sessions: sessionmaker[Session], since: Any, until: Any, by: str | None = None,
               scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
    """One row of figures per group for tasks created in [since, until).

    Ordered largest group first (ties by name); with a week, by group then week. Columns
    `escalations_rung_1..N` run to the highest rung fired in the whole report.
    """
    keys = parse_grouping(by, allowed=GROUPINGS, default="owner")
    base = _base(keys, since=since, until=until, scope=scope)
    g = [base.c[f"g{n}"] for n in range(len(keys))]
    names = [f"g{n}" for n in range(len(keys))]
    counts = (select(*g, func.count().label("tasks"),
                     count_if(base.c.ack_outcome == "met").label("ack_met"),
                     count_if(base.c.ack_outcome == "breached").label("ack_breached"),
                     count_if(base.c.due_outcome == "met").label("due_met"),
                     count_if(base.c.due_outcome == "breached").label("due_breached"),
                     func.coalesce(func.sum(base.c.paused_seconds), 0).label("paused_s"))
              .group_by(*g).subquery())
    acks = select(*g, base.c.ack_min).where(base.c.ack_min.is_not(None), func.coalesce(base.c.outcome, "")
                                            != "cancelled").subquery()
    dones = select(*g, base.c.done_min).where(base.c.done_min.is_not(None), base.c.outcome.in_(FINISHED)).subquery()
    ack = nearest_rank(acks, keys=names, value="ack_min", percents={"ack_median": 50, "ack_p90": 90})
    done = nearest_rank(dones, keys=names, value="done_min", percents={"done_median": 50, "done_p90": 90})
    query = (select(counts, ack.c.ack_median, ack.c.ack_p90, done.c.done_median, done.c.done_p90)
             .outerjoin(ack, and_(*[ack.c[n] == counts.c[n] for n in names]))
             .outerjoin(done, and_(*[done.c[n] == counts.c[n] for n in names])))
    fired = (select(*g, SlaEvent.level, func.count())
             .join(SlaEvent, and_(SlaEvent.task_id == base.c.task_id, SlaEvent.kind == str(SlaEventKind.ESCALATED)))
             .group_by(*g, SlaEvent.level))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
        rungs: dict[tuple[Any, ...], dict[int, int]] = {}
        for *group, level, count in session.execute(fired).tuples():
            rungs.setdefault(tuple(group), {})[int(level)] = int(count)
    top = max((level for levels in rungs.values() for level in levels), default=0)
    rows = [_figures(r, keys, rungs.get(tuple(r._mapping[n] for n in names), {}), top) for r in found]
    if "week" in keys:
        return sorted(rows, key=lambda row: (row["group"], row.get("week", "")))
    return sorted(rows, key=lambda row: (-row["tasks"], row["group"]))


def _share(met: int, breached: int) -> float | None:
    return round(met / (met + breached), 4) if met + breached else None


def _minutes(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _figures(r: Any, keys: tuple[str, ...], fired: dict[int, int], rungs: int) -> dict[str, Any]:
    row = r._mapping
    out: dict[str, Any] = {"group": row["g0"]}
    if len(keys) == 2:
        out[keys[1]] = row["g1"]
    out.update({
        "tasks": int(row["tasks"]),
        "ack_adherence": _share(int(row["ack_met"]), int(row["ack_breached"])),
        "due_adherence": _share(int(row["due_met"]), int(row["due_breached"])),
        "breaches": int(row["ack_breached"]) + int(row["due_breached"]),
        **{f"escalations_rung_{n}": fired.get(n, 0) for n in range(1, rungs + 1)},
        "ack_median_min": _minutes(row["ack_median"]), "ack_p90_min": _minutes(row["ack_p90"]),
        "done_median_min": _minutes(row["done_median"]), "done_p90_min": _minutes(row["done_p90"]),
        "paused_hours": round(int(row["paused_s"]) / 3600, 2),
    })
    return out
