"""Handoff: revenue-journey orchestration."""

__version__ = "0.1.0"
