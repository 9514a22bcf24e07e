"""`handoff demo`: run the whole loop on the bundled sample data and print what happened."""

from __future__ import annotations

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.replay.demo import render_demo, run_demo
from orchestrator.runtime import Runtime


@click.command()
@pass_runtime
def demo(runtime: Runtime) -> None:
    """Run the loop on sample accounts and a month of signals, then print a summary."""
    click.echo(f"Replaying a month of sample signals into {runtime.settings.describe()['database']} ...")
    result = run_demo(runtime=runtime)
    for line in render_demo(result):
        click.echo(line)
