"""Intake: the first stage. Validate what arrives, resolve its account, store it once."""

from orchestrator.intake.signals import IntakeResult, IntakeStatus, find_account, ingest, parse_account_ref

__all__ = ["IntakeResult", "IntakeStatus", "find_account", "ingest", "parse_account_ref"]
