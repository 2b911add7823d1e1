"""The connections one process (API or worker) shares between its requests or actors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from jobs.db import init_db
from jobs.keys import RedisKeys
from jobs.progress import ProgressPublisher
from jobs.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    mongo: AsyncMongoClient[dict[str, Any]]
    redis: Redis
    keys: RedisKeys
    publisher: ProgressPublisher

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        """Connect to the database and Redis; the caller calls :meth:`close` at shutdown."""
        mongo = await init_db(settings)
        # No health_check_interval: on the hub's pub/sub connection a health check sends a
        # PING and reads its reply while the hub's reader is reading, and asyncio streams
        # allow one reader at a time. Lost connections surface as errors that callers handle.
        redis = Redis.from_url(settings.redis_url)
        keys = RedisKeys(settings.redis_prefix)
        publisher = ProgressPublisher(
            redis,
            keys,
            interval_s=settings.progress_interval_s,
            ttl_s=settings.progress_snapshot_ttl_s,
        )
        return cls(settings=settings, mongo=mongo, redis=redis, keys=keys, publisher=publisher)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()
