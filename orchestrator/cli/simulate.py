"""`handoff playbooks simulate`: replay history against playbooks on a scratch database, with no side effects."""

from __future__ import annotations

import json

import click

from orchestrator.cli._runtime import get_runtime
from orchestrator.config import load_settings
from orchestrator.replay.simulation import read_signals_file, render_simulation
from orchestrator.replay.simulation import simulate as run_simulation


@click.command("simulate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--signals", "signals_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="History to replay: JSON lines, one signal per line (as `handoff signals ingest` reads).")
@click.option("--weeks", type=click.IntRange(min=1), default=None,
              help="Replay only this many weeks from the first signal.")
@click.option("--sample", is_flag=True,
              help="Use the bundled sample owners and accounts instead of the configured database's.")
@click.option("--leave-tasks-open", is_flag=True,
              help="Do not assume people close each task at its due time (later steps then never run).")
@click.option("--with-active", is_flag=True,
              help="Also run the playbooks active in the configured database (a PATH playbook with the same id "
                   "replaces its active version).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def simulate(ctx: click.Context, paths: tuple[str, ...], signals_file: str, weeks: int | None, sample: bool,
             leave_tasks_open: bool, with_active: bool, as_json: bool) -> None:
    """Replay SIGNALS against the playbooks in PATH... and report the load; nothing is written.

    Owners and accounts are copied from the configured database into an in-memory
    scratch database (or taken from the sample data with --sample); the real intake and
    engine run there with a frozen clock. Reports tasks per owner per week, automated vs
    human steps per stage, the SLA load, caps hit and estimated human hours.
    """
    signals = read_signals_file(signals_file)
    if sample:
        settings, source = load_settings(), None
    else:
        runtime = get_runtime(ctx)
        settings, source = runtime.settings, runtime.engine
    report = run_simulation(playbook_paths=paths, signals=signals, settings=settings, source=source,
                            sample=sample, weeks=weeks, work_tasks=not leave_tasks_open, with_active=with_active)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        for line in render_simulation(report):
            click.echo(line)
