import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.intake import signals
from orchestrator.intake.signals import IntakeStatus, ingest
from orchestrator.models import AuditEvent, ExceptionItem, ExternalId, Signal
from tests.factories import AccountFactory, DealFactory


def _signal(**overrides):
    raw = {"type": "product.usage", "account": {"domain": "acme.example"},
           "occurred_at": "2026-11-23T13:00:00Z", "payload": {"active_users": 7}}
    raw.update(overrides)
    return raw


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def acme(session):
    return AccountFactory(domain="acme.example")


@pytest.fixture
def intake(session, settings, clock):
    def run(raw, source="webhook"):
        return ingest(session=session, raw=raw, source=source, now=clock.now(), settings=settings)
    return run


def test_a_valid_signal_is_stored_for_its_account(session, acme, intake, clock):
    result = intake(_signal())

    assert result.status == IntakeStatus.ACCEPTED
    stored = session.get(Signal, result.signal_id)
    assert (stored.type, stored.account_id, stored.source) == ("product.usage", acme.id, "webhook")
    assert stored.occurred_at == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    assert stored.received_at == clock.now() and stored.processed_at is None
    assert stored.payload == {"active_users": 7}
    assert len(stored.dedupe_key) == 64


@pytest.mark.parametrize(("raw", "field", "message"), [
    (_signal(occurred_at="2026-11-23T13:00:00"), "occurred_at", "has no timezone"),
    (_signal(occurred_at="yesterday"), "occurred_at", "is not an ISO 8601 date and time"),
    (_signal(type="Product Usage"), "type", "dotted lowercase"),
    (_signal(type="usage"), "type", "dotted lowercase"),
    ({k: v for k, v in _signal().items() if k != "type"}, "type", "required"),
    (_signal(account={}), "account", "give exactly one of"),
    (_signal(account={"id": 1, "domain": "acme.example"}), "account", "got id and domain"),
    (_signal(account={"source": "salesforce"}), "account.external_id", "required"),
    (_signal(account={"id": "7"}), "account.id", "integer"),
    (_signal(deal={"external_id": "006"}), "deal.source", "required"),
    (_signal(payload=[1, 2]), "payload", "must be a JSON object"),
    (_signal(payload={"blob": "x" * (signals.MAX_PAYLOAD_BYTES + 1)}), "payload", "the limit is"),
    (_signal(colour="red"), "colour", "Unknown field"),
    ("{not json", None, "not valid JSON"),
    ("[1, 2]", None, "expected a JSON object"),
])
def test_validation_errors_name_the_field_and_store_nothing(session, acme, intake, raw, field, message):
    result = intake(raw)

    assert result.status == IntakeStatus.REJECTED
    assert result.field == field
    assert message.lower() in result.reason.lower()
    assert result.signal_id is None
    assert _count(session, Signal) == 0
    assert _count(session, ExceptionItem) == 0
    assert _count(session, AuditEvent) == 0


def test_a_signal_for_an_unknown_account_is_stored_and_queued_for_the_category_owner(session, intake):
    result = intake(_signal(account={"source": "salesforce", "external_id": "001XYZ"}))

    assert result.status == IntakeStatus.ACCEPTED
    assert session.get(Signal, result.signal_id).account_id is None
    item = session.get(ExceptionItem, result.exception_id)
    assert (item.category, item.signal_id, item.status) == ("unknown_account", result.signal_id, "open")
    assert item.owner == "data-steward@example.com"
    assert "ext:salesforce:001XYZ" in item.message
    # 14:00 UTC Monday is 09:00 in New York; 4 business hours later.
    assert item.respond_by == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def test_the_same_signal_twice_is_acknowledged_as_a_duplicate_of_the_first(session, acme, intake):
    first = intake(_signal())
    again = intake(json.dumps(_signal()), source="salesforce")

    assert again.status == IntakeStatus.DUPLICATE
    assert again.signal_id == first.signal_id
    assert _count(session, Signal) == 1
    assert _count(session, AuditEvent) == 1


def test_a_duplicate_of_an_unknown_account_signal_raises_no_second_exception(session, intake):
    intake(_signal(account={"domain": "ghost.example"}))
    again = intake(_signal(account={"domain": "ghost.example"}))

    assert again.status == IntakeStatus.DUPLICATE
    assert _count(session, ExceptionItem) == 1


