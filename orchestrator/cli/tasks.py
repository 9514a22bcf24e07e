"""`handoff tasks list|show|ack|pause|resume|decide|feedback`: the human side of journeys, from a terminal."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session

from orchestrator.cli._format import table, when
from orchestrator.cli._options import ACTOR, RECORD_ID
from orchestrator.cli._runtime import pass_runtime
from orchestrator.cli.journeys import describe_journey
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.intake.signals import find_account, parse_account_ref
from orchestrator.journeys import engine
from orchestrator.models import OPEN_STATUSES, Journey, Task
from orchestrator.runtime import Runtime
from orchestrator.work.assignment import find_owner
from orchestrator.work.briefs import SCREEN_LIMIT, BriefOptions, live_brief
from orchestrator.work.entitlements import check_decider, known_actor
from orchestrator.work.feedback import give_feedback
from orchestrator.work.sla import pause_task, resume_task
from orchestrator.work.tasks import acknowledge_task, list_tasks


def _task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}")
    return task


def _read_text(path: str) -> str:
    try:
        with click.open_file(path, "rb") as stream:
            data: bytes = stream.read()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="--text") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text (byte {exc.start})", param_hint="--text") from exc


@click.group()
def tasks() -> None:
    """Tasks for people: actions, approvals and reviews, each with a brief and a deadline."""


@tasks.command("list")
@click.option("--owner", help="Only tasks owned by this person (an email).")
@click.option("--account", help="Only this account: an id, a domain, or SOURCE:EXTERNAL_ID.")
@click.option("--all", "show_all", is_flag=True, help="Include closed tasks.")
@pass_runtime
def list_command(runtime: Runtime, owner: str | None, account: str | None, show_all: bool) -> None:
    """List open tasks, the soonest due first."""
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as session:
        owner_id = account_id = None
        if owner is not None:
            found_owner = find_owner(session, email=owner)
            if found_owner is None:
                raise click.BadParameter(f"no owner has the email {owner!r}", param_hint="--owner")
            owner_id = found_owner.id
        if account is not None:
            found_account = find_account(session, ref=parse_account_ref(account))
            if found_account is None:
                raise click.BadParameter(f"no account matches {account!r}", param_hint="--account")
            account_id = found_account.id
        rows = []
        for task, owner_email, account_name in list_tasks(session, owner_id=owner_id, account_id=account_id,
                                                          include_closed=show_all):
            due = when(task.due_at)
            if task.status not in OPEN_STATUSES:
                due += f" ({task.status})"
            elif task.due_at < now:
                due += " overdue"
            rows.append((str(task.id), task.kind, task.priority, owner_email, account_name, due, task.title))
    if not rows:
        click.echo("no tasks" if show_all else "no open tasks")
        return
    for line in table(("ID", "KIND", "PRIORITY", "OWNER", "ACCOUNT", "DUE", "TITLE"), rows):
        click.echo(line.rstrip())


@tasks.command("show")
@click.argument("task_id", type=RECORD_ID)
@pass_runtime
def show_command(runtime: Runtime, task_id: int) -> None:
    """Print task TASK_ID with its recommendation, draft and full brief."""
    with unit_of_work(runtime.sessions) as session:
        task = _task(session, task_id)
        click.echo(f"task {task.id}: {task.title}")
        click.echo(f"owner:    {task.owner.email} ({task.owner.name})")
        click.echo(f"kind:     {task.kind}    status: {task.status}"
                   + (f" ({task.outcome} by {task.completed_by})" if task.outcome else ""))
        click.echo(f"priority: {task.priority}")
        click.echo(f"ack by:   {when(task.ack_by)}")
        click.echo(f"due at:   {when(task.due_at)}")
        if task.journey_id is not None:
            click.echo(f"journey:  {task.journey_id}")
        if task.recommendation:
            click.echo(f"\nrecommendation:\n{task.recommendation}")
        if task.draft is not None:
            click.echo(f"\ndraft:\n{task.draft}")
        if task.brief_text:
            # Rendered from current data: the journey's state now, signals since the task marked [new].
            brief = live_brief(session, task=task, now=runtime.clock.now(), limit=SCREEN_LIMIT,
                               options=BriefOptions.from_settings(runtime.settings))
            click.echo(f"\nbrief (live; the CRM task holds it as created):\n{brief.text}")


@tasks.command("ack")
@click.argument("task_id", type=RECORD_ID)
@click.option("--by", "by", required=True, type=ACTOR,
              help="Who acknowledges it: the assignee or their manager (an email).")
@pass_runtime
def ack_command(runtime: Runtime, task_id: int, by: str) -> None:
    """Acknowledge task TASK_ID: someone has seen it and owns it (stops the ack clock)."""
    with unit_of_work(runtime.sessions) as session:
        task = _task(session, task_id)
        actor = known_actor(session, email=by)
        check_decider(session, task=task, actor=actor)
        task = acknowledge_task(session, task=task, actor=actor.email, now=runtime.clock.now())
        click.echo(f"task {task.id} acknowledged at {when(task.acknowledged_at)}; due {when(task.due_at)}")


@tasks.command("pause")
@click.argument("task_id", type=int)
@click.option("--by", "by", required=True, help="The assignee or their manager (an email).")
@click.option("--reason", default="waiting on the customer", show_default=True)
@pass_runtime
def pause_command(runtime: Runtime, task_id: int, by: str, reason: str) -> None:
    """Stop task TASK_ID's SLA clock while it waits on the customer."""
    with unit_of_work(runtime.sessions) as session:
        task = _task(session, task_id)
        actor = known_actor(session, email=by)
        check_decider(session, task=task, actor=actor)
        changed = pause_task(session, settings=runtime.settings, task=task, actor=actor.email,
                             now=runtime.clock.now(), reason=reason)
        click.echo(f"task {task.id} paused at {when(task.paused_at)}" if changed
                   else f"task {task.id} was already paused (since {when(task.paused_at)})")


