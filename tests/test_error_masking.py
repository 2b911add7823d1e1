"""Masking of unexpected errors: internal failures and lost connections."""

from __future__ import annotations

from graphql import GraphQLError
from pymongo.errors import AutoReconnect

from schema.masking import INTERNAL_ERROR_MESSAGE, UNAVAILABLE_MESSAGE, MaskUnexpectedErrors


def unexpected(original: Exception) -> GraphQLError:
    return GraphQLError("detail with internals", path=["accounts"], original_error=original)


def test_lost_database_connection_is_service_unavailable() -> None:
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(AutoReconnect("closed")))
    assert masked.message == UNAVAILABLE_MESSAGE
    assert masked.extensions == {"code": "SERVICE_UNAVAILABLE"}


def test_other_failure_is_internal_error() -> None:
    masked = MaskUnexpectedErrors().anonymise_error(unexpected(KeyError("secret")))
    assert masked.message == INTERNAL_ERROR_MESSAGE
    assert masked.extensions == {"code": "INTERNAL_SERVER_ERROR"}
