"""Timestamps as the status stores them: UTC, whole seconds, `2026-11-22T05:46:23Z`."""

from __future__ import annotations

from datetime import datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(t: datetime) -> str:
    return t.strftime(FORMAT)


def parse_time(t: str | None) -> datetime | None:
    """A naive UTC datetime; None for no value. Raises ValueError for another format."""
    if not t:
        return None
    return datetime.strptime(t, FORMAT)
