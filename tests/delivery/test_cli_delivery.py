"""The delivery commands as an operator uses them: demo then deliver, a plugin connector, outbox show/retry/cancel."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from orchestrator.cli import main
from orchestrator.config import load_settings
from orchestrator.db import unit_of_work
from orchestrator.delivery import outbox
from orchestrator.models import AuditEvent, OutboxMessage, OutboxStatus
from orchestrator.runtime import build_runtime
from tests.connectors.plugins import installed_plugin
from tests.connectors.test_files import _folder
from tests.factories import AccountFactory, bind

ECHO = """
    import json
    from marshmallow import Schema, fields
    from connectors.base import DeliveryConnector, PushResult

    class _Config(Schema):
        path = fields.String(required=True)

    class Echo(DeliveryConnector):
        slug = "echo"
        title = "Echo CRM (a third party's)"
        config_schema = _Config
        handles = frozenset({"crm.create_task", "crm.create_note"})
        max_batch = 2

        def push(self, messages):
            with open(self.config["path"], "a") as handle:
                for m in messages:
                    handle.write(json.dumps({"key": m.idempotency_key, "account": m.account.name}) + "\\n")
            return [PushResult(message_id=m.id, outcome="delivered", remote_id=f"echo-{m.id}") for m in messages]
"""


@pytest.fixture
def env(fresh_database: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str | None]]:
    monkeypatch.chdir(tmp_path)  # on PostgreSQL the journal goes to the working directory
    yield {"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False), "HANDOFF_CONFIG": None,
           "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"}


def _run(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def _ok(args: list[str], env: dict[str, str | None]) -> str:
    result = _run(args, env)
    assert result.exit_code == 0, result.output
    return result.output


def _pending(env: dict[str, str | None]) -> int:
    runtime = build_runtime(load_settings({k: v for k, v in env.items() if v is not None}))
    try:
        with unit_of_work(runtime.sessions, read_only=True) as session:
            return session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.status == OutboxStatus.PENDING)) or 0
    finally:
        runtime.close()


@pytest.mark.slow
def test_after_the_demo_one_deliver_pass_leaves_nothing_pending_on_the_embedded_default(
        env: dict[str, str | None], tmp_path: Path) -> None:
    _ok(["demo"], env)
    waiting = _pending(env)
    assert waiting > 0

    output = _ok(["outbox", "deliver", "--once"], env)

    assert output.startswith(f"{waiting} claimed: {waiting} delivered, 0 to retry, 0 dead")
    assert _pending(env) == 0
    journal = (tmp_path / "handoff-journal.jsonl").read_text().splitlines()
    assert len(journal) == waiting and len({json.loads(line)["idempotency_key"] for line in journal}) == waiting
    assert _ok(["outbox", "deliver", "--once"], env).startswith("0 claimed")
    assert "no pending outbox messages" in _ok(["outbox", "list"], env)
    listing = _ok(["outbox", "list", "--status", "delivered", "--limit", "500"], env)
    assert "crm.create_task" in listing and "files" in listing


def test_a_connector_installed_through_an_entry_point_is_listed_and_delivers(
        env: dict[str, str | None], tmp_path: Path) -> None:
    delivered = tmp_path / "echo.jsonl"
    config = tmp_path / "handoff.toml"
    config.write_text(textwrap.dedent(f"""
        [exceptions]
        default_owner = "ops-lead@example.com"
        [connectors.echo]
        path = "{delivered}"
        default_crm = true
    """))
    env = {**env, "HANDOFF_CONFIG": str(config)}
    with installed_plugin(tmp_path, slug="echo", source=ECHO, class_name="Echo"):
        _ok(["init"], env)
        listing = _ok(["connectors", "list"], env).splitlines()
        echo = next(line.split() for line in listing if line.startswith("echo"))
        assert echo[:4] == ["echo", "yes", "yes", "yes"]
        runtime = build_runtime(load_settings({k: v for k, v in env.items() if v is not None}))
        try:
            with unit_of_work(runtime.sessions) as session:
                bind(session)
                account = AccountFactory(name="Zeta")
                for n in range(3):
                    outbox.enqueue(session, kind="crm.create_task", target="crm", payload={"subject": f"T{n}"},
                                   idempotency_key=f"task:{n}:create", at=runtime.clock.now(),
                                   account_id=account.id)
                bind(None)
        finally:
            runtime.close()

        output = _ok(["outbox", "deliver", "--once", "--connector", "echo"], env)

    assert output.startswith("3 claimed: 3 delivered, 0 to retry, 0 dead in 2 batches (echo 3)")
    assert [json.loads(line) for line in delivered.read_text().splitlines()] == [
        {"key": f"task:{n}:create", "account": "Zeta"} for n in range(3)]
    assert _pending(env) == 0


def test_show_retry_and_cancel_a_dead_message_audited(env: dict[str, str | None]) -> None:
    _ok(["init"], env)
    runtime = build_runtime(load_settings({k: v for k, v in env.items() if v is not None}))
    try:
        with unit_of_work(runtime.sessions) as session:
            message = outbox.enqueue(session, kind="notify.email", target="email", at=runtime.clock.now(),
                                     idempotency_key="mail:1",
                                     payload={"args": {"to": "lead@acme.example", "subject": "Renewal at risk",
                                                       "body": "Zeta's usage fell 45%.\nCall them."}})
            outbox.mark_failed(session=session, settings=runtime.settings, message=message, at=runtime.clock.now(),
                               error="550 mailbox unavailable", permanent=True)
            message_id = message.id
    finally:
        runtime.close()

    shown = _ok(["outbox", "show", str(message_id)], env)
    for expected in ("notify.email  dead", "recipient:  lead@acme.example", "subject:    Renewal at risk",
                     "last error: 550 mailbox unavailable", "    Zeta's usage fell 45%.", "    Call them."):
        assert expected in shown
    assert "requeued" not in shown

    assert "pending again" in _ok(["outbox", "retry", str(message_id), "--by", "ops@acme.example"], env)
    assert "cancelled" in _ok(["outbox", "cancel", str(message_id), "--by", "ops@acme.example"], env)
    refused = _run(["outbox", "cancel", str(message_id), "--by", "ops@acme.example"], env)
    assert refused.exit_code == 2
    assert "only pending or dead ones are cancelled" in refused.output and "Traceback" not in refused.output
    missing = _run(["outbox", "show", "999999"], env)
    assert missing.exit_code == 2 and "no outbox message 999999" in missing.output

    runtime = build_runtime(load_settings({k: v for k, v in env.items() if v is not None}))
    try:
        with unit_of_work(runtime.sessions, read_only=True) as session:
            actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("outbox_%"))
                                           .order_by(AuditEvent.id)))
            assert actions == ["outbox_requeued", "outbox_cancelled"]
            assert session.get(OutboxMessage, message_id).status == OutboxStatus.CANCELLED
    finally:
        runtime.close()


def test_import_a_folder_then_sync_and_check_print_their_summaries(env: dict[str, str | None],
                                                                   tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _ok(["init"], env)

    imported = _ok(["import", str(folder)], env)
    assert imported.splitlines()[0].startswith(
        "files: fetched 8, created 7, updated 0, deleted 0, signals derived 1 (1 new), API calls 0, ")
    assert "1 new signals stored; `handoff engine run` evaluates them" in imported
    assert _ok(["import", str(folder)], env).startswith("files: fetched 8, created 0, updated 0")

    assert "no enabled source connector has anything to pull" in _ok(["sync"], env)
    assert _ok(["connectors", "check", "files"], env).endswith("files: ok\n")
    config = tmp_path / "handoff.toml"
    config.write_text(f'[connectors.files]\nfolder = "{folder}"\n')
    with_folder = {**env, "HANDOFF_CONFIG": str(config)}
    assert _ok(["sync"], with_folder).startswith("files: fetched 8, created 0, updated 0")
    assert _ok(["sync", "files"], with_folder).startswith("files: fetched 0,")
    assert _ok(["sync", "files", "--full"], with_folder).startswith("files: fetched 8,")
    missing = _run(["connectors", "check", "nope"], env)
    assert missing.exit_code == 2 and "no connector 'nope' is installed" in missing.output


def test_secrets_key_and_encrypt_give_a_token_only_that_key_decrypts() -> None:
    from orchestrator import crypto

    key = CliRunner().invoke(main, ["secrets", "key"]).output.strip()
    result = CliRunner().invoke(main, ["secrets", "encrypt"], input="sf-password\n",
                                env={crypto.KEYS_VARIABLE: key})
    assert result.exit_code == 0 and "sf-password" not in result.output
    assert crypto.decrypt(result.output.strip(), environ={crypto.KEYS_VARIABLE: key}) == "sf-password"
    missing = CliRunner().invoke(main, ["secrets", "encrypt"], input="x\n", env={crypto.KEYS_VARIABLE: ""})
    assert missing.exit_code == 2 and "HANDOFF_SECRET_KEYS: not set" in missing.output
