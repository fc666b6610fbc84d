"""One rule for "is this a browser navigation?", used by every answer the gateway makes.

A navigation (a page the browser shows) gets pages and sign-in redirects; anything else (fetch, XHR,
scripts, programs) gets JSON and a 401. Fetch metadata decides when the browser sent it
(`Sec-Fetch-Dest: document` or `iframe`: an htmx or fetch call that accepts HTML is still not one);
without it (older browsers, curl), an `Accept` that names `text/html`.
"""

from __future__ import annotations

from collections.abc import Mapping

NAVIGATION_DESTINATIONS = frozenset({"document", "iframe", "frame"})


def is_navigation(headers: Mapping[str, str]) -> bool:
    destination = headers.get("sec-fetch-dest")
    if destination:
        return destination in NAVIGATION_DESTINATIONS
    return "text/html" in headers.get("accept", "")
