"""Connectors to outside systems (Salesforce, HubSpot), behind one small contract."""
