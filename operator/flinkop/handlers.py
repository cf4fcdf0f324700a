"""The kopf handlers: thin. kopf watches FlinkJobs and hands each event to the engine (engine.py),
which runs the passes on its own threads, when they are due; kopf writes nothing to a FlinkJob
(no finalizer, progress or last-handled-configuration annotation of its own)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from flinkop import GROUP, PLURAL, VERSION, cluster_access
from flinkop.engine import Engine
from flinkop.kube import SecretReader, StatusStore
from flinkop.plan import Event
from flinkop.settings import OperatorSettings

SETTINGS = OperatorSettings.from_env()
_engine: Engine | None = None

# kopf needs a finalizer name; it adds it only for on-delete handlers and daemons, which this
# operator has none of. flinkop's own finalizer (flinkop.FINALIZER) is set and removed by the engine.
_KOPF_FINALIZER = "flinkop.io/kopf-unused"


def _post_event(obj: Mapping[str, Any], event: Event) -> None:
    kopf.event(kopf.Body(cast(kopf.RawBody, dict(obj))), type=event.type, reason=event.reason, message=event.message)


class _FollowPeering(logging.Filter):
    """kopf pauses a replica while a peer with a higher priority is alive (peering.py) and says so
    in these two lines; the engine's own threads pause and resume with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _engine is not None:
            if message.startswith("Pausing operations") or message.startswith("Pausing all operators"):
                _engine.pause(True)
            elif message.startswith("Resuming operations"):
                _engine.pause(False)
        return True


class _QuietEvents(logging.Filter):
    """kopf says "Handler 'on_event' succeeded." at INFO for every watch event: with many FlinkJobs
    that is most of the log. It is DEBUG here (dropped unless --verbose). An Event post that kopf
    retries (the apiserver busy) is a WARNING until kopf gives up on it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("kopf._core.engines.posting"):
            if "failed; will retry" in record.getMessage():  # posting an Event is retried: not an error yet
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        if record.levelno == logging.INFO and record.getMessage() == "Handler 'on_event' succeeded.":
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _engine
    settings.persistence.finalizer = _KOPF_FINALIZER
    settings.posting.level = logging.WARNING  # our own Events are posted explicitly, one per step
    settings.watching.server_timeout = 300
    _engine = Engine(SETTINGS, StatusStore(), SecretReader(), _post_event)  # StatusStore loads the kube config
    cluster_access.CURRENT.on_change(_engine.wake_all)
    logging.getLogger("kopf._core.engines.peering").addFilter(_FollowPeering())
    logging.getLogger("kopf.objects").addFilter(_QuietEvents())
    logging.getLogger("kopf._core.engines.posting").addFilter(_QuietEvents())


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Every watch event (and each FlinkJob listed at start): the engine keeps it and wakes the
    FlinkJob's pass unless the event is the echo of the operator's own write."""
    assert _engine is not None, "the operator was not started through its startup handler"
    if _engine.context is None:
        _engine.context = contextvars.copy_context()  # kopf's event poster, for Events from pass threads
    _engine.on_event(type, body)


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    if _engine is not None:
        _engine.stop()
