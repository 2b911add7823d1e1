"""Relay-style connections (edges, node, cursor, pageInfo) over :class:`jobs.queries.Page`.

Paging is forward only, with ``first`` and ``after``, newest item first.
"""

from __future__ import annotations

import strawberry

from jobs import documents
from jobs.queries import Page
from schema.types import Finding, ScanTask


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="True when the page was requested with `after`, so newer items exist."
    )
    start_cursor: str | None
    end_cursor: str | None


def page_info(cursors: list[str], has_next: bool, after: str | None) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


@strawberry.type
class ScanTaskEdge:
    cursor: str
    node: ScanTask


@strawberry.type
class ScanTaskConnection:
    edges: list[ScanTaskEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[documents.ScanTask], after: str | None) -> ScanTaskConnection:
        edges = [
            ScanTaskEdge(cursor=page.cursor(task), node=ScanTask.from_document(task))
            for task in page.items
        ]
        cursors = [edge.cursor for edge in edges]
        return cls(edges=edges, page_info=page_info(cursors, page.has_next, after))


@strawberry.type
class FindingEdge:
    cursor: str
    node: Finding


@strawberry.type
class FindingConnection:
    edges: list[FindingEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[documents.Finding], after: str | None) -> FindingConnection:
        edges = [
            FindingEdge(cursor=page.cursor(finding), node=Finding.from_document(finding))
            for finding in page.items
        ]
        cursors = [edge.cursor for edge in edges]
        return cls(edges=edges, page_info=page_info(cursors, page.has_next, after))
