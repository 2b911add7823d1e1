"""The GraphQL schema of mailscan: types, queries, mutations and subscriptions."""

from __future__ import annotations

from schema.build import build_schema

#: Schema with the default query depth limit; the API builds its own from its settings.
schema = build_schema()

__all__ = ["build_schema", "schema"]
