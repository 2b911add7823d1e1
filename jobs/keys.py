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
