"""SharedEventExecutor, IdentityCache and the shared ScanProgress objects, without servers.

A toy schema counts how often each field resolver runs. Its subscription yields the same
event objects to every subscriber, as the progress hub does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import strawberry
from strawberry.types import ExecutionResult

from jobs.documents import ScanPhase, ScanStatus, utcnow
from jobs.progress import ProgressEvent
from schema import build_schema
from schema.sharing import IdentityCache, SharedEventExecutor
from schema.subscriptions import ProgressExecutor, progress_of
from schema.types import ScanProgress

#: Field name -> how often its resolver ran.
calls: dict[str, int] = {}


def count(field: str) -> None:
    calls[field] = calls.get(field, 0) + 1


@strawberry.type
class Tick:
    value: int

    @strawberry.field
    def doubled(self) -> int:
        count("doubled")
        return self.value * 2

    @strawberry.field
    def tripled(self) -> int:
        count("tripled")
        return self.value * 3

    @strawberry.field
    def checked(self) -> int | None:
        count("checked")
        if self.value < 0:
            raise ValueError(f"negative tick {self.value}")
        return self.value


@strawberry.type
class Tock:
    value: int

    @strawberry.field
    def doubled(self) -> int:
        count("tock")
        return self.value * 2


#: Events of the current test. Every subscription yields these same objects.
ticks: list[Tick] = []
tocks: list[Tock] = []


@strawberry.type
class Query:
    ready: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self, offset: int = 0) -> AsyncGenerator[Tick, None]:
        for tick in ticks:
            yield tick

    @strawberry.subscription
    async def tocks(self) -> AsyncGenerator[Tock, None]:
        for tock in tocks:
            yield tock


class TickExecutor(SharedEventExecutor):
    shared_root_types = (Tick,)
    results: Any = IdentityCache()


def toy_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=TickExecutor
    )


@pytest.fixture(autouse=True)
def fresh_state() -> None:
    calls.clear()
    ticks[:] = [Tick(value=1), Tick(value=2)]
    tocks[:] = [Tock(value=1), Tock(value=2)]
    TickExecutor.results = IdentityCache()


async def collect(
    schema: strawberry.Schema, query: str, variables: dict[str, Any] | None = None
) -> list[ExecutionResult]:
    stream = await schema.subscribe(query, variable_values=variables)
    assert not isinstance(stream, ExecutionResult), stream
    return [result async for result in stream]


def run_subscribers(
    schema: strawberry.Schema, *operations: tuple[str, dict[str, Any] | None]
) -> list[list[ExecutionResult]]:
    async def run_all() -> list[list[ExecutionResult]]:
        return list(
            await asyncio.gather(*(collect(schema, query, vars_) for query, vars_ in operations))
        )

    return asyncio.run(run_all())


DOUBLED = "subscription { ticks { doubled } }"


def test_same_operation_executes_once_per_event() -> None:
    first, second, third = run_subscribers(
        toy_schema(), (DOUBLED, None), (DOUBLED, None), (DOUBLED, None)
    )

    assert calls == {"doubled": 2}
    assert [result.data for result in first] == [
        {"ticks": {"doubled": 2}},
        {"ticks": {"doubled": 4}},
    ]
    for results in (second, third):
        assert [result.data for result in results] == [result.data for result in first]
        for own, shared in zip(results, first, strict=True):
            assert own.data is shared.data


def test_different_selection_is_not_shared() -> None:
    doubled, tripled = run_subscribers(
        toy_schema(), (DOUBLED, None), ("subscription { ticks { tripled } }", None)
    )

    assert calls == {"doubled": 2, "tripled": 2}
    assert doubled[0].data == {"ticks": {"doubled": 2}}
    assert tripled[0].data == {"ticks": {"tripled": 3}}


def test_different_variables_are_not_shared() -> None:
    query = "subscription Ticks($offset: Int!) { ticks(offset: $offset) { doubled } }"
    run_subscribers(toy_schema(), (query, {"offset": 1}), (query, {"offset": 2}))

    assert calls == {"doubled": 4}


def test_equal_variables_are_shared() -> None:
    query = "subscription Ticks($offset: Int!) { ticks(offset: $offset) { doubled } }"
    run_subscribers(toy_schema(), (query, {"offset": 1}), (query, {"offset": 1}))

    assert calls == {"doubled": 2}


def test_result_with_errors_is_not_shared() -> None:
    ticks[:] = [Tick(value=-1)]
    query = "subscription { ticks { checked } }"
    first, second = run_subscribers(toy_schema(), (query, None), (query, None))

    assert calls == {"checked": 2}
    for results in (first, second):
        [result] = results
        assert result.data == {"ticks": {"checked": None}}
        assert result.errors is not None
        assert result.errors[0].message == "negative tick -1"
    assert first[0].errors is not second[0].errors


def test_unlisted_root_type_is_not_shared() -> None:
    query = "subscription { tocks { doubled } }"
    run_subscribers(toy_schema(), (query, None), (query, None))

    assert calls == {"tock": 4}


def test_equal_but_distinct_events_are_not_shared() -> None:
    # Sharing follows object identity, so equal events from two reads are executed apart.
    schema = toy_schema()
    run_subscribers(schema, (DOUBLED, None))
    ticks[:] = [Tick(value=1), Tick(value=2)]
    run_subscribers(schema, (DOUBLED, None))

    assert calls == {"doubled": 4}


def test_identity_cache_evicts_oldest() -> None:
    cache: IdentityCache[str] = IdentityCache(max_entries=2)
    first, second, third = object(), object(), object()
    cache.put(first, "first")
    cache.put(second, "second")
    cache.put(third, "third")

    assert len(cache) == 2
    assert cache.get(first) is None
    assert cache.get(second) == "second"
    assert cache.get(third) == "third"


def test_identity_cache_separates_keys() -> None:
    cache: IdentityCache[str] = IdentityCache()
    event = object()
    cache.put(event, "a", key="query a")
    cache.put(event, "b", key="query b")

    assert cache.get(event, "query a") == "a"
    assert cache.get(event, "query b") == "b"
    assert cache.get(event) is None


def test_identity_cache_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries must be at least 1, got 0"):
        IdentityCache(max_entries=0)


def progress_event(sequence: int) -> ProgressEvent:
    return ProgressEvent(
        task_id="task-1",
        user_id="user-1",
        status=ScanStatus.RUNNING,
        phase=ScanPhase.FETCHING,
        percent=10.0,
        processed=1,
        total=10,
        sequence=sequence,
        updated_at=utcnow(),
    )


def test_progress_of_same_event_is_same_object() -> None:
    event = progress_event(1)

    assert progress_of(event) is progress_of(event)
    assert progress_of(event) == ScanProgress.from_event(event)


def test_progress_of_equal_copy_is_new_object() -> None:
    event = progress_event(2)

    assert progress_of(event) is not progress_of(event.model_copy())


def test_api_schema_shares_progress_only() -> None:
    schema = build_schema()

    assert schema.execution_context_class is ProgressExecutor
    assert ProgressExecutor.shared_root_types == (ScanProgress,)
