"""The pass engine: what runs a FlinkJob's pass, when, and what it keeps between passes.

A pass runs when something wakes its FlinkJob (wakeups.PassScheduler): a watch event that is not
the echo of the operator's own write, its job changing on its cluster (job_watch.JobWatch), or the
time its planner asked to come back at. There is no timer per FlinkJob and no Kubernetes round trip
between two passes: the write-ahead status patch before each action is the only write a step needs.

The finalizer (`flinkop.io/finalizer`) is the operator's own: set before anything is started for a
FlinkJob, and removed once its deletion pass is done (final savepoint taken, or given up on).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flinkop import ANNOTATION_PREFIX, FINALIZER, cluster_access, credentials, logs
from flinkop.app_cluster_kube import AppClusterKube, RestAddress
from flinkop.bodies import Bodies
from flinkop.jar_users import JarUsers
from flinkop.jars import JarFetcher
from flinkop.job_watch import JobWatch, seen
from flinkop.kube import Conflict, Gone, SecretReader, StatusStore
from flinkop.metrics import METRICS
from flinkop.observation import Observation
from flinkop.plan import Event
from flinkop.reconcile import (
    Clients,
    PassResult,
    forget_resource,
    remember_write,
    resource_lock,
    run_pass,
    written_since,
)
from flinkop.settings import OperatorSettings
from flinkop.slots import UpgradeSlots
from flinkop.times import parse_time
from flinkop.wakeups import PassScheduler

log = logging.getLogger("flinkop")

EventPoster = Callable[[Mapping[str, Any], Event], None]

_MAX_PASSES_PER_CALL = 3
_RETRY_AFTER_CONFLICT = 0.2
_BACKOFF_MAX = 60.0
# What kopf's change handlers wrote before this engine replaced them: removed when the finalizer is set.
_LEGACY_ANNOTATIONS = (f"{ANNOTATION_PREFIX}/last-handled-configuration",)


def _legacy_annotations(annotations: Mapping[str, Any]) -> list[str]:
    return [
        key
        for key in annotations
        if key in _LEGACY_ANNOTATIONS or key.startswith((f"{ANNOTATION_PREFIX}/on_", f"{ANNOTATION_PREFIX}/on-"))
    ]


def _controlled(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a FlinkJob its users change (the operator writes only status and its finalizer)."""
    meta = body.get("metadata") or {}
    return (meta.get("generation"), meta.get("deletionTimestamp"), tuple(meta.get("finalizers") or ()))


