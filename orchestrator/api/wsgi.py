"""The WSGI entry point for production servers: `gunicorn -c deploy/gunicorn.conf.py orchestrator.api.wsgi:app`.

Importing this module builds the app from the environment (HANDOFF_DATABASE_URL, HANDOFF_CONFIG);
nothing else in the package builds anything at import time.
"""

from orchestrator.api.app import create_app

app = create_app()
