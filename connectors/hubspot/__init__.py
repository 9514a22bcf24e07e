"""HubSpot: sync (search API, incremental), task write-back (batch, exactly once) and signed webhooks.

Only this package imports `hubspot` (hubspot-api-client).
"""

from connectors.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConnector"]
