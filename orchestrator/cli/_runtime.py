"""How CLI commands get a Runtime: built lazily so `--help` never touches the database."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestrator.config import load_settings
from orchestrator.runtime import Runtime, build_runtime

F = TypeVar("F", bound=Callable[..., Any])


def get_runtime(ctx: click.Context, *, needs_owner: bool = True) -> Runtime:
    root = ctx.find_root()
    root.ensure_object(dict)
    runtime = root.obj.get("runtime")
    if runtime is None:
        settings = load_settings()
        if needs_owner:  # no placeholder owner: refuse before anything is done
            settings.require_exception_owner()
        logging.getLogger().setLevel(settings.log_level)
        # Alembic announces each migration step and APScheduler each job run at INFO; the
        # commands print their own summary.
        if settings.log_level != "DEBUG":
            logging.getLogger("alembic").setLevel(logging.WARNING)
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        runtime = build_runtime(settings)
        root.obj["runtime"] = runtime
        root.call_on_close(runtime.close)
    return runtime


def pass_runtime(command: F) -> F:
    """Give the decorated command a `runtime` first argument (refused without an exception owner)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(get_runtime(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_demo_runtime(command: F) -> F:
    """Like pass_runtime, for `handoff demo`, which brings its own configuration (the sample team's)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(get_runtime(click.get_current_context(), needs_owner=False), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
