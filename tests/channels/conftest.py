"""Local servers for the delivery channels and a way to make outbox messages as connectors see them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import AccountRef, Outbound
from tests.channels.fake_slack import FakeSlack
from tests.channels.smtp_server import SmtpServer
from tests.channels.webhook_server import WebhookReceiver

CREATED = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
_ids = itertools.count(1)

ACCOUNT = AccountRef(id=7, name="Globex", domain="globex.example", external_ids={"salesforce": "001XYZ"},
                     owner_email="ana@acme.example", owner_manager_email="bo@acme.example",
                     csm_email="cy@acme.example")


def outbound(kind: str, args: Mapping[str, Any], *, key: str | None = None, attempts: int = 0,
             account: AccountRef | None = ACCOUNT, target: str = "") -> Outbound:
    """An outbox message in the shape a playbook step enqueues (`payload["args"]`)."""
    number = next(_ids)
    return Outbound(id=number, kind=kind, idempotency_key=key or f"step-run:{number}:run",
                    payload={"account_id": 7, "journey_id": 3, "step_id": "tell", "args": dict(args)},
                    attempts=attempts, account=account, target=target, created_at=CREATED)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server
