"""Every Redis key and pub/sub channel name, defined once.

All names start with the configured prefix (``Settings.redis_prefix``), so several deployments
can share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    def progress_channel(self, task_id: str) -> str:
        """Channel of every progress event of one task."""
        return f"{self.prefix}:progress:{task_id}"

    def user_channel(self, user_id: str) -> str:
        """Channel of every progress event of every task of one user."""
        return f"{self.prefix}:user:{user_id}"

    def progress_snapshot(self, task_id: str) -> str:
        """String key holding the latest progress event of a task (JSON)."""
        return f"{self.prefix}:progress-latest:{task_id}"

    def progress_sequence(self, task_id: str) -> str:
        """Counter giving each progress event of a task its ``sequence``."""
        return f"{self.prefix}:progress-seq:{task_id}"

    def cancel_flag(self, task_id: str) -> str:
        """Set while a cancellation of the task is pending; workers poll it."""
        return f"{self.prefix}:cancel:{task_id}"

    def claim_lock(self, task_id: str) -> str:
        """Set while one worker claims the task, so claims of one task never overlap."""
        return f"{self.prefix}:claim:{task_id}"

    @property
    def broker_namespace(self) -> str:
        """Prefix of the Dramatiq Redis broker's keys (``RedisBroker(namespace=...)``)."""
        return f"{self.prefix}-dramatiq"

    def broker_queue(self, queue_name: str) -> str:
        """List of the ids of the messages waiting on a Dramatiq queue, oldest first.

        Dramatiq 2.x keeps the message bodies in the hash ``<this key>.msgs`` and the delayed
        messages of queue ``q`` on queue ``q.DQ``.
        """
        return f"{self.broker_namespace}:{queue_name}"

    @property
    def broker_heartbeats(self) -> str:
        """Sorted set of Dramatiq broker ids scored by their last command, in epoch ms."""
        return f"{self.broker_namespace}:__heartbeats__"

    def broker_unacked_pattern(self, queue_name: str) -> str:
        """Pattern of the sets of messages that a consumer fetched from a queue and not acked."""
        return f"{self.broker_namespace}:__acks__.*.{queue_name}"
