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


def get_runtime(ctx: click.Context) -> Runtime:
    root = ctx.find_root()
    root.ensure_object(dict)
    runtime = root.obj.get("runtime")
    if runtime is None:
        settings = load_settings()
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
    """Give the decorated command a `runtime` first argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(get_runtime(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
