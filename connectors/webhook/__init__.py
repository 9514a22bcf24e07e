"""Signed JSON webhooks with an SSRF guard."""

from connectors.webhook.connector import WebhookConfig, WebhookConnector

__all__ = ["WebhookConfig", "WebhookConnector"]
