"""`handoff accounts health ACCOUNT`: an account's health score, what each measure contributed, its history."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.cli._format import table, when
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.intake.signals import find_account, parse_account_ref
from orchestrator.journeys.health import standing
from orchestrator.models import HealthScore
from orchestrator.runtime import Runtime


@click.group()
def accounts() -> None:
    """Accounts as Handoff sees them."""


@accounts.command("health")
@click.argument("account")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="History rows to show, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print what GET /accounts/{id}/health returns, as JSON.")
@pass_runtime
def health_command(runtime: Runtime, account: str, limit: int, as_json: bool) -> None:
    """The health score of ACCOUNT (an id, a domain, or SOURCE:EXTERNAL_ID): score, top reasons, each
    measure's points, and the score's history."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        found = find_account(session, ref=parse_account_ref(account))
        if found is None:
            raise click.BadParameter(f"no account matches {account!r}", param_hint="ACCOUNT")
        shown = standing(session, account=found, limit=limit)
        name = found.name
    if as_json:
        click.echo(json.dumps(_jsonable(shown), indent=2))
        return
    for line in _lines(name, shown):
        click.echo(line)


def _lines(name: str, shown: dict[str, Any]) -> list[str]:
    if shown["score"] is None:
        return [f"{name}: no health score (no model in force has scored it, and the CRM has none)"]
    source = {"crm_field": "the CRM's field", "imported": f"imported by {shown['model']}",
              "computed": f"computed by {shown['model']}"}.get(shown["source"], shown["source"])
    computed = f", {when(shown['computed_at'])}" if shown["computed_at"] else ""
    lines = [f"{name}: health {shown['score']} ({source}{computed})"]
    if shown["reasons"]:
        lines.append("Costing it most: " + "; ".join(shown["reasons"]))
    if shown["contributions"]:
        lines += ["", *table(["measure", "value", "points", "of"],
                             [(c["label"], _figure(c["value"], c.get("unit")), _figure(c["points"]),
                               _figure(c["max_points"])) for c in shown["contributions"]])]
    if shown["history"]:
        lines += ["", "History, newest first:",
                  *table(["at", "score", "was", "trigger", "dropped"],
                         [(when(row.computed_at), str(row.score), _figure(row.previous), row.trigger,
                           str(row.detail.get("dropped", ""))) for row in shown["history"]])]
    return lines


def _figure(value: float | None, unit: str | None = None) -> str:
    # Two decimals at most, never an exponent (an ARR measure reads 1200000, not 1.2e+06).
    if value is None:
        return "-"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return ("0" if text == "-0" else text) + (unit or "")


def _jsonable(shown: dict[str, Any]) -> dict[str, Any]:
    def row(score: HealthScore) -> dict[str, Any]:
        return {"id": score.id, "score": score.score, "previous": score.previous, "source": score.source,
                "computed_at": score.computed_at.isoformat(), "trigger": score.trigger,
                "dropped_signal_id": score.dropped_signal_id, "contributions": score.contributions}

    computed_at = shown["computed_at"]
    return {**shown, "computed_at": computed_at.isoformat() if computed_at else None,
            "history": [row(score) for score in shown["history"]]}
