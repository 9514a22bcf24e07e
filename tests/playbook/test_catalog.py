"""The signal catalog: shipped types with labelled, formatted fields, extendable by YAML."""

import re

import pytest

from orchestrator.playbook import catalog
from orchestrator.playbook.catalog import CatalogError, FieldSpec, load_catalog, parse_catalog


def test_shipped_fields_have_a_label_a_kind_and_a_display_format():
    assert catalog.field_spec("renewal.upcoming", "amount") == FieldSpec("amount", "Renewal amount", "number", "money")
    assert catalog.field_spec("product.usage", "usage_change_pct").format == "percent"
    assert catalog.field_spec("renewal.upcoming", "renewal_date").format == "date"
    assert catalog.field_spec("lead.created", "email").format == "person"
    assert catalog.field_spec("renewal.upcoming", "days_until_renewal") is None
    assert catalog.field_spec("product.usge", "active_users") is None


def test_a_field_the_catalog_does_not_list_is_described_from_its_name():
    assert catalog.describe_field("product.usage", "weekly_logins") == FieldSpec("weekly_logins", "Weekly logins")


def test_a_signals_file_in_the_playbooks_folder_adds_types_and_fields(tmp_path):
    (tmp_path / "signals.yaml").write_text(
        "signals:\n"
        "  trial.started:\n    label: Trial started\n    fields:\n      plan: {kind: text, label: Plan}\n"
        "  renewal.upcoming:\n    fields:\n      discount_pct: {kind: number, format: percent}\n"
        "attributes:\n  account:\n    tier: {kind: text, label: Support tier}\n", encoding="utf-8")
    found = load_catalog([tmp_path])
    assert found.field_spec("trial.started", "plan") == FieldSpec("plan", "Plan")
    assert found.field_spec("renewal.upcoming", "discount_pct").format == "percent"
    assert found.field_spec("renewal.upcoming", "amount").label == "Renewal amount"  # built-in kept
    assert found.attributes["account"]["tier"].label == "Support tier"
    assert not catalog.shipped_catalog().knows("trial.started")


@pytest.mark.parametrize(("text", "message"), [
    ("signals:\n  x.y:\n    fields:\n      a: {kind: money}\n",
     'x.yaml:4:17: signals.x.y.fields.a.kind: "money" is not a kind'),
    ("signals:\n  x.y:\n    fields:\n      a: {kind: number, format: dollars}\n",
     'x.yaml:4:33: signals.x.y.fields.a.format: "dollars" is not a display format'),
    ("signals:\n  x.y:\n    feilds: {}\n", 'x.yaml:3:5: signals.x.y.feilds: unknown key "feilds"'),
    ("attributes:\n  owner:\n    x: text\n", 'x.yaml:2:3: attributes.owner: custom attributes are declared for'),
])
def test_a_wrong_catalog_file_says_where(text, message):
    with pytest.raises(CatalogError, match="^" + re.escape(message)):
        parse_catalog(text, "x.yaml")
