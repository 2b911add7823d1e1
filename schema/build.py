"""Assembly of the GraphQL schema with its extensions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from jobs.settings import Settings
from schema.masking import LoggingSchema, MaskUnexpectedErrors
from schema.mutations import Mutation
from schema.queries import Query
from schema.subscriptions import ProgressExecutor, Subscription

#: Distinct documents whose parse and validation results each process keeps.
CACHED_DOCUMENTS = 256
#: Maximum length of a query text kept in the parse cache, in characters. The token limit
#: does not bound the text (whitespace and comments are not tokens), so a longer query is
#: parsed each time.
MAX_CACHED_QUERY_CHARS = 64 * 1024


class BoundedParserCache(ParserCache):
    """Strawberry's parse cache, for query texts up to ``MAX_CACHED_QUERY_CHARS`` only.

    A document that does not parse is left to Strawberry's own parse step, which turns the
    syntax error into an error result. Raised from this hook instead, the error would end a
    websocket operation with ``complete`` and no ``error`` message (Strawberry 0.341).
    """

    def __init__(self) -> None:
        super().__init__(maxsize=CACHED_DOCUMENTS)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query or ""
        if len(query) <= MAX_CACHED_QUERY_CHARS:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = self.cached_parse_document(
                    query, **context.parse_options
                )
        yield


def build_schema(
    max_query_depth: int = Settings.max_query_depth,
    max_query_aliases: int = Settings.max_query_aliases,
    max_query_tokens: int = Settings.max_query_tokens,
) -> LoggingSchema:
    """Build the schema, rejecting operations nested deeper than ``max_query_depth`` fields,
    with more than ``max_query_aliases`` aliases or more than ``max_query_tokens`` tokens.

    Parsing and validating took about a quarter of the API's CPU time under load (py-spy),
    and frontends send the same few documents over and over, so both results are cached.
    """
    # The limiters build a new rule class per instance. Building them once gives every
    # operation the same rules, which the validation cache needs in its key.
    limit_rules = [
        *QueryDepthLimiter(max_depth=max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_query_aliases).validation_rules,
    ]
    return LoggingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories, not instances: each operation needs its own extension objects.
        extensions=[
            partial(MaxTokensLimiter, max_token_count=max_query_tokens),
            partial(AddValidationRules, limit_rules),
            BoundedParserCache,
            partial(ValidationCache, maxsize=CACHED_DOCUMENTS),
            MaskUnexpectedErrors,
        ],
        execution_context_class=ProgressExecutor,
    )
