"""Replays with no side effects on the real database: simulation of candidate playbooks, and the demo."""
