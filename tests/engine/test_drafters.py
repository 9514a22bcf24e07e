"""Pluggable drafters end to end, on SQLite and PostgreSQL: the shipped renewal-review playbook asks the
`llm` drafter, driven against a local fake chat completions endpoint; on a timeout, an error status, a
refused address or no configuration the template stands in, and the brief says which drafter wrote it."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from orchestrator.config import LlmSettings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.journeys import engine
from orchestrator.models import Journey, OutboxMessage, StepRun, Task
from orchestrator.resources import shipped_playbooks_dir
from tests.engine.conftest import Feeder, install_playbook
from tests.factories import AccountFactory, DealFactory, OwnerFactory
from tests.fakes.chat_completions import chat_server

TEMPLATE_LINE = "Renewal brief: Renew Co, renewing in 118 days."


@pytest.fixture
def renewal(session):
    text = (shipped_playbooks_dir() / "renew" / "renewal-review.yaml").read_text()
    return install_playbook(session, text, "renew/renewal-review.yaml")


@pytest.fixture
def chat():
    with chat_server() as fake:
        yield fake


def _llm(settings, chat, **overrides):
    config = {"base_url": chat.url, "model": "small-model", "api_key": "sk-test-123", "timeout": 0.5,
              "allow_hosts": ("127.0.0.1",), **overrides}
    return dataclasses.replace(settings, llm=LlmSettings(**config))


def _review(session, settings, clock):
    account = AccountFactory(name="Renew Co", stage="adopt",
                             owner=OwnerFactory(name="Ari AE", email="ari@acme.example", role="ae"))
    deal = DealFactory(account=account, kind="renewal", is_closed=False, is_won=False)
    Feeder(session, settings, clock)("renewal.upcoming", account, {"days_to_renewal": 118}, deal=deal)
    task = session.scalars(select(Task).where(Task.account_id == account.id, Task.kind == "review")).one()
    return account, task


def test_the_model_writes_the_draft_and_a_person_still_reviews_it_before_it_is_published(
        session, settings, clock, renewal, chat):
    settings = _llm(settings, chat)
    account, task = _review(session, settings, clock)
    assert task.draft == "Hi team, a draft from the model."
    assert task.brief["drafted_by"] == {"drafter": "llm small-model", "requested": "llm", "fallback": ""}
    assert "Drafted by: llm small-model" in task.brief_text
    (request,) = chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-123"
    assert request["json"]["model"] == "small-model"
    user = request["json"]["messages"][1]["content"]
    assert TEMPLATE_LINE in user and '"name": "Renew Co"' in user  # the template and the account context
    run = session.scalars(select(StepRun).where(StepRun.step_id == "renewal-brief")).one()
    assert run.outcome["drafter"]["drafter"] == "llm small-model"

    # Nothing is published until the reviewer says so.
    notes = select(OutboxMessage).where(OutboxMessage.account_id == account.id, OutboxMessage.kind == "crm.create_note")
    assert session.scalars(notes).all() == []
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="published",
                       actor="ari@acme.example", now=clock.now())
    session.flush()
    assert [m.payload["args"]["body"] for m in session.scalars(notes)] == ["Hi team, a draft from the model."]


@pytest.mark.parametrize(("mode", "reason"), [
    ("slow", "gave no answer"),
    ("error", "answered 503"),
    ("garbage", "not a chat completion"),
])
def test_a_failing_endpoint_falls_back_to_the_template(session, settings, clock, renewal, chat, mode, reason):
    chat.mode = mode
    _account, task = _review(session, settings=_llm(settings, chat), clock=clock)
    assert len(chat.requests) == 1  # asked once; the journey did not wait on a retry
    assert TEMPLATE_LINE in task.draft
    drafted = task.brief["drafted_by"]
    assert drafted["drafter"] == "template" and drafted["requested"] == "llm" and reason in drafted["fallback"]
    assert "Drafted by: template (the llm drafter was asked;" in task.brief_text
    journey = session.scalars(select(Journey).where(Journey.id == task.journey_id)).one()
    assert journey.status == "waiting"


def test_without_an_endpoint_the_template_is_the_draft(session, settings, clock, renewal):
    _account, task = _review(session, settings, clock)
    assert TEMPLATE_LINE in task.draft
    assert "no drafter endpoint is configured" in task.brief["drafted_by"]["fallback"]


def test_an_internal_endpoint_not_allowed_by_name_is_refused_by_the_ssrf_guard(
        session, settings, clock, renewal, chat):
    _account, task = _review(session, _llm(settings, chat, allow_hosts=()), clock)
    assert chat.requests == []
    assert TEMPLATE_LINE in task.draft
    assert "loopback address 127.0.0.1" in task.brief["drafted_by"]["fallback"]


def test_the_endpoint_comes_from_the_environment():
    llm = load_settings({"HANDOFF_LLM_BASE_URL": "https://llm.example/v1", "HANDOFF_LLM_MODEL": "m",
                         "HANDOFF_LLM_API_KEY": "sk-secret", "HANDOFF_LLM_TIMEOUT": "3",
                         "HANDOFF_LLM_ALLOW_HOSTS": "10.0.0.5, llm.internal"}).llm
    assert llm == LlmSettings(base_url="https://llm.example/v1", model="m", api_key="sk-secret", timeout=3.0,
                              allow_hosts=("10.0.0.5", "llm.internal"))
    assert "sk-secret" not in repr(llm)
    assert load_settings({}).llm is None
    with pytest.raises(ConfigError, match="HANDOFF_LLM_MODEL"):
        load_settings({"HANDOFF_LLM_BASE_URL": "https://llm.example/v1"})
    with pytest.raises(ConfigError, match="HANDOFF_LLM_TIMEOUT"):
        load_settings({"HANDOFF_LLM_BASE_URL": "https://llm.example/v1", "HANDOFF_LLM_MODEL": "m",
                       "HANDOFF_LLM_TIMEOUT": "forever"})
