"""Connection to the MongoDB API and Beanie initialisation."""

from __future__ import annotations

import logging
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

from jobs.documents import DOCUMENT_MODELS
from jobs.settings import Settings

logger = logging.getLogger(__name__)


async def init_db(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """Connect, register every document model and create missing indexes.

    The caller owns the returned client and closes it at shutdown.
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    database = client[settings.mongodb_database]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS)
    logger.info("database %s ready", settings.mongodb_database)
    return client
