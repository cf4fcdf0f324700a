"""One reconcile pass: observe, plan, record (the write-ahead status), act, and report.

The status is written before the action: any id the action uses is in it, so a pass that dies
after the write and before (or during) the action is finished correctly by the next one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flinkop.act import perform
from flinkop.actions import Action, UploadJar
from flinkop.app_acts import AppClusterActs
from flinkop.app_cluster_kube import AppClusterKube, RestAddress
from flinkop.credentials import CredentialsError, RestCredentials
from flinkop.flink_client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    TERMINAL_JOB_STATES,
    FlinkClient,
    FlinkError,
    FlinkUnreachable,
)
from flinkop.guarded_http import guarded_session
from flinkop.jar_users import JarUsers
from flinkop.jars import JarFetcher
from flinkop.netguard import NetGuard
from flinkop.observation import JarCheck, Observation, after_action
from flinkop.observe import JobsOverviews, check_jar, observe
from flinkop.observe_app import app_jar_check, observe_app
from flinkop.plan import Decision, Event, PlanInput, plan, record_action_failure, record_action_result
from flinkop.slots import UpgradeSlots
from flinkop.spec import APPLICATION_MODE_UNAVAILABLE, FlinkJobSpec, SpecError, parse_spec
from flinkop.status import Status

log = logging.getLogger("flinkop")

StatusWriter = Callable[[dict[str, Any]], None]
FLINK_POOL_SIZE = 32  # kept-alive connections per Flink cluster
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class PassResult:
    requeue_after: float | None
    done_deleting: bool
    decision: Decision
    before: Status  # the status the pass planned from
    performed: Action | None = None  # the action this pass took, when Flink accepted it
    # What Flink looks like after that action, when the action says it in full: the next pass may
    # then start from it at once, without reading Flink again.
    observation_after: Observation | None = None
    error: str | None = None  # why the pass could not do its part: flink_unreachable, action_failed, credentials
    # The status this pass decided and left for the next pass, chained at once, to write with its
    # own (only after an upload, which needs no record first: a jar is found again by its name).
    unwritten_status: dict[str, Any] | None = None
    observation_seen: Observation | None = None  # what the pass planned from
    client: FlinkClient | None = None  # the client of the FlinkJob's cluster, when it was asked


class Clients:
    """One Flink REST client per cluster URL, shared by every FlinkJob on that cluster."""

    def __init__(
        self,
        timeout: float = 10.0,
        overview_max_age: float = 5.0,
        guard: NetGuard | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.timeout = timeout
        self.guard = guard or NetGuard()
        self.max_response_bytes = max_response_bytes
        self.overviews = JobsOverviews(overview_max_age)
        self._clients: dict[str, FlinkClient] = {}
        self._lock = threading.Lock()

    def get(self, url: str, credentials: RestCredentials | None = None) -> FlinkClient:
        key = f"{url}#{credentials.key}" if credentials is not None else url
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = FlinkClient(
                    url,
                    timeout=self.timeout,
                    # Passes and their reads share one cluster's connections (FLINKOP_PASS_WORKERS, read pool).
                    session=guarded_session(self.guard, "Flink REST", pool_maxsize=FLINK_POOL_SIZE),
                    credentials=credentials,
                    max_response_bytes=self.max_response_bytes,
                )
            return client


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def resource_lock(uid: str) -> threading.Lock:
    """Passes for one resource never overlap (timers run beside change handlers in kopf)."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def forget_resource(uid: str) -> None:
    with _locks_guard:
        _locks.pop(uid, None)
        _written.pop(uid, None)


_written: dict[str, int] = {}  # uid -> resourceVersion of this operator's last status write


def remember_write(uid: str, resource_version: str) -> None:
    if resource_version.isdigit():
        with _locks_guard:
            _written[uid] = max(_written.get(uid, 0), int(resource_version))


def written_since(uid: str, resource_version: str) -> bool:
    """Whether this version of the resource is this operator's own last write or older: its watch
    event brings nothing the operator does not know."""
    with _locks_guard:
        last = _written.get(uid)
    return last is not None and resource_version.isdigit() and int(resource_version) <= last


