"""A health score imported from Salesforce (Health_Score__c mapped to account.health), on SQLite and
PostgreSQL: the fake org's value becomes the account's score on the recompute job, and a fall below
the model's threshold sends one health.dropped that puts a task in front of the owner."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import URL

from orchestrator.journeys.drain import drain_signals
from orchestrator.models import Account, AccountHealth, Signal, Task
from orchestrator.worker.jobs import all_jobs, run_at
from tests.connectors.salesforce.test_end_to_end import Org
from tests.engine.conftest import HEADER
from tests.fakes.salesforce import FakeSalesforce, seed_users

CRM_HEALTH = """
    id: crm-health
    name: Health from the CRM
    stage: adopt
""" + HEADER + """
    health:
      imported: account.health
      dropped: {below: 50}
      measures:
        - {id: tickets, on: support.ticket_opened, measure: count, over: 30d, weight: 1, worst: 3, best: 0}
    enroll: {on: health.dropped}
    steps:
      - id: look
        kind: human
        assign: {to: account.owner}
        task:
          title: "Health of {{ account.name }} fell to {{ signal.score }}"
          recommend: "Salesforce says {{ signal.score }}, from {{ signal.previous }}."
          brief: [trigger, account]
        sla: {ack: 4 business hours, due: 2 business days}
"""


def test_the_salesforce_health_score_is_the_score_and_its_fall_reaches_the_owner_once(
        fresh_database: URL, tmp_path: Path) -> None:
    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        users = seed_users(fake.org)
        remote = fake.org.insert("Account", {"Name": "Initech", "Website": "initech.example",
                                             "OwnerId": users[1]["Id"], "Health_Score__c": 72.0})
        org = Org(fresh_database, fake, playbook=CRM_HEALTH)
        try:
            (recompute,) = [job for job in all_jobs(org.runtime) if job.id == "health.recompute"]

            def rescore() -> int:
                items = run_at(recompute, runtime=org.runtime, now=org.clock.now()).items
                drain_signals(sessions=org.runtime.sessions, settings=org.runtime.settings, now=org.clock.now())
                return items

            org.sync()
            assert rescore() == 1
            with org.runtime.sessions() as session:
                account = session.scalars(select(Account).where(Account.name == "Initech")).one()
                state = session.get(AccountHealth, account.id)
                assert (account.health, state.score, state.source) == (72, 72, "imported")

            fake.org.update("Account", remote["Id"], {"Health_Score__c": 41.0}, system=False)
            org.sync()
            assert rescore() == 1
            assert rescore() == 0  # the same score again: nothing new
            with org.runtime.sessions() as session:
                (dropped,) = session.scalars(select(Signal).where(Signal.type == "health.dropped")).all()
                assert (dropped.payload["score"], dropped.payload["previous"], dropped.payload["rule"]) \
                    == (41, 72, "below 50")
                (task,) = session.scalars(select(Task)).all()
                assert task.title == "Health of Initech fell to 41"
                assert "Salesforce says 41, from 72." in task.recommendation
                assert "- Score: 41/100 (imported from the CRM" in task.brief_text
        finally:
            org.runtime.close()
