"""List-Unsubscribe (RFC 2369) and one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import re

from jobs.documents import Unsubscribe

#: The only List-Unsubscribe-Post value RFC 8058 defines.
ONE_CLICK_POST = "list-unsubscribe=one-click"

_ANGLE_URI = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")


def parse_list_unsubscribe(value: str | None, post: str | None) -> Unsubscribe | None:
    """Read the first mailto and the first https URI of a List-Unsubscribe value.

    One-click needs an https URI and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``.
    An ``http:`` URI is not kept, because RFC 8058 requires https for the unsubscribe POST.
    Returns None when the header is absent or contains neither kind of URI.
    """
    if value is None:
        return None
    uris = _ANGLE_URI.findall(value) or value.split(",")
    mailto: str | None = None
    https: str | None = None
    for uri in uris:
        # Folding can leave whitespace inside a long URI; RFC 2369 says to ignore it.
        uri = _WHITESPACE.sub("", uri)
        scheme = uri.partition(":")[0].lower()
        if scheme == "mailto" and mailto is None:
            mailto = uri
        elif scheme == "https" and https is None:
            https = uri
    if mailto is None and https is None:
        return None
    one_click = https is not None and _is_one_click(post)
    return Unsubscribe(mailto=mailto, https=https, one_click=one_click)


def _is_one_click(post: str | None) -> bool:
    return post is not None and _WHITESPACE.sub("", post).lower() == ONE_CLICK_POST
