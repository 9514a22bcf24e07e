"""gunicorn for the Handoff API in production: stateless API replicas; workers (`handoff worker`) run apart.

    pip install gunicorn
    gunicorn -c deploy/gunicorn.conf.py orchestrator.api.wsgi:app
"""

import os

bind = os.environ.get("HANDOFF_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("HANDOFF_API_WORKERS", "2"))
threads = int(os.environ.get("HANDOFF_API_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
# The app logs one JSON line per request itself (request id, route, status, duration); gunicorn's
# access log would repeat the query string, which can carry customer data.
accesslog = None
errorlog = "-"
limit_request_line = 8190
