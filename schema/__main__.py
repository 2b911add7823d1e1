"""Print the schema in SDL: ``python -m schema > schema.graphql``."""

from __future__ import annotations

from schema import schema

print(schema)