def in_application_mode(spec: FlinkJobSpec, status: Status) -> bool:
    """Whether this pass looks at (and acts on) an application cluster: an upgrade in flight finishes in
    its target's mode; otherwise the spec's mode holds (mode_change_refusal covers a job still running
    in the other one)."""
    if status.upgrade is not None:
        return status.upgrade.target.cluster is not None
    return spec.application_mode


def mode_change_refusal(spec: FlinkJobSpec, status: Status) -> tuple[str, str] | None:
    """A spec moved between session and application mode while its job still runs in the old one: the
    pass could not reach that job (it looks where the spec says). It is suspended first, then moved."""
    deployed = status.deployed
    if status.upgrade is not None or deployed is None or (deployed.cluster is None) == (spec.cluster is None):
        return None
    if status.phase == "Failed" and deployed.cluster is not None and status.job_id is not None:
        return ("ModeChangeNeedsSuspend", failed_on_own_cluster(status.job_id) + " The job was not touched.")
    if status.phase in ("Suspended", "Failed") or status.job_id is None or status.job_state in TERMINAL_JOB_STATES:
        return None
    old, new = (
        ("a session cluster", "application mode")
        if deployed.cluster is None
        else ("its own cluster", "a session cluster")
    )
    return (
        "ModeChangeNeedsSuspend",
        f"Job {status.job_id} runs on {old}; the spec now asks for {new}. A running job cannot move: set the spec "
        "back, then set spec.state: suspended (a savepoint is taken and recorded in status.lastSavepoint), then "
        "change the mode and set spec.state: running, which starts the job in the new mode from that savepoint. "
        "The job was not touched.",
    )


def failed_on_own_cluster(job_id: str) -> str:
    """Why a FlinkJob that failed in application mode cannot move to a session cluster yet."""
    return (
        f"Job {job_id} failed on its own cluster, whose objects stay until the FlinkJob is suspended or "
        "deleted: a move to a session cluster would leave them behind. Set spec.state: suspended first (the "
        "cluster is removed; status.lastSavepoint is kept), then remove spec.cluster together with spec.state: "
        "running: the job starts on the session cluster from that savepoint."
    )