@tasks.command("resume")
@click.argument("task_id", type=int)
@click.option("--by", "by", required=True, help="The assignee or their manager (an email).")
@pass_runtime
def resume_command(runtime: Runtime, task_id: int, by: str) -> None:
    """Restart task TASK_ID's SLA clock with the business time it had left."""
    with unit_of_work(runtime.sessions) as session:
        task = _task(session, task_id)
        actor = known_actor(session, email=by)
        check_decider(session, task=task, actor=actor)
        changed = resume_task(session, settings=runtime.settings, task=task, actor=actor.email,
                              now=runtime.clock.now())
        click.echo(f"task {task.id} resumed; due {when(task.due_at)}" if changed
                   else f"task {task.id} was not paused; due {when(task.due_at)}")


@tasks.command("decide")
@click.argument("task_id", type=RECORD_ID)
@click.argument("outcome")
@click.option("--by", "by", required=True, type=ACTOR,
              help="Who decided: the assignee or up their manager chain (an email).")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="Publish a review with this file's text (your edit of the draft; - for stdin).")
@pass_runtime
def decide_command(runtime: Runtime, task_id: int, outcome: str, by: str, text_file: str | None) -> None:
    """Close task TASK_ID with OUTCOME and move its journey on.

    OUTCOME is `done` for an action task, `approved` or `rejected` for an approval,
    `published` or `rejected` for a review. `published --text FILE` sends your edited
    draft instead of the system's; the audit trail keeps both.
    """
    text = _read_text(text_file) if text_file is not None else None
    with unit_of_work(runtime.sessions) as session:
        # The same rule as the API: the assignee or someone up their manager chain, never the requester.
        task = _task(session, task_id)
        actor = known_actor(session, email=by)
        check_decider(session, task=task, actor=actor)
        task = engine.decide_task(session=session, settings=runtime.settings, task_id=task_id,
                                  outcome=outcome, actor=actor.email, now=runtime.clock.now(), text=text)
        click.echo(f"task {task.id} {task.outcome} by {actor.email}")
        journey = session.get(Journey, task.journey_id) if task.journey_id is not None else None
        if journey is not None:
            click.echo(f"journey {journey.id} ({journey.playbook_id}): {describe_journey(journey)}")



@tasks.command("feedback")
@click.argument("task_id", type=RECORD_ID)
@click.option("--useful/--not-useful", "useful", required=True, default=None,
              help="Was this task worth your time?")
@click.option("--note", default="", help="Why (the playbook's writer reads it).")
@click.option("--by", "by", required=True, type=ACTOR,
              help="Who says so: the assignee or up their manager chain (an email).")
@pass_runtime
def feedback_command(runtime: Runtime, task_id: int, useful: bool, note: str, by: str) -> None:
    """Say whether task TASK_ID was useful; a second verdict by the same person replaces the first."""
    with unit_of_work(runtime.sessions) as session:
        task = _task(session, task_id)
        actor = known_actor(session, email=by)
        give_feedback(session, task=task, actor=actor, by=actor.email, useful=useful, note=note,
                      now=runtime.clock.now())
        click.echo(f"task {task.id}: {'useful' if useful else 'not useful'}, by {actor.email}")
