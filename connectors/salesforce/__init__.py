"""Salesforce: sync accounts, contacts, opportunities, users and tasks; write Tasks back exactly once.

The only package that imports `simple_salesforce`.
"""

from connectors.salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConnector"]
