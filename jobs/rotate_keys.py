"""Re-encrypt every stored mailbox password with the first key of ``MAILSCAN_SECRET_KEYS``.

Key rotation, step by step:

1. Generate a key: ``python -c 'from cryptography.fernet import Fernet;
   print(Fernet.generate_key().decode())'``.
2. Put it first in ``MAILSCAN_SECRET_KEYS`` and keep the old keys after it, then restart the
   API and the workers. New secrets are now encrypted with the new key and old ones still
   decrypt.
3. Run ``python -m jobs.rotate_keys`` with the same settings. It prints one summary line and
   exits 1 when a secret could not be decrypted with any key, which leaves that secret as it
   was.
4. Once it exits 0, remove the old keys from ``MAILSCAN_SECRET_KEYS`` and restart again.

Each account is updated only if its token did not change since it was read, so the command
can run while the service is up.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken

from jobs.db import init_db
from jobs.documents import EmailAccount
from jobs.errors import ConfigurationError
from jobs.secrets import rotate_secret
from jobs.settings import Settings, get_settings

logger = logging.getLogger(__name__)


@dataclass
class RotationResult:
    rotated: int = 0
    #: Number of accounts whose token changed while the command ran; a later run rotates them.
    changed_meanwhile: int = 0
    #: Ids of accounts whose token no configured key decrypts.
    unreadable: list[str] = field(default_factory=list)


async def rotate_all(settings: Settings) -> RotationResult:
    """Re-encrypt the password of every account with the first configured key.

    The caller has initialised Beanie. Raises ConfigurationError when no key is configured.
    """
    result = RotationResult()
    collection = EmailAccount.get_pymongo_collection()
    async for raw in collection.find({}, {"password_encrypted": 1}):
        token = raw["password_encrypted"]
        try:
            new_token = rotate_secret(settings, token)
        except InvalidToken:
            result.unreadable.append(str(raw["_id"]))
            continue
        updated = await collection.update_one(
            {"_id": raw["_id"], "password_encrypted": token},
            {"$set": {"password_encrypted": new_token}},
        )
        if updated.modified_count:
            result.rotated += 1
        else:
            result.changed_meanwhile += 1
    return result


async def _main() -> int:
    settings = get_settings()
    client = await init_db(settings)
    try:
        result = await rotate_all(settings)
    finally:
        await client.close()
    unreadable = result.unreadable
    print(
        f"rotated {result.rotated} account passwords; {result.changed_meanwhile} changed "
        f"meanwhile; {len(unreadable)} unreadable"
    )
    for account_id in unreadable:
        print(f"account {account_id}: no key in MAILSCAN_SECRET_KEYS decrypts its password")
    return 1 if unreadable else 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main())
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
