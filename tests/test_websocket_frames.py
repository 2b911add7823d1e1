"""encode_next: the graphql-transport-ws ``next`` frame built from a cached payload text."""

from __future__ import annotations

import json
from typing import Any

import strawberry
from strawberry.asgi import GraphQL

from api.websocket import encode_next


@strawberry.type
class Query:
    ready: bool = True


class CountingView(GraphQL[Any, Any]):
    """Strawberry's view, counting the calls of its JSON encoder."""

    def __init__(self) -> None:
        super().__init__(strawberry.Schema(query=Query))
        self.encoded: list[object] = []

    def encode_json(self, data: object) -> str | bytes:
        self.encoded.append(data)
        return super().encode_json(data)


def next_message(operation_id: str, payload: dict[str, Any]) -> Any:
    return {"id": operation_id, "type": "next", "payload": payload}


def test_frame_equals_strawberry_encoding() -> None:
    view = CountingView()
    data = {"scanProgress": {"status": "RUNNING", "message": 'caf\u00e9 "quoted"'}}
    message = next_message("op-1", {"data": data})

    assert encode_next(view, message) == GraphQL.encode_json(view, message)


def test_frames_carry_own_operation_id() -> None:
    view = CountingView()
    data = {"scanProgress": {"sequence": 3}}

    first = encode_next(view, next_message("1", {"data": data}))
    second = encode_next(view, next_message('sub "2"', {"data": data}))

    assert first is not None
    assert second is not None
    assert json.loads(first) == {"id": "1", "type": "next", "payload": {"data": data}}
    assert json.loads(second) == {"id": 'sub "2"', "type": "next", "payload": {"data": data}}


def test_shared_data_encoded_once() -> None:
    view = CountingView()
    data = {"scanProgress": {"sequence": 4}}

    for operation_id in ("a", "b", "c"):
        encode_next(view, next_message(operation_id, {"data": data}))

    payloads = [value for value in view.encoded if isinstance(value, dict)]
    assert payloads == [{"data": data}]


def test_equal_but_distinct_data_encoded_apart() -> None:
    view = CountingView()

    encode_next(view, next_message("a", {"data": {"scanProgress": {"sequence": 5}}}))
    encode_next(view, next_message("b", {"data": {"scanProgress": {"sequence": 5}}}))

    payloads = [value for value in view.encoded if isinstance(value, dict)]
    assert len(payloads) == 2


def test_payload_with_errors_left_to_strawberry() -> None:
    view = CountingView()
    payload = {"data": None, "errors": [{"message": "failed"}]}

    assert encode_next(view, next_message("a", payload)) is None


def test_payload_with_extensions_left_to_strawberry() -> None:
    view = CountingView()
    payload = {"data": {"ready": True}, "extensions": {"cost": 1}}

    assert encode_next(view, next_message("a", payload)) is None


def test_other_message_types_left_to_strawberry() -> None:
    view = CountingView()

    assert encode_next(view, {"type": "ping"}) is None
    assert encode_next(view, {"id": "a", "type": "complete"}) is None
