"""Encryption of mailbox secrets at rest with Fernet.

``Settings.secret_keys`` lists Fernet keys: the first encrypts, every key decrypts, so a key can
be rotated by putting the new key first and re-encrypting with :func:`rotate_secret`.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from jobs.errors import ConfigurationError
from jobs.settings import Settings


def _fernet(settings: Settings) -> MultiFernet:
    if not settings.secret_keys:
        raise ConfigurationError(
            "MAILSCAN_SECRET_KEYS is empty; set it to a Fernet key, for example the output of "
            "python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        )
    try:
        return MultiFernet([Fernet(key.encode()) for key in settings.secret_keys])
    except ValueError as exc:
        raise ConfigurationError(
            "MAILSCAN_SECRET_KEYS contains an invalid Fernet key; each key must be 32 url-safe "
            "base64-encoded bytes"
        ) from exc


def encrypt_secret(settings: Settings, plaintext: str) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt_secret(settings: Settings, token: str) -> str:
    """Decrypt ``token``; raises ConfigurationError when no configured key opens it."""
    try:
        return _fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ConfigurationError(
            "a stored secret cannot be decrypted with any key in MAILSCAN_SECRET_KEYS; "
            "keep the old key in the list until every secret is rotated"
        ) from None


def rotate_secret(settings: Settings, token: str) -> str:
    """Re-encrypt ``token`` with the first key."""
    return _fernet(settings).rotate(token.encode()).decode()
