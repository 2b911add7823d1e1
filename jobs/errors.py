"""Errors raised by mailscan's own code.

MailscanError
 +-- ConfigurationError        a setting is missing or has an invalid value
 +-- RequestError              a request cannot be done as asked; the API returns it as a
 |    |                        union member with the same ``code``
 |    +-- InvalidInputError    a field has an invalid value (``field`` names it)
 |    +-- NotFoundError        no such object for this user (also another user's object)
 |    +-- ScanAlreadyRunningError   the account already has an active scan (``task_id``)
 |    +-- InvalidStateError    the object is in a state that does not allow the operation
 |    +-- QuotaExceededError   a rate limit was hit (``retry_after_s``)
 +-- ScanError                 a scan cannot go on; ``code`` and ``retryable`` say why
      +-- TransientScanError   worth retrying later (connection drop, timeout, busy server)
      +-- PermanentScanError   retrying cannot help (bad credentials, missing folder, TLS)
"""

from __future__ import annotations

#: Characters of a user-supplied value quoted in an error message.
QUOTED_VALUE_CHARS = 80


def quoted(value: str) -> str:
    """Return ``repr(value)``, cut to :data:`QUOTED_VALUE_CHARS` characters with an ellipsis."""
    if len(value) <= QUOTED_VALUE_CHARS:
        return repr(value)
    return repr(value[:QUOTED_VALUE_CHARS]) + "..."


class MailscanError(Exception):
    """Root of mailscan's own errors."""


class ConfigurationError(MailscanError):
    """A setting is missing or has an invalid value."""


class RequestError(MailscanError):
    """A request that cannot be done as asked. ``code`` is the API's machine-readable code."""

    code = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(RequestError):
    code = "INVALID_INPUT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(RequestError):
    code = "NOT_FOUND"


class ScanAlreadyRunningError(RequestError):
    code = "SCAN_ALREADY_RUNNING"

    def __init__(self, message: str, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class InvalidStateError(RequestError):
    code = "INVALID_STATE"


class QuotaExceededError(RequestError):
    code = "QUOTA_EXCEEDED"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
