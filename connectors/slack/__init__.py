"""Chat to a person: Slack's Web API (slack_sdk), with a Teams / incoming-webhook fallback."""

from connectors.slack.connector import SlackConfig, SlackConnector

__all__ = ["SlackConfig", "SlackConnector"]