def test_the_default_dedupe_key_ignores_key_order_and_offset_spelling_but_not_content(session, acme, intake):
    first = intake(_signal(payload={"a": 1, "b": 2}))
    same = intake(_signal(payload={"b": 2, "a": 1}, occurred_at="2026-11-23T14:00:00+01:00"))
    different = intake(_signal(payload={"a": 1, "b": 3}))

    assert same.status == IntakeStatus.DUPLICATE and same.signal_id == first.signal_id
    assert different.status == IntakeStatus.ACCEPTED


def test_a_caller_supplied_dedupe_key_decides_duplicates(session, acme, intake):
    first = intake(_signal(dedupe_key="evt_123"))
    later = intake(_signal(dedupe_key="evt_123", payload={"active_users": 9}))

    assert later.status == IntakeStatus.DUPLICATE and later.signal_id == first.signal_id
    assert session.get(Signal, first.signal_id).dedupe_key == "evt_123"


def test_accounts_resolve_by_id_external_id_and_case_insensitive_domain(session, intake):
    acme = AccountFactory(domain="Acme.Example")
    session.add(ExternalId(kind="account", local_id=acme.id, source="hubspot", external_id="42"))
    session.flush()
    refs = [{"id": acme.id}, {"source": "hubspot", "external_id": "42"}, {"domain": "ACME.example."}]

    results = [intake(_signal(account=ref, dedupe_key=f"k{i}")) for i, ref in enumerate(refs)]

    assert [session.get(Signal, r.signal_id).account_id for r in results] == [acme.id] * 3
    assert _count(session, ExceptionItem) == 0


def test_a_deal_reference_resolves_to_the_accounts_deal(session, acme, intake):
    deal = DealFactory(account=acme)
    session.add(ExternalId(kind="deal", local_id=deal.id, source="salesforce", external_id="006A"))
    session.flush()

    by_id = intake(_signal(type="deal.closed_won", deal={"id": deal.id}, dedupe_key="a"))
    by_ext = intake(_signal(type="deal.closed_won", deal={"source": "salesforce", "external_id": "006A"},
                            dedupe_key="b"))

    assert session.get(Signal, by_id.signal_id).deal_id == deal.id
    assert session.get(Signal, by_ext.signal_id).deal_id == deal.id


def test_a_deal_of_another_account_is_not_linked_and_is_queued(session, acme, intake):
    foreign = DealFactory()

    result = intake(_signal(type="deal.closed_won", deal={"id": foreign.id}))

    assert result.status == IntakeStatus.ACCEPTED
    assert session.get(Signal, result.signal_id).deal_id is None
    assert session.get(ExceptionItem, result.exception_id).category == "unknown_deal"


def test_intake_records_that_the_signal_was_received(session, acme, intake):
    result = intake(_signal())

    event = session.scalars(select(AuditEvent)).one()
    assert (event.action, event.account_id, event.rule) == ("signal_received", acme.id, "intake")
    assert event.detail["signal_id"] == result.signal_id


def test_pending_signals_are_the_unprocessed_ones_oldest_first(session, acme, settings, clock):
    ids = []
    for minutes in (10, 0, 5):
        result = ingest(session=session, raw=_signal(dedupe_key=f"k{minutes}"), source="webhook",
                        now=clock.now() + timedelta(minutes=minutes), settings=settings)
        ids.append(result.signal_id)

    pending = signals.pending_signals(session, limit=10)
    assert [s.id for s in pending] == [ids[1], ids[2], ids[0]]

    signals.mark_processed(pending[0], clock.now())
    session.flush()
    assert [s.id for s in signals.pending_signals(session, limit=1)] == [ids[2]]


@pytest.mark.parametrize(("text", "expected"), [
    ("17", signals.AccountRef(id=17)),
    ("salesforce:001:A", signals.AccountRef(source="salesforce", external_id="001:A")),
    ("Acme.Example", signals.AccountRef(domain="acme.example")),
])
def test_account_references_parse_from_command_line_text(text, expected):
    assert signals.parse_account_ref(text) == expected
