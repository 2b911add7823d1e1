"""Users who sign in with Google, stored on their first sign-in."""

from __future__ import annotations

import logging

from pymongo.errors import DuplicateKeyError

from jobs.documents import User, utcnow

logger = logging.getLogger(__name__)

#: Prefix of the user id of a Google user. Development user ids cannot contain ``:``, so a
#: development token never names a Google user.
GOOGLE_USER_PREFIX = "google:"


def google_user_id(subject: str) -> str:
    """Return the user id that owns the accounts and tasks of the Google account ``subject``."""
    return f"{GOOGLE_USER_PREFIX}{subject}"


async def record_google_user(subject: str, email: str | None, name: str | None) -> bool:
    """Insert the user of ``subject`` unless it exists; return True when it was inserted.

    Two first sign-ins at once are safe: the unique index on ``subject`` keeps one document.
    """
    collection = User.get_pymongo_collection()
    document = {"email": email, "name": name, "created_at": utcnow()}
    try:
        result = await collection.update_one(
            {"subject": subject}, {"$setOnInsert": document}, upsert=True
        )
    except DuplicateKeyError:
        return False
    if result.upserted_id is None:
        return False
    logger.info("user %s created on first Google sign-in", google_user_id(subject))
    return True
