"""Execution of one subscription event once for every subscriber with the same operation.

graphql-core executes the selection set of a subscription once per event and per subscriber.
When 1,000 websockets follow one task, each event was executed 1,000 times with the same
result. :class:`SharedEventExecutor` executes an event once per distinct operation (document
text, operation name and variable values) and hands the same :class:`ExecutionResult` to the
other subscribers of that operation.

Only the first subscriber's resolvers and field middleware (extension ``resolve`` hooks) run
for a shared event. So no resolver in the selection set of a root type listed in
``shared_root_types`` may read ``info.context``, the operation's ``info.root_value`` or other
per-connection state, or have side effects. Event objects must not change once yielded,
because the cache compares them by identity.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any, ClassVar, Generic, TypeVar

from graphql import ExecutionResult
from graphql.pyutils import AwaitableOrValue
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

V = TypeVar("V")

#: Maximum entries of each cache. An event in flight needs one entry per distinct operation.
SHARED_RESULTS = 256


class IdentityCache(Generic[V]):
    """A bounded map from an object's identity and a key to a value derived from the object.

    Each entry holds a reference to its object, so no other object can reuse its ``id`` while
    the entry exists. When full, the oldest entry is dropped. Single-threaded use only.
    """

    def __init__(self, max_entries: int = SHARED_RESULTS) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: dict[tuple[int, Hashable], tuple[object, V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, obj: object, key: Hashable = None) -> V | None:
        entry = self._entries.get((id(obj), key))
        if entry is None or entry[0] is not obj:
            return None
        return entry[1]

    def put(self, obj: object, value: V, key: Hashable = None) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[(id(obj), key)] = (obj, value)


def operation_key(executor: StrawberryGraphQLCoreExecutionContext) -> Hashable | None:
    """Return what makes two subscriptions execute an event alike, or None if unknown.

    None when the document has no source text, the operation carries Strawberry operation
    extensions, or a variable value cannot be written as JSON.
    """
    location = executor.operation.loc
    if location is None or executor.operation_extensions:
        return None
    name = executor.operation.name.value if executor.operation.name else None
    try:
        variables = json.dumps(executor.variable_values.coerced, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return (executor.schema, location.source.body, name, variables)


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, sharing the result of an event between identical subscriptions.

    A result is shared only when the event is an instance of ``shared_root_types``, the
    execution finished without awaiting and the result has no errors. Any other result is
    computed per subscriber, as graphql-core does.
    """

    #: Event types whose results may be shared, under the contract in the module docstring.
    shared_root_types: ClassVar[tuple[type, ...]] = ()
    #: Recent results, keyed by event identity and :func:`operation_key`.
    results: ClassVar[IdentityCache[ExecutionResult]] = IdentityCache()

    #: Sharing key of a per-event executor whose event may be shared, else None.
    _event_key: Hashable | None = None
    #: :func:`operation_key` of the subscription, computed on its first event.
    _operation_key: Hashable | None = None
    _operation_key_known = False

    def build_per_event_executor(self, payload: Any) -> SharedEventExecutor:
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, SharedEventExecutor)
        if isinstance(payload, self.shared_root_types):
            executor._event_key = self._subscription_key()
        return executor

    def _subscription_key(self) -> Hashable | None:
        if not self._operation_key_known:
            self._operation_key = operation_key(self)
            self._operation_key_known = True
        return self._operation_key

    def execute_operation(
        self, serially: bool | None = None
    ) -> AwaitableOrValue[ExecutionResult | Any]:
        key = self._event_key
        if key is None:
            return super().execute_operation(serially)
        shared = self.results.get(self.root_value, key)
        if shared is not None:
            return shared
        result = super().execute_operation(serially)
        if isinstance(result, ExecutionResult) and not result.errors:
            self.results.put(self.root_value, result, key)
        return result
