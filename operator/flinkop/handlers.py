"""The kopf handlers: thin decorators that run a reconcile pass and tell kopf when to return."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from flinkop import ANNOTATION_PREFIX, FINALIZER, GROUP, PLURAL, VERSION, cluster_access, credentials, logs
from flinkop.jar_users import JarUsers
from flinkop.jars import JarFetcher
from flinkop.kube import Conflict, SecretReader, StatusStore
from flinkop.metrics import METRICS
from flinkop.observation import Observation
from flinkop.plan import Event
from flinkop.reconcile import (
    Clients,
    PassResult,
    forget_resource,
    predates_last_write,
    remember_write,
    resource_lock,
    run_pass,
)
from flinkop.settings import OperatorSettings
from flinkop.slots import UpgradeSlots
from flinkop.times import parse_time

SETTINGS = OperatorSettings.from_env()
_guard = SETTINGS.net_guard()  # never link-local nor cloud metadata (netguard.py)
_clients = Clients(SETTINGS.flink_timeout, SETTINGS.overview_max_age, _guard, SETTINGS.flink_max_response_bytes)
_fetcher = JarFetcher(
    SETTINGS.jar_cache_dir,
    SETTINGS.max_jar_bytes,
    SETTINGS.jar_allowed_hosts,
    allow_file=SETTINGS.jar_allow_file,
    guard=_guard,
    deadline=SETTINGS.jar_fetch_deadline,
)
_slots = UpgradeSlots(SETTINGS.max_concurrent_upgrades)
_jar_users = JarUsers()
METRICS.in_flight = lambda: _slots.in_flight
_store: StatusStore | None = None
_secrets: SecretReader | None = None


class _WaitsAreNotErrors(logging.Filter):
    """kopf logs every `TemporaryError` at ERROR; for this operator that is how it waits for a
    savepoint or a job start, so those lines are logged at INFO (real failures stay ERROR). A timer's
    routine success is DEBUG: at INFO, 1,000 FlinkJobs would log 67 lines a second while idle."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.ERROR and "failed temporarily" in message:
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif record.levelno == logging.INFO and message == "Timer 'on_timer' succeeded.":
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _store, _secrets
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events are posted explicitly, one per step
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 32
    _store = StatusStore()  # loads the kube config the Secret reader uses too
    _secrets = SecretReader()
    logging.getLogger("kopf.objects").addFilter(_WaitsAreNotErrors())


_MAX_PASSES_PER_CALL = 3


def _pass(body: kopf.Body, deleting: bool = False) -> PassResult:
    """Runs a pass, and the next one at once when an action's outcome is known in full (an upload):
    that pass starts from the status the last pass decided and from the known observation."""
    current: Mapping[str, Any] = body
    recorded: Mapping[str, Any] | None = None  # the status as written, when `current`'s is not yet
    observation = None
    for n in range(_MAX_PASSES_PER_CALL):
        last = n == _MAX_PASSES_PER_CALL - 1
        result, current = _one_pass(body, current, deleting, observation, recorded, may_leave_unwritten=not last)
        if result.unwritten_status is not None:
            recorded = recorded if recorded is not None else current.get("status") or {}
            current = {**current, "status": result.unwritten_status}
        else:
            recorded = None
        observation = result.observation_after
        if observation is None or result.requeue_after is None:
            break
    return result


