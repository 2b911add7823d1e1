"""Masking of unexpected errors: internal failures and lost connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError
from pymongo.errors import AutoReconnect, OperationFailure
from strawberry.types import ExecutionResult

from schema.masking import INTERNAL_ERROR_MESSAGE, UNAVAILABLE_MESSAGE, MaskUnexpectedErrors


def unexpected(original: Exception) -> GraphQLError:
    return GraphQLError("detail with internals", path=["accounts"], original_error=original)


def test_lost_database_connection_is_service_unavailable() -> None:
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(AutoReconnect("closed")))
    assert masked.message == UNAVAILABLE_MESSAGE
    assert masked.extensions == {"code": "SERVICE_UNAVAILABLE"}


def test_busy_sqlite_database_is_service_unavailable() -> None:
    busy = OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1)
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(busy))
    assert masked.message == UNAVAILABLE_MESSAGE
    assert masked.extensions == {"code": "SERVICE_UNAVAILABLE"}


def test_other_database_failure_is_internal_error() -> None:
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(OperationFailure("bad", code=2)))
    assert masked.extensions == {"code": "INTERNAL_SERVER_ERROR"}


def test_other_failure_is_internal_error() -> None:
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(KeyError("secret")))
    assert masked.message == INTERNAL_ERROR_MESSAGE
    assert masked.extensions == {"code": "INTERNAL_SERVER_ERROR"}


@strawberry.type
class Reading:
    value: int

    @strawberry.field
    def checked(self) -> int | None:
        if self.value < 0:
            raise KeyError("secret")
        return self.value


@strawberry.type
class Query:
    ready: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def readings(self, values: list[int]) -> AsyncGenerator[Reading, None]:
        for value in values:
            yield Reading(value=value)


def stream_readings(values: list[int]) -> list[ExecutionResult]:
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, extensions=[MaskUnexpectedErrors]
    )

    async def collect() -> list[ExecutionResult]:
        stream = await schema.subscribe(
            "subscription Readings($values: [Int!]!) { readings(values: $values) { checked } }",
            variable_values={"values": values},
        )
        assert not isinstance(stream, ExecutionResult), stream
        return [result async for result in stream]

    return asyncio.run(collect())


def test_streamed_error_between_clean_results_is_masked() -> None:
    first, failed, last = stream_readings([1, -1, 2])

    assert first.data == {"readings": {"checked": 1}}
    assert first.errors is None
    assert failed.data == {"readings": {"checked": None}}
    assert failed.errors is not None
    [error] = failed.errors
    assert error.message == INTERNAL_ERROR_MESSAGE
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR"}
    assert last.data == {"readings": {"checked": 2}}
    assert last.errors is None


def test_streamed_error_in_last_result_is_masked() -> None:
    first, failed = stream_readings([1, -1])

    assert first.errors is None
    assert failed.errors is not None
    [error] = failed.errors
    assert error.message == INTERNAL_ERROR_MESSAGE
    assert "secret" not in str(error.formatted)
