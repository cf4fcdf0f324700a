"""Logging: plain text (default) or one JSON object per line (`--log-format json`), and every line
written while a FlinkJob is handled names it (`flinkjob: namespace/name`)."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("flinkjob", default=None)


@contextmanager
def handling(namespace: str, name: str) -> Iterator[None]:
    """Lines logged inside name this FlinkJob (the operator's own lines; kopf's carry its reference)."""
    token = _current.set(f"{namespace}/{name}")
    try:
        yield
    finally:
        _current.reset(token)


def flinkjob_of(record: logging.LogRecord) -> str | None:
    ref: Any = getattr(record, "k8s_ref", None)  # kopf's per-object loggers add the object reference
    if isinstance(ref, dict) and ref.get("name"):
        return f"{ref.get('namespace', '')}/{ref['name']}"
    return getattr(record, "flinkjob", None)


class _NameTheFlinkJob(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "flinkjob"):
            record.flinkjob = _current.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        flinkjob = flinkjob_of(record)
        if flinkjob:
            line["flinkjob"] = flinkjob
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        flinkjob = flinkjob_of(record)
        return f"{text} [flinkjob={flinkjob}]" if flinkjob else text


def configure(log_format: str = "text", verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_NameTheFlinkJob())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
