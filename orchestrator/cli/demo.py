"""`handoff demo`: run the whole loop on the bundled sample data and print what happened."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli._runtime import pass_demo_runtime
from orchestrator.config import DEFAULT_CONFIG_FILE, with_config_file
from orchestrator.replay.demo import render_demo, run_demo
from orchestrator.replay.samples import sample_config_path
from orchestrator.runtime import Runtime


@click.command()
@pass_demo_runtime
def demo(runtime: Runtime) -> None:
    """Run the loop on sample accounts and a month of signals, then print a summary."""
    if runtime.settings.config_file is None:
        # The demo and every command after it read the same configuration: the sample team's,
        # written where they all look for it (./handoff.toml), never a built-in default.
        path = Path(DEFAULT_CONFIG_FILE)
        with path.open("x", encoding="utf-8") as handle:  # never over a file of the user's
            handle.write(sample_config_path().read_text(encoding="utf-8"))
        runtime.settings = with_config_file(runtime.settings, path)
        click.echo(f"wrote {path} (the sample team's configuration); later commands in this folder read it")
    runtime.settings.require_exception_owner()
    click.echo(f"Replaying a month of sample signals into {runtime.settings.describe()['database']} ...")
    result = run_demo(runtime=runtime)
    for line in render_demo(result):
        click.echo(line)
