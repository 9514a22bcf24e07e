"""Replay history through the real engine, and simulate playbooks with no side effects.

`replay` is the one loop both the demo and the simulation use: signals are ingested in
the order they occurred, with a FrozenClock standing at each signal's `occurred_at`;
between signals the clock jumps to the next wait deadline so timeouts fire when they
would have; people's decisions (scripted `RepAction`s, or "everyone closes each task at
its due time") are made at their own times. Every event is its own transaction, as it
would be in a worker.

`simulate` runs that loop on a scratch in-memory SQLite database, seeded with a copy of
the CRM records (owners, accounts, contacts, deals) from the configured database, or
with the bundled sample data. The configured database is only ever read.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from os import PathLike
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from tabulate import tabulate

from orchestrator.audit import AuditAction
from orchestrator.clock import FrozenClock, ensure_utc
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.errors import HandoffError
from orchestrator.intake import signals as intake
from orchestrator.journeys import engine as engine_module
from orchestrator.journeys.drain import drain_signals, drain_timeouts
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    AuditEvent,
    Base,
    Contact,
    Deal,
    ExceptionItem,
    ExternalId,
    Journey,
    JourneyStatus,
    Owner,
    PlaybookVersion,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
)
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data

__all__ = [
    "RepAction", "ReplayReport", "SimulationError", "SimulationReport", "caps_hit", "copy_crm_records",
    "human_minutes", "read_signals_file", "render_simulation", "replay", "scratch_database", "simulate",
    "text_table",
    "steps_per_stage",
]

# What "closing a task" means for each kind when the simulation assumes people do their work.
DEFAULT_OUTCOMES = {TaskKind.ACTION: "done", TaskKind.APPROVAL: "approved", TaskKind.REVIEW: "published"}
# After the last signal, keep the clock moving this long so pending waits can time out.
DEFAULT_TAIL = timedelta(days=14)
# Skipped-step reasons that mean governance held an automation back (see engine/governance).
_GOVERNANCE_PREFIXES = ("customer-touch cap", "protected human zone")


class SimulationError(HandoffError):
    """The simulation cannot run: invalid playbooks, an unreadable signals file, ..."""


# -- the replay loop ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RepAction:
    """A person acting on a journey at a point in time: close a task, or override an automation.

    `account` is the account's domain and `step` the playbook step id; the open task
    (or the open override window) of that step on that account is the one acted on.
    """

    at: datetime
    account: str
    step: str
    outcome: str | None = None  # done, approved, rejected, published
    override: bool = False
    actor: str | None = None  # default: the task's owner (the account owner for overrides)
    reason: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RepAction:
        return cls(at=ensure_utc(datetime.fromisoformat(str(data["at"]))), account=str(data["account"]),
                   step=str(data["step"]), outcome=data.get("outcome"),
                   override=bool(data.get("override", False)), actor=data.get("actor"),
                   reason=str(data.get("reason", "")))


@dataclass
class ReplayReport:
    """What a replay did: intake results, people's actions, and the engine's counts."""

    started_at: datetime | None = None
    ended_at: datetime | None = None
    signals_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # "item N: field: reason"
    actions: Counter[str] = field(default_factory=Counter)  # outcome -> count, "override" included
    actions_not_applicable: list[str] = field(default_factory=list)  # nothing open to act on
    engine: Counter[str] = field(default_factory=Counter)  # merged ProcessReport counts
    timeouts: int = 0
    beyond_window: int = 0  # signals after `until`, left out


def replay(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    signals: Sequence[Mapping[str, Any] | str],
    clock: FrozenClock,
    actions: Sequence[RepAction] = (),
    until: datetime | None = None,
    work_tasks: bool = False,
    source: str = "replay",
) -> ReplayReport:
    """Drive the real intake and engine through `signals` in time order; see the module docstring.

    `until` defaults to the last event plus DEFAULT_TAIL. With `work_tasks`, every task
    still open at its due time is closed then by its owner with the default outcome
    (done / approved / published), so later steps of each journey run too.
    """
    report = ReplayReport()
    events: list[tuple[datetime, int, int, Any]] = []
    undated: list[Any] = []
    for index, raw in enumerate(signals):
        report.signals_read += 1
        at = _occurred_at(raw)
        if at is None:
            undated.append((index, raw))  # intake will say what is wrong with it
        else:
            events.append((at, 0, index, raw))
    for index, action in enumerate(actions):
        events.append((action.at, 1, index, action))
    events.sort(key=lambda event: event[:3])
    if not events and not undated:
        return report

    start = events[0][0] if events else clock.now()
    horizon = until or ((events[-1][0] if events else start) + DEFAULT_TAIL)
    clock.set(start)
    report.started_at = start
    for index, raw in undated:
        _ingest(sessions, settings, clock, raw, index, source, report)

    failed_tasks: set[int] = set()
    position = 0
    while True:
        now = clock.now()
        candidates = [_next_deadline(sessions, now, work_tasks)]
        if position < len(events):
            candidates.append(events[position][0])
        upcoming = [t for t in candidates if t is not None and t <= horizon]
        if not upcoming:
            break
        clock.set(max(min(upcoming), now))
        now = clock.now()
        report.timeouts += drain_timeouts(sessions=sessions, settings=settings, now=now)
        if work_tasks:
            _work_due_tasks(sessions, settings, now, report, failed_tasks)
        while position < len(events) and events[position][0] <= now:
            _, order, index, item = events[position]
            position += 1
            if order == 0:
                _ingest(sessions, settings, clock, item, index, source, report)
            else:
                _act(sessions, settings, now, item, report)
    if clock.now() < horizon:
        # Time runs on to the horizon even when nothing is due, so the window is what was asked for.
        clock.set(horizon)
        report.timeouts += drain_timeouts(sessions=sessions, settings=settings, now=horizon)
    report.ended_at = clock.now()
    report.beyond_window = sum(1 for event in events[position:] if event[1] == 0)
    return report


def _occurred_at(raw: Mapping[str, Any] | str) -> datetime | None:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return ensure_utc(datetime.fromisoformat(str(data["occurred_at"])))
    except (ValueError, KeyError, TypeError):
        return None


def _ingest(sessions: sessionmaker[Session], settings: Settings, clock: FrozenClock, raw: Any, index: int,
            source: str, report: ReplayReport) -> None:
    now = clock.now()
    with unit_of_work(sessions) as session:
        result = intake.ingest(session=session, raw=raw, source=source, now=now, settings=settings)
    if result.status == intake.IntakeStatus.ACCEPTED:
        report.accepted += 1
        for batch in drain_signals(sessions=sessions, settings=settings, now=now).batches:
            report.engine.update(batch.counts)
    elif result.status == intake.IntakeStatus.DUPLICATE:
        report.duplicates += 1
    else:
        where = f"{result.field}: " if result.field else ""
        report.rejected.append(f"item {index + 1}: {where}{result.reason}")


def _act(sessions: sessionmaker[Session], settings: Settings, now: datetime, action: RepAction,
         report: ReplayReport) -> None:
    with unit_of_work(sessions) as session:
        if action.override:
            step_run = session.scalars(
                select(StepRun).join(Journey, Journey.id == StepRun.journey_id)
                .join(Account, Account.id == Journey.account_id)
                .where(Account.domain == action.account, StepRun.step_id == action.step,
                       StepRun.override_until.is_not(None), StepRun.override_until >= now)
                .order_by(StepRun.id.desc()).limit(1)).first()
            if step_run is None:
                report.actions_not_applicable.append(f"{action.account} {action.step}: no open override window")
                return
            account = session.get(Account, step_run.journey.account_id)
            actor = action.actor or (account.owner.email if account and account.owner else "owner")
            engine_module.override_step(session=session, settings=settings, step_run_id=step_run.id,
                                        actor=actor, now=now, reason=action.reason)
            report.actions["override"] += 1
            return
        task = session.scalars(
            select(Task).join(StepRun, StepRun.id == Task.step_run_id)
            .join(Account, Account.id == Task.account_id)
            .where(Account.domain == action.account, StepRun.step_id == action.step,
                   Task.status.in_([str(s) for s in OPEN_STATUSES]))
            .order_by(Task.id.desc()).limit(1)).first()
        if task is None:
            report.actions_not_applicable.append(f"{action.account} {action.step}: no open task")
            return
        outcome = action.outcome or DEFAULT_OUTCOMES[TaskKind(task.kind)]
        engine_module.decide_task(session=session, settings=settings, task_id=task.id, outcome=outcome,
                                  actor=action.actor or task.owner.email, now=now)
        report.actions[outcome] += 1


def _next_deadline(sessions: sessionmaker[Session], now: datetime, work_tasks: bool) -> datetime | None:
    """The next moment after `now` when time alone moves something: a wait expires, a task falls due."""
    with unit_of_work(sessions) as session:
        moments = [session.scalar(select(func.min(Journey.wait_until)).where(
            Journey.status == JourneyStatus.WAITING, Journey.wait_until > now))]
        if work_tasks:
            moments.append(session.scalar(select(func.min(Task.due_at)).where(
                Task.status.in_([str(s) for s in OPEN_STATUSES]), Task.due_at > now)))
    found = [ensure_utc(m) for m in moments if m is not None]
    return min(found) if found else None


def _work_due_tasks(sessions: sessionmaker[Session], settings: Settings, now: datetime,
                    report: ReplayReport, failed: set[int]) -> None:
    with unit_of_work(sessions) as session:
        due = list(session.scalars(select(Task.id).where(
            Task.status.in_([str(s) for s in OPEN_STATUSES]), Task.due_at <= now).order_by(Task.due_at, Task.id)))
    for task_id in due:
        if task_id in failed:
            continue
        try:
            with unit_of_work(sessions) as session:
                task = session.get(Task, task_id)
                if task is None or task.status not in OPEN_STATUSES:
                    continue
                outcome = DEFAULT_OUTCOMES[TaskKind(task.kind)]
                engine_module.decide_task(session=session, settings=settings, task_id=task_id,
                                          outcome=outcome, actor=task.owner.email, now=now)
                report.actions[outcome] += 1
        except HandoffError as exc:
            # One task the engine refuses must not stop the run, nor be retried forever.
            failed.add(task_id)
            report.actions_not_applicable.append(f"task {task_id}: {exc}")


# -- the scratch database -----------------------------------------------------------------------

def scratch_database() -> Engine:
    """An empty in-memory SQLite database with Handoff's schema.

    StaticPool keeps the one connection that holds the in-memory database, so every
    session of the run sees the same data.
    """
    scratch = make_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(scratch)
    return scratch


_CRM_TABLES: tuple[type[Base], ...] = (Owner, Account, Contact, Deal, ExternalId)


def copy_crm_records(*, source: Engine, target: Engine) -> Counter[str]:
    """Copy owners, accounts, contacts, deals and external ids, ids kept, from `source` (read only)."""
    copied: Counter[str] = Counter()
    with source.connect() as reader, target.begin() as writer:
        for model in _CRM_TABLES:
            table: Table = model.__table__  # type: ignore[assignment]
            rows = [dict(row._mapping) for row in reader.execute(select(table).order_by(table.c.id))]
            managers: dict[int, int] = {}
            if model is Owner:
                # Managers may come later in id order; link them once everyone exists.
                for row in rows:
                    if row.get("manager_id") is not None:
                        managers[row["id"]] = row["manager_id"]
                        row["manager_id"] = None
            if rows:
                writer.execute(insert(table), rows)
            for owner_id, manager_id in managers.items():
                writer.execute(update(table).where(table.c.id == owner_id).values(manager_id=manager_id))
            copied[table.name] = len(rows)
        reader.rollback()
    return copied


def copy_active_playbooks(*, source: Engine, target: Engine, at: datetime) -> list[str]:
    """Copy the active playbook versions of `source` (read only) into `target`; their ids."""
    with Session(source) as reader:
        rows = [(v.playbook_id, v.name, v.stage, v.checksum, v.source_text, v.source_path, dict(v.templates or {}))
                for v in reader.scalars(select(PlaybookVersion).where(PlaybookVersion.active))]
        reader.rollback()
    with Session(target) as writer:
        for playbook_id, name, stage, digest, text, path, templates in rows:
            writer.add(PlaybookVersion(playbook_id=playbook_id, version=1, name=name, stage=stage, checksum=digest,
                                       source_text=text, source_path=path, templates=templates, active=True,
                                       applied_at=at, applied_by="simulation (active)"))
        writer.commit()
    return sorted(row[0] for row in rows)


# -- reports over what the engine did -----------------------------------------------------------

def iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def tasks_per_owner_week(session: Session) -> dict[str, dict[str, int]]:
    """Tasks created, by the person they were first given to and the ISO week they were created."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for email, created in session.execute(
            select(Owner.email, Task.created_at).join(Owner, Owner.id == Task.owner_id)):
        table[email][iso_week(created)] += 1
    return {owner: dict(sorted(weeks.items())) for owner, weeks in sorted(table.items())}


