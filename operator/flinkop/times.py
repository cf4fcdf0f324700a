"""Timestamps as the status stores them: UTC, whole seconds, `2026-11-22T05:46:23Z` (a savepoint's
trigger time has milliseconds: `2026-11-22T05:46:23.125Z`)."""

from __future__ import annotations

from datetime import datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
FORMAT_MS = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(t: datetime) -> str:
    return t.strftime(FORMAT)


def format_time_ms(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(t: str | None) -> datetime | None:
    """A naive UTC datetime; None for no value. Raises ValueError for another format."""
    if not t:
        return None
    return datetime.strptime(t, FORMAT_MS if "." in t else FORMAT)
