"""Times users type: a date, an ISO datetime or a time ago (``--since``, ``--until``, ``--at``).

Kept apart from :mod:`casstore.repo.query` so the commands that only print help for these
options (``log``, ``refs``) do not load the query machinery."""

from __future__ import annotations

import datetime as dt
import re

from casstore.errors import InvalidInputError

WHEN_HELP = "YYYY-MM-DD, an ISO datetime (UTC unless it says), or a time ago: 90s, 30m, 12h, 7d, 2w"
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(
    text: str, *, end: bool = False, now: dt.datetime | None = None
) -> dt.datetime:
    """A date, an ISO datetime or a time ago (``7d``: seven days before ``now``); naive values
    are UTC. A bare date as an end covers that day."""
    ago = _AGO.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if ago:
        now = now or dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=float(ago[1]) * _UNIT[ago[2]])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
            return d + dt.timedelta(days=1) - dt.timedelta(microseconds=1) if end else d
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"bad time {text!r}: use {WHEN_HELP}") from None
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)
