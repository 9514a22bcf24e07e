"""What a report is narrowed to besides its period: the dashboard's filters, the CLI's and the API's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, func, literal_column, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun
from orchestrator.reports._sql import iso_week

__all__ = ["EVERYTHING", "RUN_GROUPINGS", "Scope", "journey_conditions", "journey_scope", "run_dimension",
           "with_run_joins"]


@dataclass(frozen=True)
class Scope:
    """Narrow a report to one owner's team, one playbook stage, one playbook; "" is no narrowing.

    Each report applies these in SQL to what it counts: the team of the task's owner (of the
    account's owner where a report counts no tasks), the stage and id of the journey's playbook.
    """

    team: str = ""
    stage: str = ""
    playbook: str = ""

    def __bool__(self) -> bool:
        return bool(self.team or self.stage or self.playbook)


EVERYTHING = Scope()


def journey_conditions(scope: Scope, *, playbook_id: Any, playbook_version_id: Any,
                       account_id: Any) -> list[ColumnElement[bool]]:
    """WHERE conditions narrowing rows of a journey (its columns given) to `scope`.

    Sub-selects rather than joins, so a query that already joins these tables is not doubled.
    """
    conditions: list[ColumnElement[bool]] = []
    if scope.playbook:
        conditions.append(playbook_id == scope.playbook)
    if scope.stage:
        conditions.append(playbook_version_id.in_(select(PlaybookVersion.id)
                                                  .where(PlaybookVersion.stage == scope.stage)))
    if scope.team:
        conditions.append(account_id.in_(select(Account.id).join(Owner, Owner.id == Account.owner_id)
                                         .where(Owner.team == scope.team)))
    return conditions


def journey_scope(scope: Scope) -> list[ColumnElement[bool]]:
    """`journey_conditions` for a query over Journey."""
    return journey_conditions(scope, playbook_id=Journey.playbook_id,
                              playbook_version_id=Journey.playbook_version_id, account_id=Journey.account_id)


# Groupings of the reports over step runs (noise, time saved): the account owner's team and email, the
# playbook's stage, the playbook, the account's segment, the ISO week of the run's start.
RUN_GROUPINGS: tuple[str, ...] = ("playbook", "team", "owner", "stage", "segment", "week")


def run_dimension(name: str) -> Any:
    """The group a step run falls in under grouping `name` (over the joins `with_run_joins` adds)."""
    return {
        "playbook": Journey.playbook_id,
        "team": func.coalesce(_ACCOUNT_OWNER.team, _text("(no team)")),
        "owner": func.coalesce(_ACCOUNT_OWNER.email, _text("(no owner)")),
        "stage": _RUN_VERSION.stage,
        "segment": func.coalesce(_RUN_ACCOUNT.segment, _text("(no segment)")),
        "week": iso_week(StepRun.started_at),
    }[name]


def _text(value: str) -> Any:
    # Inline, not a bound parameter: PostgreSQL matches GROUP BY to SELECT only when the two
    # expressions are the same text, and two bound parameters are two different texts.
    return literal_column(f"'{value}'", String())


def with_run_joins(query: Any) -> Any:
    """`query` (over StepRun joined to Journey) with the account, its owner and the playbook version."""
    return (query.join(_RUN_ACCOUNT, _RUN_ACCOUNT.id == Journey.account_id)
            .outerjoin(_ACCOUNT_OWNER, _ACCOUNT_OWNER.id == _RUN_ACCOUNT.owner_id)
            .join(_RUN_VERSION, _RUN_VERSION.id == Journey.playbook_version_id))


_RUN_ACCOUNT = aliased(Account, name="run_account")
_ACCOUNT_OWNER = aliased(Owner, name="run_account_owner")
_RUN_VERSION = aliased(PlaybookVersion, name="run_version")
