"""The HTTP API: a Flask app factory with OpenAPI-documented blueprints (the only package that imports Flask)."""

from orchestrator.api.app import create_app

__all__ = ["create_app"]