def run_pass(
    *,
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    generation: int,
    clients: Clients,
    fetcher: JarFetcher,
    write_status: StatusWriter,
    emit: EventSink,
    deleting: bool = False,
    delete_deadline: datetime | None = None,
    now: datetime | None = None,
    name: str = "",
    observation: Observation | None = None,
    uid: str = "",
    slots: UpgradeSlots | None = None,
    jar_users: JarUsers | None = None,
    credentials_for: Callable[[FlinkJobSpec], RestCredentials] | None = None,
    admit: Callable[[FlinkJobSpec], tuple[str, str] | None] | None = None,
    recorded_status: Mapping[str, Any] | None = None,
    may_leave_unwritten: bool = False,
    namespace: str = "",
    app_kube: AppClusterKube | None = None,
    app_rest: RestAddress = RestAddress.SERVICE,
) -> PassResult:
    """`status` is what the pass plans from; `recorded_status`, when given, is the status as last
    written, if a chained pass before this one left its own unwritten (`may_leave_unwritten`)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    current = Status.from_dict(status)
    recorded = current if recorded_status is None else Status.from_dict(recorded_status)
    try:
        parsed: FlinkJobSpec | SpecError = parse_spec(spec)
    except SpecError as exc:
        parsed = exc
    client = None
    credentials_error = None
    refusal = None
    app_mode = isinstance(parsed, FlinkJobSpec) and in_application_mode(parsed, current)
    app_acts = None
    if isinstance(parsed, FlinkJobSpec):
        refusal = mode_change_refusal(parsed, current)
        if refusal is None and app_mode and app_kube is None:
            refusal = APPLICATION_MODE_UNAVAILABLE  # nothing is asked of any cluster
        elif refusal is None and app_mode and app_kube is not None:
            app_acts = AppClusterActs(app_kube, namespace, name, uid, parsed)
        elif refusal is None and admit is not None:
            refusal = admit(parsed)
    if isinstance(parsed, FlinkJobSpec) and refusal is None and not app_mode:
        try:
            credentials = credentials_for(parsed) if credentials_for is not None else None
        except CredentialsError as exc:
            credentials_error = str(exc)
        else:
            client = clients.get(parsed.flink_rest_url, credentials)
    if observation is not None:
        obs = observation
    elif isinstance(parsed, FlinkJobSpec) and app_acts is not None and app_kube is not None:
        obs, client = observe_app(
            parsed,
            current,
            kube=app_kube,
            namespace=namespace,
            name=name,
            uid=uid,
            via=app_rest,
            client_for=clients.get,
            fetcher=fetcher,
            deleting=deleting,
            overviews=clients.overviews,
        )
    elif isinstance(parsed, FlinkJobSpec) and client:
        obs = observe(parsed, current, client, fetcher, deleting, clients.overviews)
    else:
        obs = Observation(credentials_error=credentials_error, refusal=refusal)
    fresh_id = uuid.uuid4().hex

    def decide(observed: Observation) -> Decision:
        return plan(
            PlanInput(
                spec=parsed,
                status=current,
                observation=observed,
                now=now,
                fresh_id=fresh_id,
                generation=generation,
                deleting=deleting,
                delete_deadline=delete_deadline,
                name=name,
                upgrade_slot_free=slots.reserve(uid) if slots is not None else True,
                jars_used_elsewhere=jar_users.used_elsewhere(uid, client.identity)
                if jar_users and client
                else frozenset(),
            )
        )

    decision = decide(obs)
    if decision.needs_jar is not None and (client is not None or app_acts is not None):
        # The decision waited for a jar check the observation did not make: make it now and plan
        # again, so no decision ever waits for a read that no pass would make.
        log.info("the plan needs the jar check of %s; reading it in this pass", decision.needs_jar.jar_uri)
        checked: JarCheck | str = (
            app_jar_check(fetcher, decision.needs_jar)
            if app_acts is not None or client is None
            else check_jar(client, fetcher, decision.needs_jar)
        )
        obs = replace(obs, jar=checked) if not isinstance(checked, str) else Observation(flink_error=checked)
        decision = decide(obs)
    if jar_users is not None and client is not None:
        jar_users.record(uid, client.identity, decision.status.jar_id)
    if slots is not None:
        slots.settle(uid, decision.status, gate_only=decision.gate_only)
    # Equal statuses make equal patches: converting them is only needed when they differ.
    differs = decision.status != recorded
    patch = decision.status.to_patch() if differs else {}
    unwritten = differs and patch != recorded.to_patch()
    # An upload is idempotent without a record (the jar's name holds its digest): when the pass after
    # it runs at once, this pass's status goes out with that pass's write-ahead record.
    defer = may_leave_unwritten and isinstance(decision.action, UploadJar) and client is not None
    if unwritten and not defer:
        write_status(patch)  # the write-ahead record comes first
        unwritten = False
    for event in decision.events:
        emit(event)
    requeue = decision.requeue_after
    error = "flink_unreachable" if obs.flink_error else "credentials" if obs.credentials_error else None
    error = "refused" if obs.refusal else error
    performed = None
    observation_after = None
    if decision.action is not None and (client is not None or app_acts is not None):
        try:
            result = perform(client, decision.action, app_acts)
            performed = decision.action
            observation_after = after_action(obs, decision.action, result)
            after = record_action_result(decision.status, decision.action, result)
            if after is not None:
                write_status(after.to_patch())
                unwritten = False
        except FlinkUnreachable as exc:
            error = "flink_unreachable"
            log.warning("could not %s: %s", decision.action.describe(), exc)
            requeue = min(requeue or 5.0, 5.0)
        except FlinkError as exc:
            error = "action_failed"
            failed = record_action_failure(decision.status, decision.action, exc.detail, now)
            write_status(failed.to_patch())
            unwritten = False
            emit(Event("Warning", "ActionFailed", f"Could not {decision.action.describe()}: {exc.detail}"))
            requeue = 1.0 if requeue is None else min(requeue, 1.0)
    if unwritten and (observation_after is None or requeue is None):
        write_status(patch)  # no pass follows at once to write it
        unwritten = False
    return PassResult(
        requeue,
        decision.done_deleting,
        decision,
        current,
        performed,
        observation_after,
        error,
        unwritten_status=patch if unwritten else None,
        observation_seen=obs,
        client=client,
    )
