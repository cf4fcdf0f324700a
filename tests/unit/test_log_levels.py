"""kopf logs each TemporaryError at ERROR; the operator's waits are not errors."""

from __future__ import annotations

import logging

from flinkop.handlers import _WaitsAreNotErrors


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_a_wait_through_temporary_error_is_logged_at_info() -> None:
    r = record(logging.ERROR, "Handler 'on_change' failed temporarily: Upgrading: stop job 1 with a savepoint")
    assert _WaitsAreNotErrors().filter(r)
    assert r.levelno == logging.INFO and r.levelname == "INFO"


def test_a_real_handler_failure_stays_an_error() -> None:
    r = record(logging.ERROR, "Handler 'on_change' failed with an exception. Will retry.")
    assert _WaitsAreNotErrors().filter(r)
    assert r.levelno == logging.ERROR


def test_a_timers_routine_success_is_debug_and_dropped_unless_debug_is_on() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        r = record(logging.INFO, "Timer 'on_timer' succeeded.")
        assert not _WaitsAreNotErrors().filter(r)
        assert r.levelno == logging.DEBUG
        root.setLevel(logging.DEBUG)
        assert _WaitsAreNotErrors().filter(record(logging.INFO, "Timer 'on_timer' succeeded."))
        assert _WaitsAreNotErrors().filter(record(logging.INFO, "Handler 'on_change' succeeded."))
    finally:
        root.setLevel(level)
