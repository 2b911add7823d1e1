"""Mailbox passwords at rest: encrypted, rotated by ``python -m jobs.rotate_keys``, and absent
from the database, Redis, the API output and the logs of a whole scan."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from jobs.documents import EmailAccount
from jobs.secrets import decrypt_secret, encrypt_secret
from jobs.settings import Settings, get_settings
from scripts.services.apps import WorkerProcess
from tests.clients import graphql, subscribe
from tests.test_api_harness import isolated_settings, new_user_id, open_api

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "mailbox"


def with_keys(settings: Settings, *keys: bytes) -> Settings:
    return Settings(**{**settings.__dict__, "secret_keys": tuple(key.decode() for key in keys)})


async def test_rotate_keys_command(services: Any) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    async with open_api() as api:
        database = api.runtime.settings.mongodb_database
        old_settings = with_keys(api.runtime.settings, old_key)
        passwords = [f"pw-{n}-{time.time_ns()}" for n in range(3)]
        for password in passwords:
            await EmailAccount(
                user_id=new_user_id(),
                label="rotation",
                host="127.0.0.1",
                port=993,
                security="SSL",
                username="someone",
                password_encrypted=encrypt_secret(old_settings, password),
            ).insert()
        unreadable = EmailAccount(
            user_id=new_user_id(),
            label="unreadable",
            host="127.0.0.1",
            port=993,
            security="SSL",
            username="someone",
            password_encrypted=encrypt_secret(with_keys(old_settings, Fernet.generate_key()), "x"),
        )
        await unreadable.insert()

        env = {
            **os.environ,
            "MAILSCAN_MONGODB_DATABASE": database,
            "MAILSCAN_SECRET_KEYS": f"{new_key.decode()},{old_key.decode()}",
        }
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "jobs.rotate_keys"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 1, completed.stderr
        assert completed.stdout.splitlines() == [
            "rotated 3 account passwords; 0 changed meanwhile; 1 unreadable",
            f"account {unreadable.id}: no key in MAILSCAN_SECRET_KEYS decrypts its password",
        ]

        new_only = with_keys(old_settings, new_key)
        stored = await EmailAccount.find({"label": "rotation"}).to_list()
        decrypted = sorted(decrypt_secret(new_only, a.password_encrypted) for a in stored)
        assert decrypted == sorted(passwords)
        for password in passwords:
            assert password not in completed.stdout + completed.stderr


# --- a whole scan, searched for the password -------------------------------------------------


async def database_text(services: Any) -> str:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(services.mongodb_url)
    try:
        database = client[get_settings().mongodb_database]
        parts = []
        for name in await database.list_collection_names():
            async for document in database[name].find({}):
                parts.append(repr(document))
        return "\n".join(parts)
    finally:
        await client.close()


async def redis_text(redis: Redis) -> str:
    """Return every key and value in Redis as text, whatever the value type."""
    parts = []
    async for key in redis.scan_iter(count=1000):
        raw_kind = await redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else raw_kind
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        parts.append(f"{key!r} {kind} {value!r}")
    return "\n".join(parts)


async def record_pubsub(redis: Redis, messages: list[str], stop: asyncio.Event) -> None:
    pubsub = redis.pubsub()
    await pubsub.psubscribe("*")
    try:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                messages.append(repr(message))
    finally:
        await pubsub.aclose()


def read_log(path: Path) -> str:
    return path.read_text(errors="replace")


async def test_password_leaks_nowhere(api_server: Any, services: Any, mail_user: Any) -> None:
    mailbox = mail_user()
    password = mailbox.password
    assert len(password) >= 12
    now = datetime.now(UTC)
    files = sorted(CORPUS.iterdir())[:200]
    mailbox.deliver_many((path.read_bytes(), now - timedelta(days=2)) for path in files)

    worker_log = services.state_dir / f"secrets-worker-{time.time_ns()}.log"
    worker = WorkerProcess(worker_log, 2, get_settings().queue_name)
    worker.start()
    redis = Redis.from_url(services.redis_url)
    published: list[str] = []
    stop = asyncio.Event()
    recorder = asyncio.create_task(record_pubsub(redis, published, stop))
    api_log = Path(api_server.log_file)
    api_log_start = len(await asyncio.to_thread(read_log, api_log))
    responses: list[str] = []
    user_id = new_user_id()
    try:
        async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
            connect = """mutation C($input: ImapAccountInput!) { connectImapAccount(input: $input) {
              __typename ... on ConnectAccountSuccess { account { id label host port security
              username folders createdAt } } } }"""
            variables = {
                "input": {
                    "host": "127.0.0.1",
                    "port": mailbox.imaps_port,
                    "username": mailbox.name,
                    "password": password,
                }
            }
            response = await client.post(
                "/graphql",
                json={"query": connect, "variables": variables},
                headers={"Authorization": f"Bearer dev:{user_id}"},
            )
            responses.append(response.text)
            account_id = response.json()["data"]["connectImapAccount"]["account"]["id"]

            start = """mutation S($a: ID!) { startScan(accountId: $a) {
              ... on StartScanSuccess { task { id } } } }"""
            task_id = (await graphql(client, user_id, start, {"a": account_id}))["startScan"][
                "task"
            ]["id"]
            progress = "subscription P($t: ID!) { scanProgress(taskId: $t) { status message } }"
            async for event in subscribe(api_server.ws_url, user_id, progress, {"t": task_id}):
                responses.append(repr(event))
            full = """query Q($t: ID!) { task(id: $t) { status error { code message } account {
              id label host username } summary { messages } }
              accounts { id label host port username } }"""
            result = await graphql(client, user_id, full, {"t": task_id})
            responses.append(repr(result))
        assert result["task"]["status"] == "COMPLETED", result
        assert result["task"]["summary"]["messages"] == len(files)
    finally:
        stop.set()
        await recorder
        worker.stop()

    stored = await database_text(services)
    keys = await redis_text(redis)
    await redis.aclose()
    api_text = (await asyncio.to_thread(read_log, api_log))[api_log_start:]
    worker_text = await asyncio.to_thread(read_log, worker_log)

    # The searches see the data: the account and the task are there under their ids.
    assert account_id in stored
    assert mailbox.name in stored
    assert task_id in keys
    assert any(task_id in message for message in published)
    assert task_id in worker_text
    assert user_id in api_text

    sources = {
        "database": stored,
        "redis keys": keys,
        "pub/sub messages": "\n".join(published),
        "API responses": "\n".join(responses),
        "API log": api_text,
        "worker log": worker_text,
    }
    for name, text in sources.items():
        assert password not in text, f"the password appears in the {name}"


@pytest.mark.parametrize("value", ["short", "x" * 200])
def test_encrypted_token_hides_password(value: str) -> None:
    settings = isolated_settings()
    token = encrypt_secret(settings, value)
    assert value not in token
    assert decrypt_secret(settings, token) == value
