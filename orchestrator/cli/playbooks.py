"""`handoff playbooks ...`: validate, schema, apply, diff, list, history, activate, pause, resume, rules."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orchestrator.cli._format import table, when
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.runtime import Runtime

_PATHS = click.argument("paths", nargs=-1, required=True, type=click.Path())


@click.group()
def playbooks() -> None:
    """Write, check and apply playbooks (YAML)."""


def _summary(findings: list) -> str:
    errors = sum(1 for f in findings if f.is_error)
    warnings = len(findings) - errors
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


@playbooks.command()
@_PATHS
@click.option("--against", "against", metavar="DATABASE", default=None,
              help="Also check roles, named people and calendars against this deployment "
                   "(a database URL; calendars from the configuration HANDOFF_CONFIG names).")
def validate(paths: tuple[str, ...], against: str | None) -> None:
    """Check playbook files or folders; one line per finding, exit 1 on any error."""
    from orchestrator.playbook import validate_paths
    from orchestrator.playbook.loader import playbook_files

    findings = validate_paths(paths, against=_live_check(against) if against else None)
    for finding in findings:
        click.echo(str(finding))
    count = len(playbook_files(paths)[0])
    click.echo(f"{count} playbook file{'s' * (count != 1)} checked: {_summary(findings)}", err=True)
    if any(f.is_error for f in findings):
        sys.exit(1)


def _live_check(url: str) -> Any:
    """The `against` check for validate_paths: the deployment's people and calendars, read once."""
    import os

    from orchestrator.config import load_settings
    from orchestrator.database_url import parse_database_url
    from orchestrator.db import make_engine, make_session_factory
    from orchestrator.playbook.against import check_against, live_configuration

    settings = load_settings({**os.environ, "HANDOFF_DATABASE_URL": url})
    engine = make_engine(parse_database_url(url, allow_memory=False))
    try:
        with unit_of_work(make_session_factory(engine), read_only=True) as session:
            live = live_configuration(session, calendars=set(settings.calendars))
    finally:
        engine.dispose()
    return lambda playbook, doc, path: check_against(playbook, doc=doc, path=path, live=live)


@playbooks.command()
@click.argument("paths", nargs=-1, type=click.Path())
def schema(paths: tuple[str, ...]) -> None:
    """Print the JSON Schema of the playbook format (for editor completion).

    Signal types and field names offered for completion come from the data dictionary; PATHS
    (playbook folders) add the types and attributes of their signals.yaml files.
    """
    from orchestrator.playbook.catalog import catalog_near
    from orchestrator.playbook.json_schema import playbook_json_schema

    catalog, problem = catalog_near(paths) if paths else (None, None)
    if problem:
        click.echo(str(problem), err=True)
    click.echo(json.dumps(playbook_json_schema(catalog), indent=2))


@playbooks.command()
@click.argument("paths", nargs=-1, type=click.Path())
def fields(paths: tuple[str, ...]) -> None:
    """Print the data dictionary: every field a condition or template may read.

    PATHS (playbook folders) add the signal types and custom attributes of their signals.yaml files.
    """
    from orchestrator.playbook.catalog import catalog_near
    from orchestrator.playbook.dictionary import dictionary_rows

    catalog, problem = catalog_near(paths)
    if problem:
        click.echo(str(problem), err=True)
        sys.exit(1)
    click.echo("\n".join(table(["field", "kind", "what"], [list(row) for row in dictionary_rows(catalog)])))


@playbooks.command()
@_PATHS
@click.option("--actor", default=None, help="Who applies (default: $USER).")
@click.option("--show-diff/--no-show-diff", default=True, show_default=True,
              help="Print the text diff of changed playbooks.")
