"""B3: progress latency and fan-out to many websocket subscribers of one scan.

The scan is started with no worker running, every subscriber connects and subscribes, then
a worker starts. Latency is the subscriber's clock at receipt minus the event's ``updatedAt``
(set by the actor just before it publishes); both clocks are this machine's. The stored
snapshot a subscriber gets first is left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime

import redis
import websockets
from websockets.typing import Subprotocol

from bench.harness import Api, Bench
from bench.procs import cpu_seconds, peak_rss_mb
from bench.stats import latency_row
from jobs.keys import RedisKeys
from jobs.settings import get_settings

PROGRESS = """
subscription Progress($taskId: ID!) {
  scanProgress(taskId: $taskId) { status sequence updatedAt }
}
"""
#: Subscribers that connect at the same moment.
CONNECT_CONCURRENCY = 50
#: Maximum wait for a subscriber's next message, in seconds.
RECEIVE_TIMEOUT_S = 300.0


@dataclass
class FanOut:
    subscribers: int
    api_processes: int
    samples_s: list[float] = field(default_factory=list)
    terminal: int = 0
    events_per_subscriber: list[int] = field(default_factory=list)
    #: Redis connections in pub/sub mode while the subscribers were connected.
    pubsub_connections: int = 0
    #: PUBSUB NUMSUB of the task's channel.
    channel_subscribers: int = 0
    api_peak_rss_mb: list[float] = field(default_factory=list)
    connect_s: float = 0.0
    subscribed: int = 0
    #: CPU seconds per second of wall time while events flowed: the API processes, this process.
    api_cpu: float = 0.0
    client_cpu: float = 0.0
    all_subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def row(self) -> dict[str, float]:
        return latency_row(self.samples_s)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def subscriber(
    ws_url: str, user: str, task_id: str, gate: asyncio.Semaphore,
    result: FanOut,
) -> None:  # fmt: skip
    async with gate:
        socket = await websockets.connect(
            ws_url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            max_queue=None,
            open_timeout=60,
        )
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer dev:{user}"}}
        await socket.send(json.dumps(init))
        while json.loads(await socket.recv())["type"] != "connection_ack":
            pass
        payload = {"query": PROGRESS, "variables": {"taskId": task_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    result.subscribed += 1
    if result.subscribed == result.subscribers:
        result.all_subscribed.set()
    events = 0
    try:
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT_S))
            received = time.time()
            if message["type"] == "complete":
                break
            if message["type"] != "next":
                continue
            event = message["payload"]["data"]["scanProgress"]
            if event["status"] == "QUEUED":
                continue
            events += 1
            result.samples_s.append(received - epoch(event["updatedAt"]))
            if event["status"] == "COMPLETED":
                result.terminal += 1
    finally:
        result.events_per_subscriber.append(events)
        await socket.close()


def count_pubsub(task_id: str) -> tuple[int, int]:
    """Redis clients subscribed to anything, and subscribers of the task's channel."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        clients = client.client_list()
        in_pubsub = sum(1 for row in clients if int(row.get("sub", 0)) + int(row.get("psub", 0)))
        channel = RedisKeys(settings.redis_prefix).progress_channel(task_id)
        numsub = dict(client.pubsub_numsub(channel))
        return in_pubsub, int(numsub.get(channel.encode(), 0))
    finally:
        client.close()


async def run(bench: Bench, subscribers: int, api_processes: int, messages: int) -> FanOut:
    """Needs no worker running on entry; leaves none running."""
    result = FanOut(subscribers, api_processes)
    apis = [bench.start_api() for _ in range(api_processes)]
    box = bench.mailbox(f"b3-{api_processes}", messages)
    try:
        async with Api(apis[0]) as api:
            account = await api.connect(box, bench.imaps_port)
            task_id = await api.start_scan(box.user, account)

        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        started = time.perf_counter()
        running = [
            asyncio.create_task(
                subscriber(apis[index % len(apis)].ws_url, box.user, task_id, gate, result)
            )
            for index in range(subscribers)
        ]
        await asyncio.wait_for(result.all_subscribed.wait(), RECEIVE_TIMEOUT_S)
        result.connect_s = time.perf_counter() - started
        # Subscriptions register on the server after the subscribe message arrives.
        await asyncio.sleep(2.0)
        result.pubsub_connections, result.channel_subscribers = count_pubsub(task_id)

        worker = bench.start_worker()
        api_before = sum(cpu_seconds(api.pid) for api in apis)
        client_before = cpu_seconds(os.getpid())
        flow_started = time.perf_counter()
        try:
            await asyncio.gather(*running)
            flow_s = time.perf_counter() - flow_started
            result.api_cpu = (sum(cpu_seconds(api.pid) for api in apis) - api_before) / flow_s
            result.client_cpu = (cpu_seconds(os.getpid()) - client_before) / flow_s
        finally:
            bench.stop_process(worker)
        result.api_peak_rss_mb = [peak_rss_mb(api.pid) for api in apis]
    finally:
        for api_process in apis:
            bench.stop_process(api_process)
    return result
