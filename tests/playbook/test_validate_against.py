"""`playbooks validate --against DATABASE`: roles, named people and calendars checked against the deployment."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.cli.playbooks import playbooks
from orchestrator.db import make_engine
from tests import factories
from tests.factories import OwnerFactory

PLAYBOOK = """\
id: sample
name: Sample
stage: renew
maintainer: revops@acme.example
review_every: 365d
enroll: {on: renewal.upcoming}
steps:
  - id: call
    kind: human
    assign: {role: cs-laed, fallback: {to: mia@acme.example}}
    task: {title: "Call {{ account.name }}", recommend: "Ask about the renewal."}
    sla:
      due: 2 business days
      calendar: emea
      escalate:
        - {at: due, notify: bo@acme.example}
        - {at: due + 1 business day, notify: cy@acme.example}
"""


def test_validate_against_a_database_names_what_the_deployment_lacks(fresh_database, tmp_path, monkeypatch):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with Session(engine) as session:
        factories.bind(session)
        OwnerFactory(email="ana@acme.example", role="cs-lead")
        OwnerFactory(email="bo@acme.example", role="ae")
        OwnerFactory(email="mia@acme.example", role="ae", active=False)
        session.commit()
        factories.bind(None)
    engine.dispose()
    (tmp_path / "sample.yaml").write_text(textwrap.dedent(PLAYBOOK))
    monkeypatch.delenv("HANDOFF_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    url = fresh_database.render_as_string(hide_password=False)

    offline = CliRunner().invoke(playbooks, ["validate", "sample.yaml"])
    assert offline.exit_code == 0, offline.output  # the file alone is valid
    result = CliRunner().invoke(playbooks, ["validate", "sample.yaml", "--against", url])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        'sample.yaml:10:20: error: [live-config] steps[0].assign.role: nobody active has the role "cs-laed" in '
        'this deployment (did you mean "cs-lead"?); roles here: ae, cs-lead',
        'sample.yaml:10:44: error: [live-config] steps[0].assign.fallback.to: "mia@acme.example" is marked '
        "inactive in this deployment; nothing can be handed to them",
        'sample.yaml:14:17: error: [live-config] steps[0].sla.calendar: the calendar "emea" is not configured '
        "here; calendars: default",
        'sample.yaml:17:46: error: [live-config] steps[0].sla.escalate[1].notify: "cy@acme.example" is not a '
        "person in this deployment",
    ]
