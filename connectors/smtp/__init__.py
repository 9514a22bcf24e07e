"""Email delivery over SMTP (standard library smtplib)."""

from connectors.smtp.connector import SmtpConfig, SmtpConnector

__all__ = ["SmtpConfig", "SmtpConnector"]
