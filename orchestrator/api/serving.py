"""Serving the API in-process (the embedded default's `handoff serve`); production uses gunicorn."""

from __future__ import annotations

import threading
from collections.abc import Callable

from werkzeug.serving import make_server

from orchestrator.api.app import create_app
from orchestrator.runtime import Runtime, settle_heap


def serve_http(*, runtime: Runtime, host: str, port: int, stop: threading.Event,
               ready: Callable[[str], None] | None = None) -> None:
    """Serve the API on host:port until `stop` is set (a threaded WSGI server, one process)."""
    server = make_server(host, port, create_app(runtime=runtime), threaded=True)
    settle_heap()
    thread = threading.Thread(target=server.serve_forever, name="handoff-http", daemon=True)
    thread.start()
    if ready is not None:
        ready(f"http://{host}:{server.server_port}")
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(10)
