"""Errors raised by mailscan's own code.

    MailscanError
     +-- ConfigurationError        a setting is missing or has an invalid value
     +-- ScanError                 a scan cannot go on; ``code`` and ``retryable`` say why
          +-- TransientScanError   worth retrying later (connection drop, timeout, busy server)
          +-- PermanentScanError   retrying cannot help (bad credentials, missing folder, TLS)
"""

from __future__ import annotations


class MailscanError(Exception):
    """Root of mailscan's own errors."""


class ConfigurationError(MailscanError):
    """A setting is missing or has an invalid value."""


class ScanError(MailscanError):
    """A scan cannot go on. ``code`` is machine-readable, the message is for the user."""

    retryable: bool = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransientScanError(ScanError):
    """A failure that a later attempt may not meet: retried with backoff."""

    retryable = True


class PermanentScanError(ScanError):
    """A failure that retrying cannot fix: the task ends FAILED at once."""
