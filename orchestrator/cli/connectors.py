"""`handoff connectors list|check`, `handoff sync`, `handoff import FOLDER`, `handoff secrets key|encrypt`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors.base import Attribute, ConnectorContext, ConnectorError, Page, SourceConnector
from connectors.files import FilesConnector
from connectors.registry import (
    build_connector,
    connector_config,
    connector_status,
    data_dir,
    load_registry,
    printable_config,
)
from connectors.sync import SyncReport, source_names, sync
from orchestrator import crypto
from orchestrator.cli._format import table
from orchestrator.cli._runtime import pass_runtime
from orchestrator.errors import ConfigError
from orchestrator.playbook.catalog import CatalogError, FieldSpec, render_attributes
from orchestrator.runtime import Runtime


@click.group()
def connectors() -> None:
    """Outside systems: what is installed, configured and enabled, and whether it works."""


@connectors.command("list")
@pass_runtime
def list_command(runtime: Runtime) -> None:
    """Every connector with three separate columns: installed, configured, enabled."""
    registry = load_registry()
    rows = []
    for name in sorted(set(registry) | set(runtime.settings.connectors)):
        status = connector_status(name=name, settings=runtime.settings, registry=registry)
        entry = registry.get(name)
        installed = ("yes" if status.available else f"no ({status.problem})") if status.installed else "no"
        configured = "yes" if status.configured else (
            "default" if entry is not None and entry.cls is not None and entry.cls.default_enabled else "no")
        capabilities = ", ".join(entry.capabilities) if entry is not None else "-"
        rows.append([name, installed, configured, "yes" if status.enabled else "no", capabilities,
                     entry.distribution if entry is not None and entry.distribution else "-"])
    for line in table(["connector", "installed", "configured", "enabled", "does", "package"], rows):
        click.echo(line)


@connectors.command("check")
@click.argument("name")
@pass_runtime
def check_command(runtime: Runtime, name: str) -> None:
    """Test a connector's configuration and credentials and report mapping drift; exit 1 on a problem."""
    registry = load_registry()
    config = connector_config(name=name, settings=runtime.settings, registry=registry)
    for key, value in printable_config(name=name, config=config, registry=registry).items():
        click.echo(f"  {key} = {value}")
    connector = build_connector(name=name, settings=runtime.settings, registry=registry, clock=runtime.clock.now)
    try:
        problems = connector.check()
    finally:
        connector.close()
    if problems:
        for problem in problems:
            click.echo(f"{name}: problem: {problem}")
        sys.exit(1)
    click.echo(f"{name}: ok")


@connectors.command("fields")
@click.argument("name")
@click.option("--write", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the catalog file here (e.g. playbooks/salesforce.signals.yaml) instead of printing it.")
@pass_runtime
def fields_command(runtime: Runtime, name: str, path: Path | None) -> None:
    """The custom fields a source connector fills, as a signal catalog the playbook validator reads."""
    connector = build_connector(name=name, settings=runtime.settings, registry=load_registry(), clock=runtime.clock.now)
    try:
        if not isinstance(connector, SourceConnector):
            raise ConfigError(name, "is not a source connector: it fills no fields")
        described = connector.describe_attributes()
        text = render_attributes({entity: [_spec(attribute) for attribute in attributes]
                                  for entity, attributes in described.items()}, source=name)
    except (ConnectorError, CatalogError) as error:
        click.echo(f"{name}: cannot describe its fields: {error}", err=True)
        sys.exit(1)
    finally:
        connector.close()
    if path is None:
        click.echo(text, nl=False)
        return
    path.write_text(text, encoding="utf-8")
    count = sum(len(attributes) for attributes in described.values())
    click.echo(f"{name}: {count} custom field(s) written to {path}")


def _spec(attribute: Attribute) -> FieldSpec:
    # The connector speaks the catalog's words; render_attributes rejects any it does not know.
    return FieldSpec(name=attribute.name, label=attribute.label, kind=attribute.kind,  # type: ignore[arg-type]
                     format=attribute.format)  # type: ignore[arg-type]


@click.command("sync")
@click.argument("name", required=False)
@click.option("--full", is_flag=True, help="Read everything again, ignoring the stored cursor.")
@pass_runtime
def sync_command(runtime: Runtime, name: str | None, full: bool) -> None:
    """Pull records and signals from one source connector (or every enabled one) and print a summary."""
    names = [name] if name else source_names(runtime)
    if not names:
        click.echo("no enabled source connector has anything to pull (see `handoff connectors list`)")
        return
    for each in names:
        report = _with_progress(partial(_sync_one, runtime, each, full), label=each)
        _summary(report)


def _sync_one(runtime: Runtime, name: str, full: bool, progress: Callable[[SyncReport, Page], None]) -> SyncReport:
    return sync(runtime=runtime, name=name, full=full, progress=progress)


@click.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_runtime
def import_command(runtime: Runtime, folder: Path) -> None:
    """Load a folder of JSON/CSV exports (owners, accounts, contacts, deals, tasks, signals) once."""
    files_connector = FilesConnector(config={"folder": str(folder), "source": "files"},
                                     context=_context(runtime, name="files"))
    problems = files_connector.check()
    if problems:
        raise ConfigError(str(folder), problems[0])
    report = _with_progress(lambda progress: sync(runtime=runtime, name="files", full=True, progress=progress,
                                                  connector=files_connector, keep_cursor=False),
                            label=folder.name)
    _summary(report)


def _context(runtime: Runtime, *, name: str) -> ConnectorContext:
    return ConnectorContext(name=name, settings=runtime.settings, clock=runtime.clock.now,
                            data_dir=data_dir(runtime.settings))


def _with_progress(run: Callable[[Callable[[SyncReport, Page], None]], SyncReport], *, label: str) -> SyncReport:
    # The bar goes to stderr and only on a terminal: scripts and tests read the summary alone.
    console_progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), transient=True,
                                disable=not sys.stderr.isatty())
    with console_progress:
        task = console_progress.add_task(label, total=None, detail="")

        def advance(report: SyncReport, page: Page) -> None:
            console_progress.update(task, advance=1, detail=f"{report.fetched} fetched, {report.pages} pages")

        return run(advance)


def _summary(report: SyncReport) -> None:
    click.echo(report.summary())
    if report.skipped or report.signals_rejected:
        click.echo(f"  {report.skipped} records skipped, {report.signals_rejected} signals rejected:")
        for problem in report.problems[:10]:
            click.echo(f"    {problem}")
    if report.signals_stored:
        click.echo(f"  {report.signals_stored} new signals stored; `handoff engine run` evaluates them")


@click.group()
def secrets() -> None:
    """Keys and encrypted values for connector secrets (HANDOFF_SECRET_KEYS)."""


@secrets.command("key")
def key_command() -> None:
    """Print a new key; put it first in HANDOFF_SECRET_KEYS (keep the old ones after it to rotate)."""
    click.echo(crypto.generate_key())


@secrets.command("encrypt")
def encrypt_command() -> None:
    """Read a secret (hidden prompt, or stdin) and print `fernet:...` to paste into the config file."""
    value = click.prompt("secret", hide_input=True) if sys.stdin.isatty() else sys.stdin.read().strip()
    click.echo(crypto.encrypt(value))

