"""The dashboard's door: who may see it, and the session cookie (no browser needed)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.apikeys import create_key, revoke_key
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.models import Owner
from orchestrator.runtime import Runtime
from tests.conftest import T0
from tests.reports.fixture import UNTIL


@pytest.fixture
def app_and_keys(engine: Any, sessions: Any) -> Any:
    with unit_of_work(sessions) as session:
        keys = {role: create_key(session, name=role, role=role, now=T0) for role in ("admin", "leader", "ingest")}
        keys["rep"] = create_key(session, name="rep", role="rep", owner=session.query(Owner).one(), now=T0)
    runtime = Runtime(settings=Settings(database_url=engine.url, exception_owner="ops@acme.example"),
                      engine=engine, sessions=sessions, clock=FrozenClock(UNTIL))
    return create_app(runtime=runtime), keys, sessions


def bars(html: str, chart: str) -> int:
    """The bars drawn in one SVG chart of the page."""
    found = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S)
    assert found is not None, chart
    return found.group(0).count('class="bar"')


def test_roles_cookie_and_revocation(app_and_keys: Any) -> None:
    app, keys, sessions = app_and_keys
    client = app.test_client()
    assert client.get("/dashboard").status_code == 302  # to the login form
    for role in ("rep", "ingest"):
        assert client.get("/dashboard", headers={"Authorization": f"Bearer {keys[role]}"}).status_code == 403
        assert client.post("/dashboard/login", data={"key": keys[role]}).status_code == 401
    assert client.get("/dashboard", headers={"Authorization": f"Bearer {keys['admin']}"}).status_code == 200
    login = client.post("/dashboard/login", data={"key": keys["leader"]})
    cookie = login.headers["Set-Cookie"]
    assert login.status_code == 302 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert keys["leader"] not in cookie  # the cookie names the key; it never carries the secret
    page = client.get("/dashboard?period=30d&playbook=pb")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert (bars(html, "approval-chart"), bars(html, "noise-chart")) == (2, 4)
    drill = client.get("/dashboard/tasks?period=30d&playbook=pb&step=stamp").get_data(as_text=True)
    assert drill.count('class="task"') == 5
    client.set_cookie("handoff_session", "forged", path="/dashboard")
    assert client.get("/dashboard").status_code == 302
    client.post("/dashboard/login", data={"key": keys["leader"]})
    with unit_of_work(sessions) as session:
        revoke_key(session, prefix=keys["leader"].split("_")[1], now=T0)
    assert client.get("/dashboard").status_code == 302  # revoking the key ends its sessions
