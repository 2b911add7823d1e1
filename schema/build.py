"""Assembly of the GraphQL schema with its extensions."""

from __future__ import annotations

from functools import partial

from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from jobs.settings import Settings
from schema.masking import LoggingSchema, MaskUnexpectedErrors
from schema.mutations import Mutation
from schema.queries import Query
from schema.subscriptions import ProgressExecutor, Subscription


def build_schema(
    max_query_depth: int = Settings.max_query_depth,
    max_query_aliases: int = Settings.max_query_aliases,
    max_query_tokens: int = Settings.max_query_tokens,
) -> LoggingSchema:
    """Build the schema, rejecting operations nested deeper than ``max_query_depth`` fields,
    with more than ``max_query_aliases`` aliases or more than ``max_query_tokens`` tokens."""
    return LoggingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories, not instances: each operation needs its own extension objects.
        extensions=[
            partial(MaxTokensLimiter, max_token_count=max_query_tokens),
            partial(QueryDepthLimiter, max_depth=max_query_depth),
            partial(MaxAliasesLimiter, max_alias_count=max_query_aliases),
            MaskUnexpectedErrors,
        ],
        execution_context_class=ProgressExecutor,
    )
