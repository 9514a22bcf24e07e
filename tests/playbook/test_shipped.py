"""The shipped playbooks: valid, lint-clean, covering the whole language, and valid JSON Schema instances."""

from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from orchestrator.playbook import load_playbook, validate_paths
from orchestrator.playbook.actions import REGISTRY
from orchestrator.playbook.json_schema import playbook_json_schema
from orchestrator.playbook.library import is_template_file
from orchestrator.playbook.model import (
    AutomatedStep,
    BranchStep,
    Oversight,
    SetStageStep,
    WaitStep,
)
from orchestrator.playbook.schema import STEP_KINDS
from orchestrator.playbook.yamlsafe import load_document

ROOT = Path(__file__).resolve().parents[2] / "playbooks"
SHIPPED = sorted(p for p in ROOT.rglob("*.yaml") if not is_template_file(p))
BROKEN = Path(__file__).resolve().parent / "broken"


def test_every_shipped_playbook_is_valid_and_lint_clean():
    assert validate_paths([ROOT], now=datetime.now(UTC), last_changed=None) == []


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_playbook_lives_in_the_folder_of_its_stage_and_is_named_by_its_id(path):
    playbook = load_playbook(path)
    assert path.parent.name == playbook.stage.value
    assert path.stem == playbook.id


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_playbook_starts_with_a_comment_saying_what_it_is_for(path):
    assert path.read_text().startswith("# ")
    assert "What it is for:" in path.read_text()


def test_there_is_a_playbook_for_every_stage():
    assert sorted({p.parent.name for p in SHIPPED}) == ["acquire", "adopt", "expand", "onboard", "renew"]


def test_together_they_use_the_whole_language():
    playbooks = [load_playbook(p) for p in SHIPPED]
    steps = [s for p in playbooks for s in p.steps]
    assert {s.oversight for s in steps if isinstance(s, AutomatedStep)} == set(Oversight)
    assert any(isinstance(s, WaitStep) for s in steps)
    assert any(isinstance(s, BranchStep) and s.otherwise is None for s in steps)
    assert any(isinstance(s, BranchStep) and s.otherwise is not None for s in steps)
    assert any(isinstance(s, SetStageStep) for s in steps)
    assert {s.kind for s in steps} == set(STEP_KINDS)
    assert any(p.touch_limit for p in playbooks)
    assert any(p.sensitive_signals for p in playbooks)
    assert any(REGISTRY[s.call.action].customer_facing for s in steps if isinstance(s, AutomatedStep))


def test_speed_to_lead_asks_for_a_first_touch_within_one_business_hour():
    first_touch = load_playbook(ROOT / "acquire" / "speed-to-lead.yaml").step("first-touch")
    assert first_touch.sla.due.business_minutes == 60


def test_the_json_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(playbook_json_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_playbook_validates_against_the_json_schema(path):
    document = load_document(path.read_text()).value
    jsonschema.validate(document, playbook_json_schema(), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name", ["unknown-step-kind", "unknown-top-level-key", "missing-required-keys",
                                  "stage-typo", "unknown-action", "task-to-a-team", "jump-with-goto-and-exit"])
def test_broken_playbooks_fail_the_json_schema_too(name):
    document = load_document((BROKEN / f"{name}.yaml").read_text()).value
    validator = jsonschema.Draft202012Validator(playbook_json_schema())
    assert list(validator.iter_errors(document))


def test_the_json_schema_offers_the_kinds_stages_oversight_levels_and_actions():
    schema = playbook_json_schema()
    assert schema["properties"]["stage"]["enum"] == ["acquire", "onboard", "adopt", "expand", "renew"]
    assert set(schema["$defs"]["action"]["enum"]) == set(REGISTRY)
    kinds = schema["properties"]["steps"]["items"]["properties"]["kind"]["enum"]
    assert "set_stage" in kinds and "hybrid" in kinds


def test_the_json_schema_offers_the_dictionarys_fields_and_the_catalogs_signal_types():
    defs = playbook_json_schema()["$defs"]
    assert "account.health" in defs["expression"]["examples"]
    assert "signal.days_to_renewal" in defs["expression"]["examples"]
    assert "{{ deal.amount }}" in defs["template"]["examples"]
    assert "renewal.upcoming" in defs["signal"]["examples"] and "product.usge" not in defs["signal"]["examples"]
