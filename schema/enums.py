"""GraphQL enums: the document enums, registered with Strawberry.

Registering the same classes keeps the GraphQL values and the stored values identical.
``strawberry.enum`` marks each class in place, so the names below are the document enums.
"""

from __future__ import annotations

import strawberry

from jobs.documents import FindingKind, ImapSecurity, ScanPhase, ScanStatus

strawberry.enum(ScanStatus, description="Where a scan task is in its life.")
strawberry.enum(ScanPhase, description="What a scan is doing: QUEUED before it starts, DONE after.")
strawberry.enum(
    ImapSecurity,
    description="Transport security of an IMAP connection; NONE only where the server allows it.",
)
strawberry.enum(FindingKind, description="Kind of problem found in a message.")

__all__ = ["FindingKind", "ImapSecurity", "ScanPhase", "ScanStatus"]
