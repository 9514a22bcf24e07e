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
