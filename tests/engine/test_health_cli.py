"""`handoff accounts health`: the score the engine kept, its reasons, contributions and history, as the API shows it."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from orchestrator.cli.accounts import _figure
from orchestrator.models import Account, Signal
from tests.api.test_account_health import MODEL
from tests.engine.conftest import install_playbook
from tests.engine.test_operator_cli import _now, operator  # noqa: F401  (the fixture)
from tests.factories import AccountFactory


def test_the_score_its_reasons_contributions_and_history(operator):  # noqa: F811
    at = _now()
    with operator.session() as session:
        install_playbook(session, MODEL, "adopt/health-model.yaml")
        account = AccountFactory(name="Hooli", domain="hooli.example", renewal_date=at + timedelta(days=25))
        # One ticket in 30 days: half the ticket points (37.5 of 75); 25 of 100 days to renewal: 6.25 of 25.
        operator.signal(session, "support.ticket_opened", account, at=at)
        operator.signal(session, "support.ticket_opened", account, at=at + timedelta(minutes=1))  # two: none

    shown = operator("accounts", "health", "hooli.example")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("Hooli: health 6 (computed by health-model, ")
    assert lines[1] == "Costing it most: Tickets: 2 (0 of 75 points); Days to renewal: 25 (6.2 of 25 points)"
    assert [line.split() for line in lines[3:6]] == [["measure", "value", "points", "of"],
                                                     ["Tickets", "2", "0", "75"],
                                                     ["Days", "to", "renewal", "25", "6.25", "25"]]
    history = lines[lines.index("History, newest first:") + 2:]
    first, second = _signal_ids(operator)
    assert [line.split()[2:5] for line in history] == [["6", "44", f"signal:{second}"],
                                                       ["44", "-", f"signal:{first}"]]

    as_json = json.loads(operator("accounts", "health", str(account.id), "--json", "--limit", "1").stdout)
    assert (as_json["score"], as_json["source"], as_json["model"]) == (6, "computed", "health-model")
    assert [(row["score"], row["previous"]) for row in as_json["history"]] == [(6, 44)]


def test_an_account_without_a_score_and_one_that_does_not_exist(operator):  # noqa: F811
    with operator.session():
        AccountFactory(name="Plain", domain="plain.example", health=None)
        AccountFactory(name="Crm", domain="crm.example", health=64)

    assert operator("accounts", "health", "plain.example").stdout.startswith("Plain: no health score")
    assert operator("accounts", "health", "crm.example").stdout == "Crm: health 64 (the CRM's field)\n"
    missing = operator("accounts", "health", "nobody.example")
    assert missing.exit_code == 2 and "no account matches 'nobody.example'" in missing.output
    assert operator.count(Account) == 2


def _signal_ids(operator) -> list[int]:  # noqa: F811
    with operator.session() as session:
        return list(session.scalars(select(Signal.id).where(Signal.type == "support.ticket_opened")
                                    .order_by(Signal.id)))


def test_a_figure_has_two_decimals_at_most_and_never_an_exponent():
    assert [_figure(v) for v in (6.25, 37.5, 75.0, 1_200_000.0, -0.004, None)] == \
        ["6.25", "37.5", "75", "1200000", "0", "-"]
    assert _figure(-20.0, "%") == "-20%"