def steps_per_stage(session: Session) -> dict[str, dict[str, int]]:
    """Per journey stage: automated steps that ran, human and hybrid tasks, approvals asked, steps skipped."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    rows = session.execute(
        select(PlaybookVersion.stage, StepRun.kind, StepRun.status, StepRun.outcome)
        .join(Journey, Journey.id == StepRun.journey_id)
        .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id))
    for stage, kind, status, outcome in rows:
        has_task = bool(outcome) and "task_id" in outcome
        counts = table[stage]
        if kind == "automated":
            if status in (StepStatus.DONE, StepStatus.OVERRIDDEN):
                counts["automated"] += 1
            if has_task:
                counts["approvals"] += 1
            if status == StepStatus.SKIPPED:
                counts["skipped"] += 1
        elif kind in ("human", "hybrid") and has_task:
            counts[kind] += 1
    columns = ("automated", "approvals", "human", "hybrid", "skipped")
    return {stage: {column: table[stage][column] for column in columns} for stage in sorted(table)}


def caps_hit(session: Session) -> list[dict[str, Any]]:
    """Automations held back by a customer-touch cap or a protected human zone, oldest first."""
    rows = session.execute(
        select(StepRun.started_at, Journey.playbook_id, StepRun.step_id, Account.name, StepRun.reason)
        .join(Journey, Journey.id == StepRun.journey_id).join(Account, Account.id == Journey.account_id)
        .where(StepRun.status == StepStatus.SKIPPED).order_by(StepRun.started_at, StepRun.id))
    return [{"at": at.isoformat(), "playbook": playbook, "step": step, "account": account, "reason": reason}
            for at, playbook, step, account, reason in rows if reason.startswith(_GOVERNANCE_PREFIXES)]


def sla_load(session: Session) -> list[dict[str, Any]]:
    """Per day: how many task deadlines (due) and acknowledgement deadlines fall on it (UTC dates)."""
    due: Counter[date] = Counter()
    ack: Counter[date] = Counter()
    for due_at, ack_by in session.execute(select(Task.due_at, Task.ack_by)):
        due[due_at.date()] += 1
        if ack_by is not None:
            ack[ack_by.date()] += 1
    days = sorted(set(due) | set(ack))
    return [{"date": day.isoformat(), "due": due[day], "ack": ack[day]} for day in days]


def human_minutes(session: Session) -> dict[str, dict[str, int]]:
    """Estimated minutes of human work (the playbook's estimate_minutes), per owner per ISO week."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    rows = session.execute(
        select(Owner.email, Task.created_at, StepRun.outcome, StepRun.kind)
        .join(StepRun, StepRun.id == Task.step_run_id).join(Owner, Owner.id == Task.owner_id))
    for email, created, outcome, kind in rows:
        minutes = (outcome or {}).get("estimate_minutes")
        if kind in ("human", "hybrid") and minutes:
            table[email][iso_week(created)] += int(minutes)
    return {owner: dict(sorted(weeks.items())) for owner, weeks in sorted(table.items())}


