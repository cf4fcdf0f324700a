"""kopf's line for every watch event is DEBUG; the operator follows kopf's peering pauses."""

from __future__ import annotations

import logging

import flinkop.handlers as handlers
from flinkop.handlers import _FollowPeering, _QuietEvents


def record(level: int, message: str, name: str = "kopf.objects") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_kopfs_line_for_each_watch_event_is_debug_and_dropped_unless_debug_is_on() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        r = record(logging.INFO, "Handler 'on_event' succeeded.")
        assert not _QuietEvents().filter(r)
        assert r.levelno == logging.DEBUG
        root.setLevel(logging.DEBUG)
        assert _QuietEvents().filter(record(logging.INFO, "Handler 'on_event' succeeded."))
    finally:
        root.setLevel(level)


def test_a_failing_event_handler_stays_an_error() -> None:
    r = record(logging.ERROR, "Handler 'on_event' failed with an exception. Will ignore.")
    assert _QuietEvents().filter(r) and r.levelno == logging.ERROR


class _Paused:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def pause(self, paused: bool) -> None:
        self.calls.append(paused)


def test_the_engine_pauses_and_resumes_with_kopfs_peering() -> None:
    engine = _Paused()
    handlers._engine = engine  # type: ignore[assignment]
    try:
        peering = "kopf._core.engines.peering"
        f = _FollowPeering()
        f.filter(record(logging.INFO, "Pausing operations in favour of [peer].", peering))
        f.filter(record(logging.INFO, "Resuming operations after the pause.", peering))
        f.filter(record(logging.WARNING, "Pausing all operators, including self: [a, b]", peering))
        assert engine.calls == [True, False, True]
    finally:
        handlers._engine = None


def test_an_event_post_that_kopf_retries_is_a_warning_not_an_error() -> None:
    r = record(logging.ERROR, "Request attempt #1/9 failed; will retry: POST .../events", "kopf._core.engines.posting")
    assert _QuietEvents().filter(r) and r.levelno == logging.WARNING
    final = record(logging.ERROR, "Failed to post an event. Ignoring and continuing.", "kopf._core.engines.posting")
    assert _QuietEvents().filter(final) and final.levelno == logging.ERROR
