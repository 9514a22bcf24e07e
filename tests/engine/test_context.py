from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orchestrator import models
from orchestrator.playbook.context import build_context
from orchestrator.playbook.templates import Template
from tests.factories import AccountFactory, DealFactory, OwnerFactory


def _journey(session, account, *, playbook_id="adopt-usage", enrolled_at, context=None, deal=None):
    version = models.PlaybookVersion(playbook_id=playbook_id, version=1, name=playbook_id, stage="adopt",
                                     checksum="x", source_text="", source_path=f"{playbook_id}.yaml")
    session.add(version)
    session.flush()
    journey = models.Journey(account_id=account.id, playbook_id=playbook_id, playbook_version_id=version.id,
                             enrollment_key=f"{playbook_id}:{account.id}", current_step_id="kickoff-call",
                             enrolled_at=enrolled_at, context=context or {},
                             deal_id=deal.id if deal is not None else None)
    session.add(journey)
    session.flush()
    return journey


def _signal(session, account, *, type="product.usage", payload=None, at, deal=None):
    signal = models.Signal(type=type, dedupe_key=f"{type}:{at.isoformat()}:{account.id}", account_id=account.id,
                           deal_id=deal.id if deal is not None else None, source="webhook",
                           payload=payload or {}, occurred_at=at)
    session.add(signal)
    session.flush()
    return signal


def test_account_fields_show_arr_as_a_float_and_days_in_stage_and_to_renewal(session, clock):
    owner = OwnerFactory(name="Ana Ruiz", email="ana@acme.example", role="csm")
    account = AccountFactory(name="Globex", arr=Decimal("120000.50"), owner=owner, stage="onboard",
                             stage_entered_at=clock.now() - timedelta(days=12),
                             renewal_date=datetime(2027, 1, 15, tzinfo=UTC))

    context = build_context(session, account=account, now=clock.now())

    assert context["account"]["name"] == "Globex"
    assert context["account"]["arr"] == 120000.5
    assert isinstance(context["account"]["arr"], float)
    assert context["account"]["days_in_stage"] == 12
    assert context["account"]["days_to_renewal"] == 53
    assert context["account"]["owner"] == {"name": "Ana Ruiz", "email": "ana@acme.example", "role": "csm"}
    assert context["owner"]["email"] == "ana@acme.example"
    assert context["now"] == clock.now()
    assert context["deal"] is None and context["signal"] is None and context["journey"] is None


def test_custom_attributes_are_merged_without_overriding_named_fields(session, clock):
    account = AccountFactory(name="Initech", attributes={"plan": "enterprise", "name": "WRONG", "arr": 1})

    view = build_context(session, account=account, now=clock.now())["account"]

    assert view["plan"] == "enterprise"
    assert view["name"] == "Initech"
    assert view["arr"] == 48000.0


def test_signal_payload_keys_are_readable_at_the_top_level(session, clock):
    account = AccountFactory()
    signal = _signal(session, account, payload={"active_users": 7, "type": "not-the-type"}, at=clock.now())

    view = build_context(session, account=account, now=clock.now(), signal=signal)["signal"]

    assert view["active_users"] == 7
    assert view["type"] == "product.usage"
    assert view["occurred_at"] == clock.now()
    assert view["source"] == "webhook"


def test_journey_context_values_and_days_enrolled_are_exposed(session, clock):
    account = AccountFactory()
    journey = _journey(session, account, enrolled_at=clock.now() - timedelta(days=3),
                       context={"kickoff_booked": True})

    view = build_context(session, account=account, now=clock.now(), journey=journey)["journey"]

    assert view["playbook_id"] == "adopt-usage"
    assert view["days_enrolled"] == 3
    assert view["current_step"] == "kickoff-call"
    assert view["kickoff_booked"] is True


