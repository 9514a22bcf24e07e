"""`handoff connectors fields`: the org's mapped custom fields become a catalog the validator reads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from orchestrator.cli import main
from tests.connectors.salesforce.conftest import base_config
from tests.fakes.salesforce import FakeSalesforce

PLAYBOOK = """\
id: tiered
name: Tiered
stage: renew
maintainer: revops@acme.example
enroll:
  on: renewal.upcoming
  when: account.{field} == "Customer"
steps:
  - id: done
    kind: exit
"""


def _handoff(args: list[str], *, config: Path) -> Result:
    env = {"HANDOFF_CONFIG": str(config), "HANDOFF_DATABASE_URL": f"sqlite:///{config.parent / 'h.db'}",
           **json.loads((config.parent / "secrets.json").read_text(encoding="utf-8"))}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def _config(fake: FakeSalesforce, tmp_path: Path, fields: dict[str, dict[str, str]]) -> Path:
    """A config file for the fake org; its secrets go by environment variable, as in production."""
    raw = base_config(fake, fields=fields)
    secrets = {"SF_CLIENT_SECRET": raw.pop("client_secret"), "SF_REFRESH_TOKEN": raw.pop("refresh_token")}
    lines = ["[connectors.salesforce]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in raw.items() if not isinstance(value, dict)]
    lines += ['client_secret = "env:SF_CLIENT_SECRET"', 'refresh_token = "env:SF_REFRESH_TOKEN"']
    for entity, mapping in fields.items():
        lines.append(f"[connectors.salesforce.fields.{entity}]")
        lines += [f"{canonical} = {json.dumps(remote)}" for canonical, remote in mapping.items()]
    path = tmp_path / "handoff.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "secrets.json").write_text(json.dumps(secrets), encoding="utf-8")
    return path


def test_the_orgs_custom_fields_are_written_as_a_catalog_and_the_validator_knows_them(fake_sf, tmp_path):
    config = _config(fake_sf, tmp_path, {"account": {"tier": "Type", "health": "Health_Score__c",
                                                     "score_note": "Description", "gone": "No_Such__c"},
                                         "deal": {"forecast": "Amount"}})
    folder = tmp_path / "playbooks"
    (folder / "renew").mkdir(parents=True)
    written = folder / "salesforce.signals.yaml"

    result = _handoff(["connectors", "fields", "salesforce", "--write", str(written)], config=config)
    assert result.exit_code == 0, result.output
    assert result.output == f"salesforce: 3 custom field(s) written to {written}\n"
    declared = yaml.safe_load(written.read_text(encoding="utf-8"))["attributes"]
    # health is a Handoff column (already in the dictionary); No_Such__c is not in the org.
    assert declared == {
        "account": {"tier": {"kind": "text", "label": "Type", "format": "text"},
                    "score_note": {"kind": "text", "label": "Description", "format": "text"}},
        "deal": {"forecast": {"kind": "number", "label": "Amount", "format": "money"}},
    }

    playbook = folder / "renew" / "tiered.yaml"
    playbook.write_text(PLAYBOOK.format(field="tier"), encoding="utf-8")
    known = _handoff(["playbooks", "validate", str(folder)], config=config)
    assert known.exit_code == 0 and "0 errors, 0 warnings" in known.output, known.output
    playbook.write_text(PLAYBOOK.format(field="teir"), encoding="utf-8")
    typo = _handoff(["playbooks", "validate", str(folder)], config=config)
    assert 'tiered.yaml:7:9: error: [unknown-field] enroll.when: "account.teir"' in typo.output, typo.output
    assert "tier" in typo.output.split("account.teir", 1)[1]


def test_without_the_write_option_the_catalog_is_printed_and_an_unreachable_org_is_one_line(fake_sf, tmp_path):
    config = _config(fake_sf, tmp_path, {"account": {"tier": "Type"}})
    printed = _handoff(["connectors", "fields", "salesforce"], config=config)
    assert printed.exit_code == 0 and yaml.safe_load(printed.output) == {
        "attributes": {"account": {"tier": {"kind": "text", "label": "Type", "format": "text"}}}}
    config.write_text(config.read_text().replace(fake_sf.url, "https://127.0.0.1:9"), encoding="utf-8")
    down = _handoff(["connectors", "fields", "salesforce"], config=config)
    assert down.exit_code == 1 and down.output.startswith("salesforce: cannot describe its fields: ")
    assert len(down.output.strip().splitlines()) == 1 and "Traceback" not in down.output
