"""The bundled sample data: it loads, it loads only once, and it exercises every shipped playbook."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.models import Account, Contact, Deal, ExternalId, Owner
from orchestrator.playbook import load_playbook
from orchestrator.playbook.library import is_template_file
from orchestrator.replay.samples import (
    load_sample_data,
    sample_accounts,
    sample_decisions,
    sample_owners,
    sample_signals,
)
from orchestrator.resources import shipped_playbooks_dir


def _counts(session: Session) -> dict[str, int]:
    return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Owner, Account, Contact, Deal, ExternalId)}


def test_sample_data_loads_every_record_with_its_crm_ids(session: Session) -> None:
    report = load_sample_data(session=session)

    assert report.created["owner"] == len(sample_owners())
    assert report.created["account"] == len(sample_accounts())
    acme = session.scalars(select(Account).where(Account.domain == "acme-robotics.example")).one()
    assert acme.owner is not None and acme.owner.email == "priya.natarajan@acme.example"
    assert acme.csm is not None and acme.csm.email == "lena.fischer@acme.example"
    assert {c.name for c in acme.contacts} == {"Grace Park", "Luis Ortega"}
    assert acme.deals[0].attributes["champion_email"] == "grace@acme-robotics.example"
    sources = set(session.scalars(select(ExternalId.source).where(
        ExternalId.kind == "account", ExternalId.local_id == acme.id)))
    assert sources == {"salesforce", "hubspot"}
    priya = acme.owner
    assert priya.manager is not None and priya.manager.email == "maya.chen@acme.example"


def test_loading_sample_data_twice_adds_nothing_the_second_time(session: Session) -> None:
    load_sample_data(session=session)
    before = _counts(session)

    again = load_sample_data(session=session)

    assert _counts(session) == before
    assert again.total_created == 0 and again.external_ids_added == 0
    assert again.existing["account"] == len(sample_accounts())


def test_loading_keeps_what_the_engine_changed_on_existing_rows(session: Session) -> None:
    load_sample_data(session=session)
    acme = session.scalars(select(Account).where(Account.domain == "acme-robotics.example")).one()
    acme.stage = "adopt"
    session.flush()

    load_sample_data(session=session)

    session.refresh(acme)
    assert acme.stage == "adopt"


def test_sample_team_has_an_absent_and_an_inactive_person_in_three_timezones() -> None:
    owners = sample_owners()
    assert any(o.get("out_of_office_until") for o in owners)
    assert any(o.get("active") is False for o in owners)
    assert {o["timezone"] for o in owners} == {"America/New_York", "Europe/Berlin", "Europe/London"}
    assert {"ae", "csm", "sdr", "cs-lead"} <= {o["role"] for o in owners}


def test_sample_signals_trigger_every_shipped_playbook_and_the_edge_cases() -> None:
    signals = sample_signals()
    types = {s["type"] for s in signals}
    playbooks = [load_playbook(path) for path in sorted(shipped_playbooks_dir().rglob("*.yaml"))
                 if not is_template_file(path)]
    monitors = [monitor for playbook in playbooks for monitor in playbook.monitors]
    emitted = {monitor.emit for monitor in monitors}  # sent by a monitor over the samples, not a sample line
    healths = [playbook.health for playbook in playbooks if playbook.health is not None]
    emitted |= {"health.dropped"} if healths else set()  # sent when a health score falls

    assert {playbook.enroll.signal for playbook in playbooks} - emitted <= types
    assert {monitor.signal for monitor in monitors} <= types
    assert {t for health in healths for t in health.signal_types()} <= types
    assert {"support.ticket_opened", "support.escalation", "sentiment.negative", "account.churned",
            "expansion.signal"} <= types
    assert signals[0]["occurred_at"].startswith("2026-10-05")
    assert [s["occurred_at"] for s in signals] == sorted(s["occurred_at"] for s in signals)
    known = {a["domain"] for a in sample_accounts()}
    assert any(s["account"].get("domain") not in known | {None} for s in signals)  # an unknown account
    keys = [s["dedupe_key"] for s in signals if "dedupe_key" in s]
    assert len(keys) != len(set(keys))  # a duplicate delivery


def test_scripted_decisions_name_sample_accounts() -> None:
    known = {a["domain"] for a in sample_accounts()}
    decisions = sample_decisions()
    assert {d["account"] for d in decisions} <= known
    assert {"approved", "rejected", "published", "done"} <= {d.get("outcome") for d in decisions}
