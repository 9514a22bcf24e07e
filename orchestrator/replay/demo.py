"""The demo: the whole loop on the configured database, with the bundled sample team and a month of signals.

`run_demo` migrates the database, applies the shipped playbooks, loads the sample
owners and accounts, and replays the sample signals through the real intake and
engine with a frozen clock that walks from signal to signal (wait timeouts fire on
the way). The sample reps work some of their tasks as they would in their CRM:
approve one nurture email and reject another, publish drafted reviews, mark calls
done, override one automation. Then it reads back what happened.

Running it again is harmless: the signals are duplicates by their dedupe keys, the
sample rows are found by their CRM ids, and the scripted decisions find no open task.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.clock import FrozenClock, ensure_utc
from orchestrator.config import Settings, with_config_file
from orchestrator.db import unit_of_work
from orchestrator.errors import HandoffError
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    ExceptionItem,
    Journey,
    JourneyStatus,
    OutboxMessage,
    OutboxStatus,
    Owner,
    StepRun,
    Task,
)
from orchestrator.playbook.store import ApplyReport, apply_playbooks
from orchestrator.replay.samples import (
    SampleReport,
    load_sample_data,
    sample_config_path,
    sample_decisions,
    sample_signals,
)
from orchestrator.replay.simulation import RepAction, ReplayReport, caps_hit, replay, steps_per_stage, text_table
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import Runtime

__all__ = ["DemoResult", "DemoSummary", "render_demo", "run_demo", "summarize"]

# The brief printed in full: the onboarding kickoff call, which shows every section.
_EXAMPLE = ("acme-robotics.example", "kickoff-call")


@dataclass(frozen=True)
class OwnerTasks:
    name: str
    email: str
    role: str
    open: int
    closed: int


@dataclass(frozen=True)
class ExampleTask:
    id: int
    title: str
    owner: str
    kind: str
    priority: str
    status: str
    ack_by: datetime | None
    due_at: datetime
    brief_text: str


@dataclass
class DemoSummary:
    """What the database holds after the run (all of it, not just this run's share)."""

    journeys: dict[str, dict[str, int]]
    tasks: list[OwnerTasks]
    example: ExampleTask | None
    steps: dict[str, dict[str, int]]
    caps: list[dict[str, Any]]
    exceptions: dict[str, int]
    outbox_crm: dict[str, int]
    outbox_other: dict[str, int]
    overrides: int


@dataclass
class DemoResult:
    database: str
    revision: str | None
    playbooks: ApplyReport
    samples: SampleReport
    replay: ReplayReport
    settings: Settings
    config_is_sample: bool
    summary: DemoSummary


def run_demo(*, runtime: Runtime) -> DemoResult:
    """Run the whole loop on the sample data against the runtime's database; see the module docstring."""
    schema.upgrade(runtime.engine)
    with unit_of_work(runtime.sessions) as session:
        applied = apply_playbooks(session=session, paths=[shipped_playbooks_dir()],
                                  now=runtime.clock.now(), actor="handoff demo")
        if not applied.applied:
            raise HandoffError("shipped playbooks are invalid: "
                               + "; ".join(str(f) for f in applied.findings if f.is_error))
    with unit_of_work(runtime.sessions) as session:
        samples = load_sample_data(session=session)

    settings = runtime.settings
    sample_config = settings.config_file is None
    if sample_config:  # no configuration of your own: the sample team's owners, calendar and caps
        settings = with_config_file(settings, sample_config_path())
    signals = sample_signals()
    clock = FrozenClock(ensure_utc(datetime.fromisoformat(signals[0]["occurred_at"])))
    replayed = replay(sessions=runtime.sessions, settings=settings, signals=signals, clock=clock,
                      actions=[RepAction.from_dict(row) for row in sample_decisions()], source="demo")
    with unit_of_work(runtime.sessions) as session:
        summary = summarize(session)
    return DemoResult(
        database=runtime.settings.describe()["database"], revision=schema.current_revision(runtime.engine),
        playbooks=applied, samples=samples, replay=replayed, settings=settings,
        config_is_sample=sample_config, summary=summary)


def summarize(session: Session) -> DemoSummary:
    """Journeys, tasks, automation mix, caps, exceptions and outbox, as the database holds them now."""
    journeys: dict[str, Counter[str]] = defaultdict(Counter)
    for playbook_id, status, count in session.execute(
            select(Journey.playbook_id, Journey.status, func.count()).group_by(Journey.playbook_id, Journey.status)):
        journeys[playbook_id][status] = count

    open_statuses = [str(s) for s in OPEN_STATUSES]
    per_owner: dict[int, Counter[str]] = defaultdict(Counter)
    for owner_id, status, count in session.execute(
            select(Task.owner_id, Task.status, func.count()).group_by(Task.owner_id, Task.status)):
        per_owner[owner_id]["open" if status in open_statuses else "closed"] += count
    tasks = []
    for owner in session.scalars(select(Owner).where(Owner.id.in_(per_owner)).order_by(Owner.name)):
        counts = per_owner[owner.id]
        tasks.append(OwnerTasks(owner.name, owner.email, owner.role, counts["open"], counts["closed"]))

    exceptions = {category: count for category, count in session.execute(
        select(ExceptionItem.category, func.count()).where(ExceptionItem.status == "open")
        .group_by(ExceptionItem.category).order_by(func.count().desc(), ExceptionItem.category))}
    outbox_crm: dict[str, int] = {}
    outbox_other: dict[str, int] = {}
    for target, kind, count in session.execute(
            select(OutboxMessage.target, OutboxMessage.kind, func.count())
            .where(OutboxMessage.status == OutboxStatus.PENDING)
            .group_by(OutboxMessage.target, OutboxMessage.kind).order_by(OutboxMessage.kind)):
        (outbox_crm if target == "crm" else outbox_other)[kind] = count
    overrides = session.scalar(select(func.count()).select_from(StepRun)
                               .where(StepRun.status == "overridden")) or 0
    return DemoSummary(
        journeys={k: dict(v) for k, v in sorted(journeys.items())}, tasks=tasks, example=_example(session),
        steps=steps_per_stage(session), caps=caps_hit(session), exceptions=exceptions,
        outbox_crm=outbox_crm, outbox_other=outbox_other, overrides=overrides)


def _example(session: Session) -> ExampleTask | None:
    domain, step_id = _EXAMPLE
    task = session.scalars(
        select(Task).join(StepRun, StepRun.id == Task.step_run_id).join(Account, Account.id == Task.account_id)
        .where(Account.domain == domain, StepRun.step_id == step_id).order_by(Task.id).limit(1)).first()
    if task is None:  # the sample rows were changed by hand; any task will do
        task = session.scalars(select(Task).order_by(Task.id).limit(1)).first()
    if task is None:
        return None
    return ExampleTask(id=task.id, title=task.title, owner=f"{task.owner.name} <{task.owner.email}>",
                       kind=task.kind, priority=task.priority, status=task.status, ack_by=task.ack_by,
                       due_at=task.due_at, brief_text=task.brief_text)


# -- text ---------------------------------------------------------------------------------------

def render_demo(result: DemoResult) -> list[str]:
    """The summary a person reads after `handoff demo`."""
    rep, summary = result.replay, result.summary
    stored = len(result.playbooks.stored)
    lines = [
        f"Handoff demo on {result.database} (schema {result.revision})",
        f"  playbooks: {len(result.playbooks.changes)} shipped, {stored} applied now"
        + ("" if stored else " (all already active)"),
        f"  sample data: {result.samples}",
        f"  configuration: {result.settings.config_file}"
        + (" (the sample team's; write a handoff.toml of your own to change it)" if result.config_is_sample
           else ""),
        f"  customer-touch cap across all playbooks: {result.settings.customer_touch_cap or 'none'}; "
        f"quiet hours: {result.settings.quiet_hours or 'none'}",
    ]
    if rep.started_at and rep.ended_at:
        lines.append(f"  replayed {rep.started_at:%Y-%m-%d} -> {rep.ended_at:%Y-%m-%d} with a frozen clock: "
                     f"{rep.signals_read} signals, {rep.accepted} accepted, {rep.duplicates} duplicate, "
                     f"{len(rep.rejected)} rejected; {rep.timeouts} wait timeouts fired")
    acted = ", ".join(f"{outcome} {count}" for outcome, count in sorted(rep.actions.items()))
    lines.append(f"  reps acted: {acted or 'nothing left to act on (already done in an earlier run)'}")

    lines += ["", "Journeys per playbook"]
    statuses = [s.value for s in JourneyStatus]
    rows = [[pb, *(counts.get(s, 0) for s in statuses), sum(counts.values())]
            for pb, counts in summary.journeys.items()]
    lines += text_table(["playbook", *statuses, "total"], rows)

    lines += ["", "Tasks per owner"]
    rows = [[t.name, t.role, t.open, t.closed, t.open + t.closed] for t in summary.tasks]
    lines += text_table(["owner", "role", "open", "closed", "total"], rows, left=2)

    totals: Counter[str] = Counter()
    for counts in summary.steps.values():
        totals.update(counts)
    people = totals["human"] + totals["hybrid"] + totals["approvals"]
    share = totals["automated"] / (totals["automated"] + people) if totals["automated"] + people else 0.0
    lines += ["", f"Automated vs human steps ({share:.0%} automated; {summary.overrides} override(s))"]
    rows = [[stage, *counts.values()] for stage, counts in summary.steps.items()]
    lines += text_table(["stage", "automated", "approvals", "human", "hybrid", "skipped"], rows)

    lines += ["", f"Customer-touch caps and protected zones hit: {len(summary.caps)}"]
    lines += [f"  {c['at'][:10]} {c['account']}: {c['playbook']}/{c['step']} skipped: {c['reason']}"
              for c in summary.caps]

    lines += ["", "Exception items (open) by category"]
    lines += [f"  {category:<20} {count}" for category, count in summary.exceptions.items()] or ["  (none)"]

    waiting = sum(summary.outbox_crm.values())
    lines += ["", f"Outbox: {waiting} message(s) waiting for the CRM"
                  + (f", {sum(summary.outbox_other.values())} for email/webhooks" if summary.outbox_other else "")]
    lines += [f"  {kind:<24} {count}" for kind, count in {**summary.outbox_crm, **summary.outbox_other}.items()]

    example = summary.example
    if example is not None:
        ack = f", ack by {example.ack_by:%Y-%m-%d %H:%M}Z" if example.ack_by else ""
        lines += ["", f"Example task #{example.id} ({example.kind}, {example.priority}, {example.status}): "
                      f"{example.title}",
                  f"  for {example.owner}{ack}, due {example.due_at:%Y-%m-%d %H:%M}Z", "  " + "-" * 70]
        lines += [f"  {line}" if line else "" for line in example.brief_text.splitlines()]
    lines += ["", "Next: `handoff audit acme-robotics.example` for one account's timeline, "
                  "`handoff exceptions list` for the queue."]
    return lines
