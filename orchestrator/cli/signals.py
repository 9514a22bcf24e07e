"""`handoff signals ingest FILE`: feed JSON-lines signals through intake, then let the engine run."""

from __future__ import annotations

from typing import BinaryIO

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.intake.lines import read_lines
from orchestrator.intake.signals import MAX_RAW_BYTES, IntakeResult, IntakeStatus, ingest, oversized, source_problem
from orchestrator.journeys.drain import drain_signals
from orchestrator.runtime import Runtime


@click.group()
def signals() -> None:
    """Ingest signals: facts about accounts that drive journeys."""


@signals.command("ingest")
# Bytes, not text: lines are capped before they are held and decoded one by one.
@click.argument("file", type=click.File("rb"))
@click.option("--source", default="cli", show_default=True, help="Recorded as the signals' source.")
@pass_runtime
def ingest_command(runtime: Runtime, file: BinaryIO, source: str) -> None:
    """Ingest FILE, one JSON signal per line (`-` reads stdin). Exits 1 if any line was rejected."""
    problem = source_problem(source)
    if problem:
        raise click.BadParameter(problem, param_hint="--source")
    rejected = 0
    for line in read_lines(file, max_bytes=MAX_RAW_BYTES):
        if line.data is None:
            result = oversized(line.size)
        elif not line.data.strip():
            continue
        else:
            # One transaction per line: a bad line never undoes the good ones before it.
            with unit_of_work(runtime.sessions) as session:
                result = ingest(session=session, raw=line.data, source=source, now=runtime.clock.now(),
                                settings=runtime.settings)
        rejected += result.status == IntakeStatus.REJECTED
        click.echo(f"line {line.number}: {describe(result)}")
    _run_engine(runtime)
    if rejected:
        raise SystemExit(1)


def describe(result: IntakeResult) -> str:
    """`accepted signal 17`, `duplicate of signal 17`, `rejected: occurred_at: has no timezone; ...`."""
    if result.status == IntakeStatus.ACCEPTED:
        note = f" ({result.reason}; exception item {result.exception_id})" if result.exception_id else ""
        return f"accepted signal {result.signal_id}{note}"
    if result.status == IntakeStatus.DUPLICATE:
        return f"duplicate of signal {result.signal_id}"
    return f"rejected: {result.field}: {result.reason}" if result.field else f"rejected: {result.reason}"


def _run_engine(runtime: Runtime) -> None:
    report = drain_signals(sessions=runtime.sessions, settings=runtime.settings, now=runtime.clock.now())
    for batch in report.batches:
        click.echo(f"engine: {batch}")