def test_the_deal_defaults_to_the_signal_deal_with_its_owner(session, clock):
    rep = OwnerFactory(name="Bo Chen", role="ae")
    account = AccountFactory()
    deal = DealFactory(account=account, name="Globex expansion", amount=Decimal("30000"), owner=rep)
    signal = _signal(session, account, type="deal.closed_won", at=clock.now(), deal=deal)

    view = build_context(session, account=account, now=clock.now(), signal=signal)["deal"]

    assert view["name"] == "Globex expansion"
    assert view["amount"] == 30000.0
    assert view["owner"]["name"] == "Bo Chen"


def test_templates_render_against_the_context(session, clock):
    account = AccountFactory(name="Umbrella")
    signal = _signal(session, account, payload={"active_users": 3}, at=clock.now())
    context = build_context(session, account=account, now=clock.now(), signal=signal)

    template = Template("{{ account.name }}: {{ signal.active_users }} users, ARR {{ account.arr | money }}")
    text = template.render(context)

    assert text == "Umbrella: 3 users, ARR $48,000"


READ_ALIKE = [
    "account.arr > 40000 and account.plan == \"enterprise\"",
    "account.name == \"Initech\"",  # a custom field called name never shadows the account's
    "account.owner.email == \"ana@acme.example\" and account.csm == null",
    "account.days_to_renewal < 60 and account.days_in_stage >= 12",
    "account.nonexistent == null",
    "account",
    "account.owner",
    "signal.active_users * 2 + deal.amount",
    "signal.payload.active_users in [7, 8] and signal.type == \"product.usage\"",
    "journey.kickoff_booked and journey.days_enrolled == 3 and owner.role == \"csm\"",
    "coalesce(account.segment, lower(account.name)) == \"initech\" and account.stage_entered_at < now",
    "account.owner.name.missing",
]


def test_a_context_built_for_an_expression_s_reads_evaluates_exactly_as_the_whole_context(session, clock):
    from orchestrator.playbook.expressions import ExpressionError, parse_expression

    owner = OwnerFactory(name="Ana Ruiz", email="ana@acme.example", role="csm")
    account = AccountFactory(name="Initech", owner=owner, attributes={"plan": "enterprise", "name": "WRONG"},
                             stage_entered_at=clock.now() - timedelta(days=12),
                             renewal_date=clock.now() + timedelta(days=40))
    deal = DealFactory(account=account, amount=Decimal("30000"))
    signal = _signal(session, account, payload={"active_users": 7}, at=clock.now(), deal=deal)
    journey = _journey(session, account, enrolled_at=clock.now() - timedelta(days=3), context={"kickoff_booked": True})
    compared = 0
    for source in READ_ALIKE:
        expression = parse_expression(source)
        outcomes = []
        for reads in (None, expression.references()):
            context = build_context(session, account=account, now=clock.now(), signal=signal, journey=journey,
                                    reads=reads)
            try:
                outcomes.append(("value", expression.evaluate(context)))
            except ExpressionError as exc:
                outcomes.append(("error", str(exc)))
        assert outcomes[0] == outcomes[1], source
        compared += outcomes[0][0] == "value"
    assert compared >= len(READ_ALIKE) - 2  # most of them evaluate; the comparison is not of two errors


def test_a_context_for_an_expression_builds_only_the_parts_and_fields_it_reads(session, clock):
    from orchestrator.playbook.expressions import parse_expression

    account = AccountFactory(attributes={"plan": "enterprise", "tier": "gold"})
    deal = DealFactory(account=account)
    signal = _signal(session, account, payload={"active_users": 7}, at=clock.now(), deal=deal)

    reads = parse_expression("account.plan == \"enterprise\" and account.days_to_renewal > 1").references()
    context = build_context(session, account=account, now=clock.now(), signal=signal, reads=reads)

    assert set(context["account"]) == {"plan", "days_to_renewal"}
    assert context["signal"] is None and context["deal"] is None and context["owner"] is None
    assert context["now"] == clock.now()
