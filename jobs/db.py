"""Connection to the MongoDB API, Beanie initialisation and index creation."""

from __future__ import annotations

import logging
from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient, IndexModel

from jobs.documents import DOCUMENT_MODELS
from jobs.settings import Settings

logger = logging.getLogger(__name__)


async def ensure_indexes(model: type[Document]) -> None:
    """Create the model's missing indexes, one command per index.

    One ``createIndexes`` command per index, and only for names not yet present: FerretDB
    1.24 panics on a ``createIndexes`` that lists several indexes of which some already
    exist, which happens whenever a second process starts. MongoDB accepts both forms.
    """
    collection = model.get_pymongo_collection()
    existing = {index["name"] async for index in await collection.list_indexes()}
    indexes: list[IndexModel] = list(getattr(model.Settings, "indexes", []))
    for index in indexes:
        name = index.document["name"]
        if name in existing:
            continue
        await collection.create_indexes([index])
        logger.info("created index %s on %s", name, collection.name)


async def init_db(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """Connect, register every document model and create missing indexes.

    The caller owns the returned client and closes it at shutdown.
    """
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    database = client[settings.mongodb_database]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    for model in DOCUMENT_MODELS:
        await ensure_indexes(model)
    logger.info("database %s ready", settings.mongodb_database)
    return client