@pass_runtime
def apply(runtime: Runtime, paths: tuple[str, ...], actor: str | None, show_diff: bool) -> None:
    """Store a new version of each playbook whose file changed; nothing if any file is invalid."""
    import getpass

    from orchestrator.playbook.store import apply_playbooks

    who = actor or getpass.getuser()
    with unit_of_work(runtime.sessions) as session:
        report = apply_playbooks(session=session, paths=paths, now=runtime.clock.now(), actor=who)
    for finding in report.findings:
        click.echo(str(finding))
    if not report.applied:
        click.echo(f"nothing applied: {_summary(report.findings)}", err=True)
        sys.exit(1)
    for change in report.changes:
        if change.kind == "new":
            click.echo(f"{change.playbook_id}: applied as version {change.new_version} (new)")
        elif change.kind == "changed":
            click.echo(f"{change.playbook_id}: applied as version {change.new_version} "
                       f"(was {change.old_version}): {'; '.join(change.summary) or 'text changed'}")
            if show_diff:
                click.echo(change.diff, nl=False)
        else:
            click.echo(f"{change.playbook_id}: unchanged (version {change.old_version})")
    click.echo(f"{len(report.stored)} of {len(report.changes)} playbooks stored a new version", err=True)


@playbooks.command()
@_PATHS
@click.option("--show-diff/--no-show-diff", default=False, show_default=True,
              help="Also print the text diff of changed playbooks.")
@click.option("--from", "from_version", type=click.IntRange(1), default=None,
              help="With --to: compare two stored versions of the playbook ID given instead of paths.")
@click.option("--to", "to_version", type=click.IntRange(1), default=None, help="See --from.")
@pass_runtime
def diff(runtime: Runtime, paths: tuple[str, ...], show_diff: bool, from_version: int | None,
         to_version: int | None) -> None:
    """Compare files with the active versions (exit 2 when they differ), or versions N and M of ID.

    `handoff playbooks diff ID --from N --to M` prints what changed between two stored versions
    (steps, settings, named templates) and the text diff.
    """
    from orchestrator.playbook.store import diff_playbooks, version_diff

    if (from_version is None) != (to_version is None):
        raise click.UsageError("--from and --to go together")
    if from_version is not None and to_version is not None:
        if len(paths) != 1:
            raise click.UsageError("with --from and --to, give one playbook id")
        with unit_of_work(runtime.sessions) as session:
            change = version_diff(session=session, playbook_id=paths[0], from_version=from_version,
                                  to_version=to_version)
        if change.kind == "unchanged":
            click.echo(f"{change.playbook_id}: versions {from_version} and {to_version} are the same text")
            return
        click.echo(f"{change.playbook_id} version {from_version} -> {to_version}: "
                   + ("; ".join(change.summary) or "text changed"))
        click.echo(change.diff, nl=False)
        return
    with unit_of_work(runtime.sessions) as session:
        report = diff_playbooks(session=session, paths=paths)
    for finding in report.findings:
        click.echo(str(finding))
    for change in report.drifted:
        click.echo(change.headline())
        if show_diff and change.diff:
            click.echo(change.diff, nl=False)
    if report.findings:
        sys.exit(1)
    if report.drifted:
        click.echo(f"{len(report.drifted)} playbook(s) differ from the active versions", err=True)
        sys.exit(2)
    click.echo("no drift: the files match the active versions", err=True)


@playbooks.command("list")
@pass_runtime
def list_(runtime: Runtime) -> None:
    """List the active playbook versions; STATE says which are paused (no new enrollments)."""
    from orchestrator.journeys.pausing import paused_ids
    from orchestrator.playbook.store import list_playbooks

    with unit_of_work(runtime.sessions) as session:
        versions = list_playbooks(session=session)
        paused = paused_ids(session)
        rows = [(v.playbook_id, f"v{v.version}", v.stage, "paused" if v.playbook_id in paused else "active",
                 when(v.applied_at), v.applied_by, v.name) for v in versions]
    if not rows:
        click.echo("no playbooks applied yet; run `handoff playbooks apply playbooks/`", err=True)
        return
    for line in table(("PLAYBOOK", "VERSION", "STAGE", "STATE", "APPLIED", "BY", "NAME"), rows):
        click.echo(line)


