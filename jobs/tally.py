"""The summary of a scan, counted while its batches are saved.

Counting in the worker saves the queries that would read every saved document back at the
end of the scan, which on FerretDB took longer than the scan itself. The count is exact only
when one attempt analysed every message of the task: an attempt that resumed from checkpoints
did not see the messages saved before it, and then the summary is read from the database
(:func:`jobs.results.summarise`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from jobs.documents import ScanSummary, SenderCount
from jobs.results import TOP_SENDERS, AnalysedMessage


class SummaryTally:
    """Counts of the messages one attempt saved, in the shape of :class:`ScanSummary`."""

    def __init__(self) -> None:
        self.messages = 0
        self.newsletters = 0
        self.flagged = 0
        self.findings: Counter[str] = Counter()
        self.senders: Counter[str] = Counter()

    def add(self, batch: Iterable[AnalysedMessage]) -> None:
        """Count a batch once it is saved and checkpointed, so no batch is counted twice."""
        for message in batch:
            fields = message.fields
            self.messages += 1
            if fields.unsubscribe is not None:
                self.newsletters += 1
            if fields.findings:
                self.flagged += 1
            self.findings.update(finding.kind.value for finding in fields.findings)
            if fields.sender_address is not None:
                self.senders[fields.sender_address] += 1

    def summary(self) -> ScanSummary:
        # Most senders first, then by address, the order of the database aggregation.
        ranked = sorted(self.senders.items(), key=lambda item: (-item[1], item[0]))
        return ScanSummary(
            messages=self.messages,
            newsletters=self.newsletters,
            flagged=self.flagged,
            findings=dict(self.findings),
            top_senders=[
                SenderCount(address=address, messages=count)
                for address, count in ranked[:TOP_SENDERS]
            ],
        )
