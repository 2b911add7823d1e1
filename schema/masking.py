"""Logging and masking of unexpected errors.

An error is expected when the code raised a GraphQL error with ``extensions.code`` on purpose,
or when the request itself is invalid (syntax, validation, variable types). Any other error
raised while resolving a field is logged with its traceback and the user id, and the client
gets a generic text with ``extensions.code = "INTERNAL_SERVER_ERROR"``, or
``"SERVICE_UNAVAILABLE"`` when a database or Redis connection was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from pymongo.errors import ConnectionFailure, OperationFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import StreamExecutionResult

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "internal server error; the failure was logged, try again later"
UNAVAILABLE_MESSAGE = "the database or Redis was briefly unavailable; try again"


#: Text of the error FerretDB on SQLite returns while another write holds the database lock.
SQLITE_BUSY = "SQLITE_BUSY"


def is_outage(error: GraphQLError) -> bool:
    """Tell whether ``error`` came from a lost database or Redis connection, or from a database
    that is busy for now (FerretDB on SQLite while a long write holds its lock)."""
    original = error.original_error
    if isinstance(original, OperationFailure):
        return SQLITE_BUSY in str(original)
    return isinstance(original, ConnectionFailure | RedisConnectionError)


def is_unexpected(error: GraphQLError) -> bool:
    """Tell whether ``error`` came from a failure in the server rather than from the request."""
    if error.path is None or error.original_error is None:
        return False
    original = error.original_error
    return not (isinstance(original, GraphQLError) and "code" in (original.extensions or {}))


class MaskUnexpectedErrors(MaskErrors):
    """Replace unexpected errors by a generic INTERNAL_SERVER_ERROR error."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message=INTERNAL_ERROR_MESSAGE)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        # Strawberry 0.341 checks every streamed result against a runtime Protocol: about 3 %
        # of the API's py-spy samples in B3 (bench/fanout.py, 1,000 subscribers, 2 cores). A
        # subscription result without errors has nothing to mask, and on_operation then
        # checks only that result, which also has none.
        if isinstance(result, ExecutionResult) and not result.errors:
            yield None
            return
        yield from super().on_stream_result(result)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        if is_outage(error):
            # NOTE: after a database restart, each API process fails the first operation on
            # every stale pooled connection, because pymongo does not retry against a
            # standalone server. The client gets this retryable code, not an internal error.
            masked.message = UNAVAILABLE_MESSAGE
            masked.extensions = {"code": "SERVICE_UNAVAILABLE"}
        else:
            masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked


class LoggingSchema(strawberry.Schema):
    """Schema that logs each error once, with the user id, before any masking."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context = execution_context.context if execution_context is not None else None
        user_id = getattr(context, "user_id", None)
        operation = execution_context.operation_name if execution_context is not None else None
        operation = operation or "(anonymous)"
        for error in errors:
            if is_unexpected(error):
                logger.error(
                    "user %s operation %s failed at %s",
                    user_id,
                    operation,
                    ".".join(map(str, error.path or ())),
                    exc_info=error.original_error,
                )
            else:
                # A rejected document can be megabytes long; its first characters identify it.
                logger.info(
                    "user %s operation %s rejected: %.300s", user_id, operation, error.message
                )
