"""Message analysis: turn raw RFC 5322 bytes into the fields and findings a scan stores.

``analyse_message`` takes a whole message; ``analyse_headers`` takes the header section of a
message over the size limit. Neither raises: what cannot be parsed becomes a MALFORMED finding.
"""

from jobs.analysis.message import analyse_headers, analyse_message

__all__ = ["analyse_headers", "analyse_message"]
