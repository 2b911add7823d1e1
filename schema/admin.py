"""Admin-only queries: ``systemHealth``.

Admins are the user ids in ``Settings.admin_users``. Any other signed-in user gets a GraphQL
error whose ``extensions.code`` is ``FORBIDDEN``.
"""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from jobs.health import queue_facts, running_tasks, sending_broker
from schema.context import Info


@strawberry.type(description="A worker broker and the time since its last heartbeat.")
class WorkerHeartbeat:
    id: str
    last_heartbeat_seconds_ago: float


@strawberry.type(description="State of the scan queue, the workers and this API process.")
class SystemHealth:
    queue_name: str
    queued_messages: int = strawberry.field(description="Messages waiting for a worker.")
    delayed_messages: int = strawberry.field(
        description="Messages sent with a delay (scheduled retries)."
    )
    oldest_queued_seconds: float | None = strawberry.field(
        description="Age of the message at the head of the queue; null when it is empty."
    )
    running_tasks: int = strawberry.field(description="Tasks RUNNING or CANCELLING.")
    live_workers: int = strawberry.field(
        description="Worker brokers with a heartbeat in the last 60 seconds."
    )
    workers: list[WorkerHeartbeat]
    progress_subscribers: int = strawberry.field(
        description="Progress subscriptions open on the API process that returned this."
    )
    progress_channels: int = strawberry.field(
        description="Redis channels the progress hub of that process listens to."
    )


def require_admin(info: Info) -> str:
    """Return the signed-in admin's user id; raise a FORBIDDEN GraphQL error for anyone else."""
    context = info.context
    user_id = context.require_user_id()
    if user_id not in context.runtime.settings.admin_users:
        raise GraphQLError("admin access required", extensions={"code": "FORBIDDEN"})
    return user_id


async def resolve_system_health(info: Info) -> SystemHealth:
    require_admin(info)
    runtime = info.context.runtime
    queue = await queue_facts(
        runtime.redis,
        runtime.keys,
        runtime.settings.queue_name,
        exclude_broker=sending_broker().broker_id,
    )
    hub = info.context.hub
    return SystemHealth(
        queue_name=queue.queue_name,
        queued_messages=queue.queued,
        delayed_messages=queue.delayed,
        oldest_queued_seconds=queue.oldest_queued_age_s,
        running_tasks=await running_tasks(),
        live_workers=len(queue.workers),
        workers=[
            WorkerHeartbeat(id=worker.broker_id, last_heartbeat_seconds_ago=worker.age_s)
            for worker in queue.workers
        ],
        progress_subscribers=hub.subscriber_count,
        progress_channels=hub.channel_count,
    )
