"""The `files` connector: a folder of JSON/CSV exports as a source, a local JSON-lines journal as the CRM."""

from connectors.files.connector import DEFAULT_JOURNAL, FilesConnector

__all__ = ["DEFAULT_JOURNAL", "FilesConnector"]
