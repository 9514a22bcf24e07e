"""The API served in-process on a real socket: answers, then stops when asked."""

from __future__ import annotations

import json
import threading
import urllib.request

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
