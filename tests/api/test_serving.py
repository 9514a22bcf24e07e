"""The API served in-process on a real socket: answers, then stops when asked."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from orchestrator.api.serving import serve_http


def test_the_api_serves_on_a_real_port_and_stops_when_asked(world):
    stop, started = threading.Event(), []
    thread = threading.Thread(target=serve_http, kwargs={
        "runtime": world.runtime, "host": "127.0.0.1", "port": 0, "stop": stop, "ready": started.append})
    thread.start()
    try:
        for _ in range(100):
            if started:
                break
            threading.Event().wait(0.05)
        assert started, "the server never said it was ready"
        headers = {"Authorization": f"Bearer {world.keys['sam']}"}
        request = urllib.request.Request(started[0] + "/tasks", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"]
            assert {t["id"] for t in json.load(response)["items"]} == {world.ids["sams_task"]}
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()


def test_handoff_serve_runs_the_api_and_the_scheduler_and_stops_on_sigterm(fresh_database):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from orchestrator import schema
    from orchestrator.db import make_engine

    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    engine.dispose()
    config = Path(__file__).resolve().parents[2] / "orchestrator" / "sample_data" / "handoff.toml"
    env = {**os.environ, "HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False),
           "HANDOFF_CONFIG": str(config)}
    process = subprocess.Popen([str(Path(sys.executable).parent / "handoff"), "serve", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(50):
            line = process.stdout.readline()
            if "API on " in line:
                url = line.split("API on ", 1)[1].split()[0]
            if "scheduler with" in line and url:
                break
        assert url, process.stderr.read() if process.poll() is not None else "no API line"
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert json.load(response) == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "serve: stopped" in out


@pytest.mark.slow  # starts a real gunicorn (a few seconds per database)
def test_gunicorn_with_the_shipped_config_serves_the_wsgi_app_and_stops(fresh_database, tmp_path):
    """The production path: deploy/gunicorn.conf.py and orchestrator.api.wsgi, on a random local port."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from orchestrator import schema
    from orchestrator.apikeys import create_key
    from orchestrator.clock import SystemClock
    from orchestrator.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with unit_of_work(make_session_factory(engine)) as session:
        key = create_key(session, name="deploy-test", role="leader", now=SystemClock().now())
    engine.dispose()
    with socket.socket() as probe:  # a free port, chosen by the kernel
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False),
           "HANDOFF_CONFIG": str(root / "orchestrator" / "sample_data" / "handoff.toml"),
           "HANDOFF_BIND": f"127.0.0.1:{port}", "HANDOFF_API_WORKERS": "1"}
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                                str(root / "deploy" / "gunicorn.conf.py"), "orchestrator.api.wsgi:app"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    health = json.load(response)
                    break
            except OSError:
                threading.Event().wait(0.2)
        assert health == {"status": "ok"}, process.stderr.read() if process.poll() is not None else "no answer"
        request = urllib.request.Request(base + "/tasks", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.load(response)["items"] == []
        unauthenticated = urllib.request.Request(base + "/tasks")
        try:
            urllib.request.urlopen(unauthenticated, timeout=10)
            raise AssertionError("an unauthenticated request was answered")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert key not in err  # no API key in any log line