def _one_pass(
    origin: kopf.Body,
    body: Mapping[str, Any],
    deleting: bool,
    observation: Observation | None,
    recorded: Mapping[str, Any] | None = None,
    may_leave_unwritten: bool = False,
) -> tuple[PassResult, Mapping[str, Any]]:
    """One pass on `body` (the resource as kopf delivered it, `origin`, or as our last write left it;
    its status may be one a chained pass decided, with `recorded` the status as written)."""
    assert _store is not None and _secrets is not None, "the operator was not started through its startup handler"
    meta = body["metadata"]
    read_secret = _secrets
    deadline = None
    if deleting and meta.get("deletionTimestamp"):
        started = parse_time(meta["deletionTimestamp"])
        assert started is not None
        deadline = started + timedelta(seconds=SETTINGS.delete_timeout)

    def emit(event: Event) -> None:
        kopf.event(origin, type=event.type, reason=event.reason, message=event.message)

    writer = _store.writer(meta["namespace"], meta["name"], meta["resourceVersion"])
    now = datetime.now(UTC).replace(tzinfo=None)
    with resource_lock(meta["uid"]), logs.handling(meta["namespace"], meta["name"]):
        if predates_last_write(meta["uid"], str(meta["resourceVersion"])):
            raise kopf.TemporaryError("a newer version of this FlinkJob was just written; looking at it", delay=0.2)
        try:
            result = run_pass(
                spec=body.get("spec", {}),
                status=body.get("status"),
                generation=int(meta.get("generation", 0)),
                clients=_clients,
                fetcher=_fetcher,
                write_status=writer,
                emit=emit,
                deleting=deleting,
                delete_deadline=deadline,
                now=now,
                name=meta["name"],
                observation=observation,
                uid=meta["uid"],
                slots=_slots,
                jar_users=_jar_users,
                credentials_for=lambda spec: credentials.resolve(spec, meta["namespace"], read_secret),
                admit=lambda spec: cluster_access.refusal(
                    spec, meta["namespace"], _guard, cluster_access.CURRENT.get()
                ),
                recorded_status=recorded,
                may_leave_unwritten=may_leave_unwritten,
            )
        except Conflict as exc:
            METRICS.record_error("conflict")
            raise kopf.TemporaryError(f"{exc}; looking again", delay=0.5) from exc
        except Exception:
            METRICS.record_error("unexpected")
            raise
        finally:
            if writer.last_written is not None:
                remember_write(meta["uid"], writer.resource_version)
    METRICS.record_pass(meta["uid"], result.before, result.decision.status, now)
    if result.error is not None:
        METRICS.record_error(result.error)
    return result, writer.last_written or body


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, **_: Any) -> None:
    """Runs passes until the spec is reached (or stalled), coming back while steps are in flight."""
    uid = body["metadata"]["uid"]
    _changing[uid] = time.monotonic() + _CHANGE_GRACE  # while this pass runs
    result = _pass(body)
    if result.requeue_after is not None:
        _changing[uid] = time.monotonic() + result.requeue_after + _CHANGE_GRACE
        raise kopf.TemporaryError(result.decision.status.message or "in progress", delay=result.requeue_after)
    _changing.pop(uid, None)


# Resources whose change handler is due back at them soon (kopf retries it while steps are in flight),
# by when: the timer leaves those to it, and carries on with work only it found (a job that ended, a
# periodic savepoint). Only until then: kopf drops a handler's retries when the spec goes back to the
# last one it handled (its diff is empty), and the timer must then carry the work on, or nothing would.
_changing: dict[str, float] = {}
_CHANGE_GRACE = 5.0


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.observe_interval, initial_delay=SETTINGS.observe_interval)
def on_timer(body: kopf.Body, **_: Any) -> None:
    """Looks at a resource at rest: notices a job that failed or was cancelled outside the operator."""
    if (
        body.get("metadata", {}).get("deletionTimestamp")
        or _changing.get(body["metadata"]["uid"], 0.0) > time.monotonic()
    ):
        return
    try:
        result = _pass(body)
    except kopf.TemporaryError:  # a concurrent write won: looked at again at once
        raise kopf.TemporaryError("looking again after a concurrent write", delay=0.2) from None
    if result.requeue_after is not None:
        # Level-triggered: work the look found (or left under way) goes on at its own pace, not the
        # timer's interval; kopf runs a timer again after a TemporaryError's delay, in memory.
        raise kopf.TemporaryError(result.decision.status.message or "in progress", delay=result.requeue_after)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_delete(body: kopf.Body, **_: Any) -> None:
    """Stops the job with a final savepoint before the resource is released."""
    result = _pass(body, deleting=True)
    if not result.done_deleting:
        raise kopf.TemporaryError(result.decision.status.message or "deleting", delay=result.requeue_after or 1.0)
    forget_resource(body["metadata"]["uid"])
    _changing.pop(body["metadata"]["uid"], None)
    _slots.release(body["metadata"]["uid"])
    _jar_users.forget(body["metadata"]["uid"])
    METRICS.forget(body["metadata"]["uid"])
