"""Expected failures as GraphQL union members, each with a ``message`` and a ``code``.

``code`` repeats the ``code`` of the :class:`jobs.errors.RequestError` subclass, so a client
can switch on either ``__typename`` or ``code``.
"""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from jobs.errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    QuotaExceededError,
    RequestError,
    ScanAlreadyRunningError,
)
from jobs.queries import get_task
from schema.context import Info
from schema.types import ScanTask


@strawberry.type(description="An argument has an invalid value; `field` names it.")
class InvalidInput:
    message: str
    code: str
    field: str

    @classmethod
    def from_error(cls, error: InvalidInputError) -> InvalidInput:
        return cls(message=error.message, code=error.code, field=error.field)


@strawberry.type(description="No such object for the signed-in user.")
class NotFound:
    message: str
    code: str

    @classmethod
    def from_error(cls, error: NotFoundError) -> NotFound:
        return cls(message=error.message, code=error.code)


async def _running_task(root: ScanAlreadyRunning, info: Info) -> ScanTask:
    # Non-null, like the `task` of the success members, so that a client can select `task`
    # on several members of one union. The task can only be missing if it was deleted after
    # the error was raised.
    task = await get_task(info.context.require_user_id(), str(root.task_id))
    if task is None:
        raise GraphQLError(
            f"scan task {root.task_id!r} no longer exists; start the scan again",
            extensions={"code": "NOT_FOUND"},
        )
    return ScanTask.from_document(task)


@strawberry.type(description="The account already has an active scan; `task` is that scan.")
class ScanAlreadyRunning:
    message: str
    code: str
    task_id: strawberry.ID

    task: ScanTask = strawberry.field(resolver=_running_task, description="The active scan.")

    @classmethod
    def from_error(cls, error: ScanAlreadyRunningError) -> ScanAlreadyRunning:
        return cls(message=error.message, code=error.code, task_id=strawberry.ID(error.task_id))


@strawberry.type(description="The object's state does not allow the operation.")
class InvalidState:
    message: str
    code: str

    @classmethod
    def from_error(cls, error: InvalidStateError) -> InvalidState:
        return cls(message=error.message, code=error.code)


@strawberry.type(description="A rate limit was hit; try again after `retryAfterSeconds`.")
class QuotaExceeded:
    message: str
    code: str
    retry_after_seconds: float

    @classmethod
    def from_error(cls, error: QuotaExceededError) -> QuotaExceeded:
        return cls(message=error.message, code=error.code, retry_after_seconds=error.retry_after_s)


def graphql_error(error: RequestError) -> GraphQLError:
    """Return ``error`` as a GraphQL error, for fields whose type has no error members.

    ``extensions.code`` is the error's code, plus ``extensions.field`` for invalid input.
    """
    extensions: dict[str, object] = {"code": error.code}
    if isinstance(error, InvalidInputError):
        extensions["field"] = error.field
    return GraphQLError(error.message, extensions=extensions)