@playbooks.command()
def rules() -> None:
    """List every rule the validator and lint check, with its explanation."""
    from orchestrator.playbook.lint import RULES

    for rule in RULES:
        click.echo(f"{rule.id}  ({rule.severity}, checked at {rule.checked})  {rule.title}")
        click.echo(f"    {rule.explanation}")


@playbooks.command()
@click.argument("playbook_id")
@pass_runtime
def history(runtime: Runtime, playbook_id: str) -> None:
    """Every stored version of PLAYBOOK_ID, newest first: who applied it, when, which is active."""
    from orchestrator.playbook.store import playbook_history

    with unit_of_work(runtime.sessions) as session:
        rows = [(f"v{v.version}", "active" if v.active else "-", when(v.applied_at), v.applied_by,
                 v.checksum[:12]) for v in playbook_history(session=session, playbook_id=playbook_id)]
    for line in table(("VERSION", "ACTIVE", "APPLIED", "BY", "CHECKSUM"), rows):
        click.echo(line)


@playbooks.command()
@click.argument("playbook_id")
@click.option("--version", "version", required=True, type=click.IntRange(1), help="The stored version to activate.")
@click.option("--actor", default=None, help="Who activates it (default: $USER).")
@pass_runtime
def activate(runtime: Runtime, playbook_id: str, version: int, actor: str | None) -> None:
    """Make stored version N of PLAYBOOK_ID active again (rollback without a copy); audited."""
    import getpass

    from orchestrator.playbook.store import activate_version

    who = actor or getpass.getuser()
    with unit_of_work(runtime.sessions) as session:
        activate_version(session=session, playbook_id=playbook_id, version=version,
                         now=runtime.clock.now(), actor=who)
    click.echo(f"{playbook_id}: version {version} is active; running journeys keep their own version")


@playbooks.command()
@click.argument("playbook_id")
@click.option("--by", "by", required=True, help="Who pauses it (an email), for the audit trail.")
@click.option("--reason", default="", help="Why; recorded in the audit trail.")
@click.option("--running", type=click.Choice(["continue", "park"]), default="continue", show_default=True,
              help="What running journeys do: continue as they are, or park in the exception queue until resume.")
@pass_runtime
def pause(runtime: Runtime, playbook_id: str, by: str, reason: str, running: str) -> None:
    """Stop new enrollments in PLAYBOOK_ID (whatever version is active); audited."""
    from orchestrator.journeys.pausing import pause_playbook

    with unit_of_work(runtime.sessions) as session:
        report = pause_playbook(session=session, settings=runtime.settings, playbook_id=playbook_id, actor=by,
                                now=runtime.clock.now(), reason=reason, park_running=running == "park")
    what = f"{len(report.parked)} running journeys parked" if running == "park" else \
        f"{report.running} running journeys continue"
    click.echo(f"{playbook_id}: paused, no new enrollments; {what}")


@playbooks.command()
@click.argument("playbook_id")
@click.option("--by", "by", required=True, help="Who resumes it (an email), for the audit trail.")
@click.option("--leave-parked", is_flag=True, help="Leave the journeys the pause parked in the exception queue.")
@pass_runtime
def resume(runtime: Runtime, playbook_id: str, by: str, leave_parked: bool) -> None:
    """Let PLAYBOOK_ID enroll again; journeys its pause parked wait again where they were; audited."""
    from orchestrator.journeys.pausing import resume_playbook

    with unit_of_work(runtime.sessions) as session:
        report = resume_playbook(session=session, playbook_id=playbook_id, actor=by, now=runtime.clock.now(),
                                 restore_parked=not leave_parked)
    click.echo(f"{playbook_id}: resumed, enrollments open again"
               + (f"; {len(report.resumed)} parked journeys wait again" if report.resumed else "")
               + (f"; {len(report.left)} left parked (their task was closed meanwhile): "
                  + ", ".join(map(str, report.left)) if report.left else ""))
