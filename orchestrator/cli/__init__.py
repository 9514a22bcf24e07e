"""The `handoff` command line. Commands are thin: parse, call a service, print."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from orchestrator import __version__, schema
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import RowBusy
from orchestrator.errors import HandoffError
from orchestrator.runtime import Runtime


class HandoffGroup(click.Group):
    """Turns errors meant for people into one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HandoffError as exc:
            click.echo(f"handoff: error: {exc}", err=True)
            sys.exit(2)
        except RowBusy:
            click.echo("handoff: error: another worker is changing the same records; run the command again",
                       err=True)
            sys.exit(75)  # EX_TEMPFAIL: nothing was changed, and trying again will do
        except click.BadParameter as exc:
            # A wrong value is one line naming the parameter; the usage text adds nothing to it.
            click.echo(f"handoff: error: {_parameter_name(exc, ctx)}: {exc.message}", err=True)
            sys.exit(2)
        except IntegrityError as exc:
            # Two writers raced for the same unique row (two `playbooks apply` at once, say).
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            click.echo(f"handoff: error: another change got there first ({first}); run the command again",
                       err=True)
            sys.exit(2)
        except (OperationalError, ProgrammingError) as exc:
            click.echo(f"handoff: error: {database_problem(exc)}", err=True)
            sys.exit(2)


# SQLSTATEs of a schema that is behind the code: undefined table, undefined column.
_MISSING_SCHEMA_STATES = frozenset({"42P01", "42703"})
_MISSING_SCHEMA_SQLITE = ("no such table", "no such column")
# Class 08 (connection exception) and 57P0x (shutdown, terminated by an administrator).
_LOST_CONNECTION_PREFIXES = ("08", "57P")


def database_problem(exc: DBAPIError) -> str:
    """One line for a database error; the migration hint only when the schema is what is missing."""
    first = str(exc.orig).strip().splitlines()[0] if exc.orig and str(exc.orig).strip() else type(exc).__name__
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state in _MISSING_SCHEMA_STATES or first.startswith(_MISSING_SCHEMA_SQLITE):
        return f"database: {first} (has `handoff db upgrade` been run?)"
    if exc.connection_invalidated or state.startswith(_LOST_CONNECTION_PREFIXES):
        return f"database: the connection was lost ({first}); run the command again"
    return f"database: {first}"


def _parameter_name(exc: click.BadParameter, ctx: click.Context) -> str:
    if exc.param_hint is not None:
        hint = exc.param_hint
        return " / ".join(hint) if isinstance(hint, (list, tuple)) else str(hint)
    if exc.param is not None:
        return exc.param.get_error_hint(exc.ctx or ctx).replace("'", "")
    return "input"


@click.group(cls=HandoffGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Handoff: software does the routine of the customer journey, people own the judgment calls."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
def version() -> None:
    """Print the installed Handoff version."""
    click.echo(f"handoff {__version__}")


@main.group()
def db() -> None:
    """Create and migrate the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_runtime
def db_upgrade(runtime: Runtime, revision: str) -> None:
    """Migrate the database schema up to the latest revision."""
    schema.upgrade(runtime.engine, revision)
    click.echo(f"database at revision {schema.current_revision(runtime.engine)}")


@db.command("current")
@pass_runtime
def db_current(runtime: Runtime) -> None:
    """Show the database's schema revision and the latest one available."""
    current = schema.current_revision(runtime.engine)
    click.echo(f"current: {current or '(empty)'}  head: {schema.head_revision(runtime.engine)}")


# Sub-commands live one module per idea; they import this module's nothing, so no cycle.
from orchestrator.cli.accounts import accounts  # noqa: E402
from orchestrator.cli.apikeys import apikeys  # noqa: E402
from orchestrator.cli.audit import audit  # noqa: E402
from orchestrator.cli.connectors import connectors, import_command, secrets, sync_command  # noqa: E402
from orchestrator.cli.demo import demo  # noqa: E402
from orchestrator.cli.email import email  # noqa: E402
from orchestrator.cli.engine import engine  # noqa: E402
from orchestrator.cli.exceptions import exceptions  # noqa: E402
from orchestrator.cli.journeys import journeys  # noqa: E402
from orchestrator.cli.lifecycle import init, status  # noqa: E402
from orchestrator.cli.outbox import outbox  # noqa: E402
from orchestrator.cli.playbooks import playbooks  # noqa: E402
from orchestrator.cli.report import report  # noqa: E402
from orchestrator.cli.reviews import reviews  # noqa: E402
from orchestrator.cli.signals import signals  # noqa: E402
from orchestrator.cli.simulate import simulate  # noqa: E402
from orchestrator.cli.tasks import tasks  # noqa: E402
from orchestrator.cli.worker import serve, tick_command, worker  # noqa: E402

for _command in (init, demo, status, playbooks, signals, audit, exceptions, tasks, journeys, engine,
                 email, apikeys, worker, serve, tick_command, report, outbox, connectors, sync_command,
                 import_command, secrets, reviews, accounts):
    main.add_command(_command)
playbooks.add_command(simulate)