def weeks_between(start: datetime, end: datetime) -> list[str]:
    """Every ISO week from the one `start` falls in to the one `end` falls in, empty ones included."""
    monday = (start - timedelta(days=start.isoweekday() - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    weeks = []
    while monday <= end:
        weeks.append(iso_week(monday))
        monday += timedelta(days=7)
    return weeks or [iso_week(start)]


def capacity(session: Session, *, weeks: list[str], estimates: Mapping[str, int]) -> dict[str, Any]:
    """The capacity question: per role and per owner, tasks per week (empty weeks as 0), the weekly
    average and peak, and estimated human hours; automated minutes saved from `[estimates]`."""
    per_owner: dict[str, Counter[str]] = defaultdict(Counter)
    per_role: dict[str, Counter[str]] = defaultdict(Counter)
    for email, role, created in session.execute(
            select(Owner.email, Owner.role, Task.created_at).join(Owner, Owner.id == Task.owner_id)):
        per_owner[email][iso_week(created)] += 1
        per_role[role or "(no role)"][iso_week(created)] += 1
    minutes_by_owner: Counter[str] = Counter()
    minutes_by_role: Counter[str] = Counter()
    for email, role, outcome, kind in session.execute(
            select(Owner.email, Owner.role, StepRun.outcome, StepRun.kind).select_from(Task)
            .join(StepRun, StepRun.id == Task.step_run_id).join(Owner, Owner.id == Task.owner_id)):
        minutes = (outcome or {}).get("estimate_minutes")
        if kind in ("human", "hybrid") and minutes:
            minutes_by_owner[email] += int(minutes)
            minutes_by_role[role or "(no role)"] += int(minutes)

    def rows(table: Mapping[str, Counter[str]], minutes: Counter[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for name in sorted(table):
            counts = [table[name].get(week, 0) for week in weeks]
            out[name] = {"weeks": dict(zip(weeks, counts, strict=True)),
                         "average": round(sum(counts) / len(weeks), 1), "peak": max(counts),
                         "human_hours": round(minutes[name] / 60, 1)}
        return out

    saved = 0
    unestimated = 0
    for (reason,) in session.execute(select(StepRun.reason).where(
            StepRun.kind == "automated", StepRun.status.in_([StepStatus.DONE, StepStatus.OVERRIDDEN]),
            StepRun.reason.like("% ran"))):
        action = reason[: -len(" ran")]
        if action in estimates:
            saved += estimates[action]
        else:
            unestimated += 1
    return {"weeks": weeks, "roles": rows(per_role, minutes_by_role), "owners": rows(per_owner, minutes_by_owner),
            "automated_minutes_saved": saved, "unestimated_automated_actions": unestimated}


def not_enrolled_reasons(session: Session, *, limit: int = 5) -> list[dict[str, Any]]:
    """The most frequent reasons a signal enrolled nobody (audited not_enrolled), most first."""
    rows = session.execute(
        select(AuditEvent.playbook_id, AuditEvent.rule, func.count().label("n"))
        .where(AuditEvent.action == AuditAction.NOT_ENROLLED)
        .group_by(AuditEvent.playbook_id, AuditEvent.rule).order_by(func.count().desc(), AuditEvent.rule)
        .limit(limit))
    return [{"playbook": playbook, "rule": rule, "signals": int(n)} for playbook, rule, n in rows]


# -- the simulation -----------------------------------------------------------------------------

@dataclass
class SimulationReport:
    playbooks: list[str]
    replay: ReplayReport
    seeded_from: str  # "the configured database" or "sample data"
    work_tasks: bool
    tasks_per_owner_week: dict[str, dict[str, int]]
    steps_per_stage: dict[str, dict[str, int]]
    sla_load: list[dict[str, Any]]
    caps_hit: list[dict[str, Any]]
    human_minutes: dict[str, dict[str, int]]
    journeys: dict[str, dict[str, int]]  # playbook -> status -> count
    exceptions: dict[str, int]
    capacity: dict[str, Any] = field(default_factory=dict)
    not_enrolled: list[dict[str, Any]] = field(default_factory=list)  # top reasons, when nothing enrolled

    def as_dict(self) -> dict[str, Any]:
        rep = self.replay
        return {
            "playbooks": self.playbooks,
            "seeded_from": self.seeded_from,
            "assumes_tasks_closed_when_due": self.work_tasks,
            "window": {"from": rep.started_at.isoformat() if rep.started_at else None,
                       "to": rep.ended_at.isoformat() if rep.ended_at else None},
            "signals": {"read": rep.signals_read, "accepted": rep.accepted, "duplicates": rep.duplicates,
                        "rejected": rep.rejected, "after_window": rep.beyond_window},
            "journeys": self.journeys,
            "tasks_per_owner_week": self.tasks_per_owner_week,
            "steps_per_stage": self.steps_per_stage,
            "sla_load": self.sla_load,
            "caps_hit": self.caps_hit,
            "human_hours_per_owner_week": {
                owner: {week: round(minutes / 60, 2) for week, minutes in weeks.items()}
                for owner, weeks in self.human_minutes.items()},
            "exceptions": self.exceptions,
            "timeouts": rep.timeouts,
            "capacity": self.capacity,
            "not_enrolled_top_reasons": self.not_enrolled,
        }


def read_signals_file(path: str | PathLike[str]) -> list[str]:
    """The non-blank lines of a JSON-lines signals file, unparsed (intake judges each one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line for line in handle.read().splitlines() if line.strip()]
    except OSError as exc:
        raise SimulationError(f"cannot read signals file {path}: {exc.strerror}") from None


def simulate(
    *,
    playbook_paths: Iterable[str | PathLike[str]],
    signals: Sequence[Mapping[str, Any] | str],
    settings: Settings,
    source: Engine | None = None,
    sample: bool = False,
    weeks: int | None = None,
    work_tasks: bool = True,
    with_active: bool = False,
) -> SimulationReport:
    """Replay `signals` against `playbook_paths` on a scratch database and report the load.

    The scratch database is seeded from `source` (read only), or with the sample data
    when `sample` is set. `weeks` limits the replay to that many weeks from the first
    signal. With `with_active`, the playbooks active in `source` run too (a candidate with the
    same id replaces its active version), so the candidates are judged beside what already runs.
    Nothing is written anywhere but the scratch database, which is discarded.
    """
    if source is None and not sample:
        raise SimulationError("nothing to seed the simulation with: give a source database or use sample data")
    paths = [str(p) for p in playbook_paths]
    scratch = scratch_database()
    try:
        sessions = make_session_factory(scratch)
        scratch_settings = dataclasses.replace(settings, database_url=scratch.url)
        if sample:
            with unit_of_work(sessions) as session:
                load_sample_data(session=session)
        else:
            assert source is not None
            copy_crm_records(source=source, target=scratch)
        clock = FrozenClock(_first_time(signals) or datetime.now().astimezone())
        active: list[str] = []
        if with_active:
            if source is None:
                raise SimulationError("--with-active needs the configured database, not --sample")
            active = copy_active_playbooks(source=source, target=scratch, at=clock.now())
        with unit_of_work(sessions) as session:
            applied = apply_playbooks(session=session, paths=paths, now=clock.now(), actor="simulation")
        if not applied.applied:
            errors = [str(f) for f in applied.findings if f.is_error]
            raise SimulationError("playbooks are invalid:\n  " + "\n  ".join(errors))
        until = None
        if weeks is not None:
            first = _first_time(signals)
            until = first + timedelta(weeks=weeks) if first else None
        replayed = replay(sessions=sessions, settings=scratch_settings, signals=signals, clock=clock,
                          until=until, work_tasks=work_tasks, source="simulation")
        with unit_of_work(sessions) as session:
            journeys: dict[str, Counter[str]] = defaultdict(Counter)
            for playbook_id, status, count in session.execute(
                    select(Journey.playbook_id, Journey.status, func.count())
                    .group_by(Journey.playbook_id, Journey.status)):
                journeys[playbook_id][status] = count
            exceptions = {category: count for category, count in session.execute(
                select(ExceptionItem.category, func.count()).group_by(ExceptionItem.category)
                .order_by(ExceptionItem.category))}
            candidates = {c.playbook_id for c in applied.changes}
            return SimulationReport(
                playbooks=sorted(candidates | set(active)),
                replay=replayed,
                seeded_from="sample data" if sample else "the configured database",
                work_tasks=work_tasks,
                tasks_per_owner_week=tasks_per_owner_week(session),
                steps_per_stage=steps_per_stage(session),
                sla_load=sla_load(session),
                caps_hit=caps_hit(session),
                human_minutes=human_minutes(session),
                journeys={k: dict(sorted(v.items())) for k, v in sorted(journeys.items())},
                exceptions=exceptions,
                capacity=capacity(session, weeks=weeks_between(replayed.started_at or clock.now(),
                                                               replayed.ended_at or clock.now()),
                                  estimates=settings.action_estimates),
                not_enrolled=[] if journeys else not_enrolled_reasons(session),
            )
    finally:
        scratch.dispose()


def _first_time(signals: Sequence[Mapping[str, Any] | str]) -> datetime | None:
    times = [t for t in (_occurred_at(raw) for raw in signals) if t is not None]
    return min(times) if times else None


# -- text rendering -----------------------------------------------------------------------------

def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> list[str]:
    """An indented plain-text table; the first `left` columns are text, the rest right-aligned numbers."""
    if not rows:
        return ["  (none)"]
    align = ["left"] * left + ["right"] * (len(headers) - left)
    text = tabulate([[str(cell) for cell in row] for row in rows], headers=list(headers), tablefmt="simple",
                    colalign=align, disable_numparse=True)
    return ["  " + line.rstrip() for line in text.splitlines()]


def _pivot(data: Mapping[str, Mapping[str, float]], first: str,
           fmt: Callable[[float], str] = lambda v: str(v)) -> list[str]:
    columns = sorted({week for weeks in data.values() for week in weeks})
    rows = [[owner, *(fmt(weeks.get(c, 0)) if weeks.get(c) else "." for c in columns),
             fmt(sum(weeks.values()))] for owner, weeks in data.items()]
    return text_table([first, *columns, "total"], rows) if rows else ["  (none)"]


def render_simulation(report: SimulationReport) -> list[str]:
    """The report as readable text tables."""
    rep = report.replay
    lines = [
        f"Simulated {', '.join(report.playbooks) or '(no playbooks)'} on {report.seeded_from}",
        f"  window {rep.started_at:%Y-%m-%d %H:%M} -> {rep.ended_at:%Y-%m-%d %H:%M} UTC"
        if rep.started_at and rep.ended_at else "  (no signals)",
        f"  signals: {rep.signals_read} read, {rep.accepted} accepted, {rep.duplicates} duplicate, "
        f"{len(rep.rejected)} rejected, {rep.beyond_window} after the window; "
        f"{rep.timeouts} wait timeouts fired",
        "  assumes every task is closed at its due time (approvals approved, drafts published)"
        if report.work_tasks else "  tasks are left open (only the steps signals start are counted)",
    ]
    lines += [f"    rejected {reason}" for reason in rep.rejected]
    lines += ["", "Tasks per owner per ISO week", *_pivot(report.tasks_per_owner_week, "owner")]
    lines += ["", "Human hours (estimate_minutes of human and hybrid steps) per owner per ISO week",
              *_pivot(report.human_minutes, "owner", lambda m: f"{m / 60:.1f}")]
    lines += ["", "Automated vs human steps per stage"]
    rows = [[stage, *counts.values()] for stage, counts in report.steps_per_stage.items()]
    lines += text_table(["stage", "automated", "approvals", "human", "hybrid", "skipped"], rows) if rows \
        else ["  (none)"]
    lines += ["", "SLA load: deadlines per day (UTC)"]
    lines += text_table(["date", "due", "ack"], [[d["date"], d["due"], d["ack"]] for d in report.sla_load]) \
        if report.sla_load else ["  (no tasks)"]
    lines += ["", f"Customer-touch caps and protected zones hit: {len(report.caps_hit)}"]
    lines += [f"  {c['at'][:16]} {c['playbook']}/{c['step']} on {c['account']}: {c['reason']}"
              for c in report.caps_hit]
    lines += ["", "Journeys per playbook"]
    statuses = [s.value for s in JourneyStatus]
    rows = [[pb, *(counts.get(s, 0) for s in statuses)] for pb, counts in report.journeys.items()]
    lines += text_table(["playbook", *statuses], rows) if rows else ["  (none)"]
    capacity_ = report.capacity
    for title, key in (("Capacity per role", "roles"), ("Capacity per owner", "owners")):
        table_ = capacity_.get(key) or {}
        lines += ["", f"{title}: tasks per ISO week (empty weeks count), weekly average and peak, human hours"]
        weeks = capacity_.get("weeks", [])
        rows = [[name, *row["weeks"].values(), row["average"], row["peak"], row["human_hours"]]
                for name, row in table_.items()]
        lines += text_table([key[:-1], *weeks, "avg", "peak", "hours"], rows) if rows else ["  (no tasks)"]
    if capacity_:
        lines += ["", f"Automated minutes saved ([estimates]): {capacity_['automated_minutes_saved']}"
                  + (f" ({capacity_['unestimated_automated_actions']} automated actions have no estimate)"
                     if capacity_["unestimated_automated_actions"] else "")]
    if not report.journeys:
        lines += ["", "Nothing enrolled. Top reasons:"]
        lines += [f"  {r['signals']:>5}  {r['playbook']}: {r['rule']}" for r in report.not_enrolled] \
            or ["  no signal of a type these playbooks enroll on"]
    lines += ["", "Exception items by category"]
    lines += [f"  {category:<20} {count}" for category, count in report.exceptions.items()] or ["  (none)"]
    return lines
