"""`handoff signals ingest FILE`: feed JSON-lines signals through intake, then let the engine run."""

from __future__ import annotations

from typing import BinaryIO

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.intake.lines import read_lines
from orchestrator.intake.signals import (
    MAX_RAW_BYTES,
    IntakeResult,
    IntakeStatus,
    ingest_many,
    oversized,
    source_problem,
)
from orchestrator.journeys.drain import drain_signals
from orchestrator.runtime import Runtime

# Lines per intake transaction.
INTAKE_BATCH = 100


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
    # Lines are stored in batches (one transaction each): a rejected line writes nothing, so a
    # bad line never undoes the good ones around it, and a batch costs a few statements.
    pending: list[tuple[int, bytes]] = []
    for line in read_lines(file, max_bytes=MAX_RAW_BYTES):
        if line.data is not None and not line.data.strip():
            continue
        if line.data is not None:
            pending.append((line.number, line.data))
            if len(pending) >= INTAKE_BATCH:
                rejected += _store(runtime, pending, source)
                pending = []
            continue
        rejected += _store(runtime, pending, source)
        pending = []
        rejected += 1
        click.echo(f"line {line.number}: {describe(oversized(line.size))}")
    rejected += _store(runtime, pending, source)
    _run_engine(runtime)
    if rejected:
        raise SystemExit(1)


def _store(runtime: Runtime, lines: list[tuple[int, bytes]], source: str) -> int:
    """Ingest these lines in one transaction, say what became of each; returns how many were rejected."""
    if not lines:
        return 0
    with unit_of_work(runtime.sessions) as session:
        results = ingest_many(session=session, raws=[data for _, data in lines], source=source,
                              now=runtime.clock.now(), settings=runtime.settings)
    for (number, _), result in zip(lines, results, strict=True):
        click.echo(f"line {number}: {describe(result)}")
    return sum(result.status == IntakeStatus.REJECTED for result in results)


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