@dataclass
class Engine:
    settings: OperatorSettings
    store: StatusStore
    secrets: SecretReader
    post_event: EventPoster
    clients: Clients = field(init=False)
    fetcher: JarFetcher = field(init=False)
    slots: UpgradeSlots = field(init=False)
    jar_users: JarUsers = field(init=False)
    bodies: Bodies = field(init=False)
    scheduler: PassScheduler = field(init=False)
    job_watch: JobWatch = field(init=False)
    context: contextvars.Context | None = None  # kopf's, so Events can be posted from pass threads

    def __post_init__(self) -> None:
        s = self.settings
        guard = s.net_guard()  # never link-local nor cloud metadata (netguard.py)
        self.guard = guard
        self.clients = Clients(s.flink_timeout, s.overview_max_age, guard, s.flink_max_response_bytes)
        self.fetcher = JarFetcher(
            s.jar_cache_dir,
            s.max_jar_bytes,
            s.jar_allowed_hosts,
            allow_file=s.jar_allow_file,
            guard=guard,
            deadline=s.jar_fetch_deadline,
        )
        self.slots = UpgradeSlots(s.max_concurrent_upgrades)
        self.jar_users = JarUsers()
        self.bodies = Bodies()
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self.scheduler = PassScheduler(self._run_in_context, workers=s.pass_workers)
        self.job_watch = JobWatch(self.clients.overviews.refresh, self.scheduler.wake, interval=s.observe_interval)
        METRICS.in_flight = lambda: self.slots.in_flight
        # Application mode: the clusters the operator runs, through the same Kubernetes API client.
        self.app_kube = AppClusterKube(self.store.api.api_client) if self.store is not None else None
        self.app_rest = RestAddress(s.app_rest_address)

    # -- what wakes a FlinkJob ------------------------------------------------------------------

    def on_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event: keeps the newest body and wakes the FlinkJob when what a person (or an
        autoscaler) controls changed: a new FlinkJob, its spec (a new generation), its deletion or
        its finalizers. A change of status alone is the echo of the operator's own write (which may
        come before the write's answer does), and wakes nothing; nor does a version older than one
        the operator wrote."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        if not uid:
            return
        if event_type == "DELETED":
            self.forget(uid)
            return
        before = self.bodies.get(uid)
        if written_since(uid, str(meta.get("resourceVersion", ""))) or not self.bodies.put(body):
            return
        if before is None or _controlled(before) != _controlled(body):
            self.scheduler.wake(uid)

    def wake_all(self) -> None:
        """Every known FlinkJob looks again (its cluster access policy changed, for instance)."""
        for uid in self.bodies.uids():
            self.scheduler.wake(uid)

    def pause(self, paused: bool) -> None:
        """Another replica is active (kopf peering): no pass runs and no cluster is watched here."""
        self.scheduler.pause(paused)
        self.job_watch.pause(paused)

    def forget(self, uid: str) -> None:
        self.scheduler.forget(uid)
        self.job_watch.untrack(uid)
        self.bodies.drop(uid)
        forget_resource(uid)
        self.slots.release(uid)
        self.jar_users.forget(uid)
        METRICS.forget(uid)
        with self._lock:
            self._failures.pop(uid, None)

    def stop(self) -> None:
        self.scheduler.stop()
        self.job_watch.stop()

    # -- one FlinkJob's pass --------------------------------------------------------------------

    def _run_in_context(self, uid: str) -> float | None:
        if self.context is None:
            return self.run(uid)
        return self.context.copy().run(self.run, uid)

    def run(self, uid: str) -> float | None:
        """Runs the FlinkJob's pass on its newest known body; returns when to come back (seconds)."""
        body = self.bodies.get(uid)
        if body is None:
            return None
        meta = body["metadata"]
        with logs.handling(meta["namespace"], meta["name"]):
            try:
                delay = self._run(uid, body)
            except Conflict as exc:
                METRICS.record_error("conflict")
                log.info("%s; reading it again", exc)
                self._refresh(uid, meta)
                return _RETRY_AFTER_CONFLICT
            except Gone:
                self.forget(uid)
                return None
            except Exception:
                METRICS.record_error("unexpected")
                with self._lock:
                    n = self._failures[uid] = self._failures.get(uid, 0) + 1
                delay = min(_BACKOFF_MAX, 2.0 ** min(n, 6))
                log.exception("the pass failed unexpectedly (failure %d in a row); trying again in %.0f s", n, delay)
                return delay
        with self._lock:
            self._failures.pop(uid, None)
        return delay

    def _refresh(self, uid: str, meta: Mapping[str, Any]) -> None:
        try:
            fresh = self.store.read(meta["namespace"], meta["name"])
        except Exception as exc:  # the watch brings it too; this only saves waiting for it
            log.warning("could not read %s/%s again: %s", meta["namespace"], meta["name"], exc)
            return
        if fresh is None:
            self.forget(uid)
        elif fresh["metadata"].get("uid") == uid:
            self.bodies.put(fresh)

    def _run(self, uid: str, body: dict[str, Any]) -> float | None:
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and FINALIZER not in finalizers:
            return None  # released already: the object goes; nothing is done for it any more
        if not deleting and FINALIZER not in finalizers:
            # Before anything runs for it: a deletion must wait for the final savepoint.
            drop = _legacy_annotations(meta.get("annotations") or {})
            written = self.store.set_finalizers(
                meta["namespace"], meta["name"], str(meta["resourceVersion"]), [*finalizers, FINALIZER], drop
            )
            remember_write(uid, str(written["metadata"]["resourceVersion"]))
            self.bodies.put(written)
            body = self.bodies.get(uid) or body
        result = self._passes(uid, body, deleting)
        if deleting:
            if not result.done_deleting:
                return result.requeue_after or 1.0
            latest = self.bodies.get(uid) or body
            m = latest["metadata"]
            remaining = [f for f in (m.get("finalizers") or []) if f != FINALIZER]
            self.store.set_finalizers(m["namespace"], m["name"], str(m["resourceVersion"]), remaining, [])
            log.info("deletion done: finalizer %s removed", FINALIZER)
            self.forget(uid)
            return None
        self._track(uid, body, result)
        return result.requeue_after

    def _track(self, uid: str, body: Mapping[str, Any], result: PassResult) -> None:
        """A FlinkJob at rest with a job is left to its cluster's observer; any other is not."""
        status = result.decision.status
        obs = result.observation_seen
        # The client the pass read the job through: the session cluster's, or in application mode its own
        # JobManager's (a JobManager replaced since answers no more, which wakes the FlinkJob once).
        if result.requeue_after is None and status.job_id and result.client is not None:
            # The job as the pass saw it: its job, or the one an upgrade (or deploy) just started.
            views = (obs.job, obs.new_job) if obs is not None else ()
            job = next((v for v in views if v is not None and v.job_id == status.job_id), None)
            self.job_watch.track(uid, result.client, status.job_id, seen(job))
        else:
            self.job_watch.untrack(uid)

    def _passes(self, uid: str, body: dict[str, Any], deleting: bool) -> PassResult:
        """Runs a pass, and the next one at once when an action's outcome is known in full (an upload):
        that pass starts from the status the last pass decided and from the known observation."""
        current: Mapping[str, Any] = body
        recorded: Mapping[str, Any] | None = None  # the status as written, when `current`'s is not yet
        observation = None
        for n in range(_MAX_PASSES_PER_CALL):
            last = n == _MAX_PASSES_PER_CALL - 1
            result, current = self._one_pass(uid, current, deleting, observation, recorded, not last)
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
        self,
        uid: str,
        body: Mapping[str, Any],
        deleting: bool,
        observation: Observation | None,
        recorded: Mapping[str, Any] | None,
        may_leave_unwritten: bool,
    ) -> tuple[PassResult, Mapping[str, Any]]:
        meta = body["metadata"]
        namespace = meta["namespace"]
        deadline = None
        if deleting and meta.get("deletionTimestamp"):
            started = parse_time(meta["deletionTimestamp"])
            assert started is not None
            deadline = started + timedelta(seconds=self.settings.delete_timeout)
        origin = {"apiVersion": "flinkop.io/v1alpha1", "kind": "FlinkJob", "metadata": meta}

        def emit(event: Event) -> None:
            self.post_event(origin, event)

        writer = self.store.writer(namespace, meta["name"], meta["resourceVersion"])
        now = datetime.now(UTC).replace(tzinfo=None)
        read_secret = self.secrets
        guard = self.guard
        with resource_lock(uid):
            try:
                result = run_pass(
                    spec=body.get("spec", {}),
                    status=body.get("status"),
                    generation=int(meta.get("generation", 0)),
                    clients=self.clients,
                    fetcher=self.fetcher,
                    write_status=writer,
                    emit=emit,
                    deleting=deleting,
                    delete_deadline=deadline,
                    now=now,
                    name=meta["name"],
                    observation=observation,
                    uid=uid,
                    slots=self.slots,
                    jar_users=self.jar_users,
                    credentials_for=lambda spec: credentials.resolve(spec, namespace, read_secret),
                    admit=lambda spec: cluster_access.refusal(spec, namespace, guard, cluster_access.CURRENT.get()),
                    recorded_status=recorded,
                    may_leave_unwritten=may_leave_unwritten,
                    namespace=namespace,
                    app_kube=self.app_kube,
                    app_rest=self.app_rest,
                )
            finally:
                if writer.last_written is not None:
                    remember_write(uid, writer.resource_version)
                    self.bodies.put(writer.last_written)
        METRICS.record_pass(uid, result.before, result.decision.status, now)
        if result.error is not None:
            METRICS.record_error(result.error)
        if result.performed is not None:
            log.info("done: %s", result.performed.describe())
        return result, writer.last_written or body
