"""The soak's invariants at a quiescent point: a pure check of what the apiserver and Flink say.

The runner gathers a `Snapshot` (each FlinkJob's spec, generation and status; each job on the Flink
cluster as Flink reports it; which savepoint paths exist on disk; the counter readings) and
`check` returns every violation as a sentence. Nothing here talks to the bed, so each rule is
unit-tested on hand-made snapshots (tests/soak/test_invariants.py).

The rules (issue 12, item 5):
- a FlinkJob with `state: running` that is not Stalled has exactly one job on the cluster, RUNNING
  with every vertex running, with its wanted args (read from the job name, which the args set),
  program (the counter vertex is there unless the args drop it) and parallelism; its recorded
  jar and entry class (`status.lastStableSpec`) are the wanted ones;
- a suspended one has none; a Stalled one has at most one (the rolled-back job, or none);
- no job runs on the cluster that no FlinkJob owns (`status.jobId`);
- kstatus: `Ready` True exactly when the above holds, at `observedGeneration == generation`;
  `Stalled` only with a reason the README lists and a message; never `Ready` and `Stalled` at once;
- the counter's state goes on (restored, and not below what it was at the previous quiescent point)
  unless the interval allowed dropping it (see `drop_allowed`);
- a stall that a new attempt could lift (`RestoreFailed`, `DeployFailed`, `JobTerminated`) and that
  was there at the previous quiescent point is retried once the spec changed: at a later generation
  it names another job (each attempt submits a new one);
- every savepoint in `status.savepointHistory`, `status.lastSavepoint` and an upgrade's
  `savepointPath` exists on disk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The Stalled reasons the README lists when its table cannot be read (the runner reads the table:
# see `stalled_reasons_in`).
LISTED_STALLED_REASONS = frozenset(
    {
        "NoSavepointDirectory",
        "JarFetchFailed",
        "JarDigestMismatch",
        "NotAJar",
        "JarTooLarge",
        "JarHostNotAllowed",
        "CredentialsUnavailable",
        "RestoreFailed",
        "UnstableStart",
        "DeployFailed",
        "JobTerminated",
        "InvalidSpec",
        "InPlaceRescaleUnsupported",
        "InPlaceRescaleTimedOut",
    }
)
TERMINAL_JOB_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})
COUNTER_VERTEX = "counter"


@dataclass(frozen=True)
class FlinkJobView:
    """A FlinkJob as the apiserver returns it."""

    name: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


@dataclass(frozen=True)
class ClusterJob:
    """A job as Flink reports it: live state, name, and each vertex's name and running subtasks."""

    job_id: str
    name: str
    state: str
    vertices: Mapping[str, tuple[int, int]]  # vertex name -> (parallelism, subtasks RUNNING)

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL_JOB_STATES

    @property
    def parallelism(self) -> int:
        return max((p for p, _ in self.vertices.values()), default=0)

    @property
    def fully_running(self) -> bool:
        return self.state == "RUNNING" and all(running == p for p, running in self.vertices.values())

    @property
    def has_counter(self) -> bool:
        return any(COUNTER_VERTEX in name.split(" -> ") or name == COUNTER_VERTEX for name in self.vertices)


@dataclass(frozen=True)
class CounterReading:
    """The test job's gauges for a FlinkJob's job, and what the previous quiescent point saw."""

    job_id: str
    count: int  # counter.maxCount, read until it reached `previous_count` or the catch-up wait ended
    restored_keys: int
    counter_uid: str
    previous_job_id: str | None = None
    previous_count: int | None = None
    previous_counter_uid: str | None = None
    drop_allowed: bool = False


RETRIED_STALLS = frozenset({"RestoreFailed", "UnstableStart", "DeployFailed", "JobTerminated"})


def stalled_reasons_in(readme: str) -> frozenset[str]:
    """The reasons in the README's `| Stalled reason | ... |` table (rows starting with a `code` cell)."""
    reasons: set[str] = set()
    in_table = False
    for line in readme.splitlines():
        if line.startswith("| Stalled reason"):
            in_table = True
        elif in_table and not line.startswith("|"):
            break
        elif in_table and (m := re.match(r"\|\s*`(\w+)`\s*\|", line)):
            reasons.add(m.group(1))
    return frozenset(reasons)


@dataclass(frozen=True)
class StallSeen:
    """A FlinkJob's stall at the previous quiescent point."""

    generation: int
    reason: str
    job_id: str | None


@dataclass(frozen=True)
class Snapshot:
    flinkjobs: Sequence[FlinkJobView]
    cluster_jobs: Sequence[ClusterJob]
    existing_paths: frozenset[str]  # of the savepoint paths the statuses name, those on disk
    counters: Mapping[str, CounterReading] = field(default_factory=dict)  # by FlinkJob name
    previous_stalls: Mapping[str, StallSeen] = field(default_factory=dict)  # by FlinkJob name
    listed_reasons: frozenset[str] = LISTED_STALLED_REASONS


def stall_of(fj: FlinkJobView) -> StallSeen | None:
    stalled = condition(fj.status, "Stalled")
    if stalled.get("status") != "True":
        return None
    job_id = fj.status.get("jobId")
    return StallSeen(fj.generation, str(stalled.get("reason")), str(job_id) if job_id else None)


def outcome_changed(fj: FlinkJobView) -> bool:
    """Whether the spec changed, since its stall was recorded, in a field that can change the outcome
    of the next attempt (the deployment or a policy field): the stall records the spec's
    `FlinkJobSpec.attempt_key` in `status.failure.fingerprint`. A change to another field (for
    example savepointHistoryLimit) does not lift a stall."""
    from flinkop.spec import SpecError, parse_spec

    recorded = (fj.status.get("failure") or {}).get("fingerprint")
    try:
        spec = parse_spec(fj.spec)
    except SpecError:
        return False
    return recorded is not None and recorded != spec.attempt_key(spec.deployment)


def check_stall_retried(fj: FlinkJobView, before: StallSeen) -> list[str]:
    """A stall a new attempt could lift, still there after the spec changed in a field that can change
    the outcome, with no new attempt."""
    now = stall_of(fj)
    if now is None or before.reason not in RETRIED_STALLS or now.reason != before.reason:
        return []
    if fj.generation > before.generation and now.job_id == before.job_id and outcome_changed(fj):
        return [
            f"{fj.name}: Stalled {now.reason} since generation {before.generation} with job {now.job_id}, and the "
            f"spec changed since (generation {fj.generation}) without a new attempt"
        ]
    return []


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for c in status.get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def arg_value(args: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def wanted_job_name(spec: Mapping[str, Any]) -> str | None:
    """The job name the spec's args give (`--job-name`), or None when they set none."""
    return arg_value(list(spec.get("args") or []), "--job-name")


def wants_counter(spec: Mapping[str, Any]) -> bool:
    return "--drop-counter" not in (spec.get("args") or [])


def counter_uid(spec: Mapping[str, Any]) -> str:
    return arg_value(list(spec.get("args") or []), "--counter-uid") or "counter"


def drop_allowed(specs_seen: Iterable[Mapping[str, Any]], recreated: bool) -> bool:
    """Whether an interval may rightly lose the counter's state: the resource was re-created, or
    some spec it went through was stateless, dropped the counter or renamed its uid."""
    if recreated:
        return True
    for spec in specs_seen:
        if spec.get("upgradeMode") == "stateless" or not wants_counter(spec) or counter_uid(spec) != "counter":
            return True
    return False


def savepoint_paths(status: Mapping[str, Any]) -> list[str]:
    """The savepoints a status says exist: its history, less the one whose disposal is in flight
    (`status.disposal`: recorded before Flink deletes it, it leaves the history once Flink is done),
    and always its restore points (the last savepoint and an upgrade's), which are never disposed of."""
    disposing = (status.get("disposal") or {}).get("path")
    paths = [str(s["path"]) for s in status.get("savepointHistory") or [] if s.get("path") and s["path"] != disposing]
    last = (status.get("lastSavepoint") or {}).get("path")
    if last:
        paths.append(str(last))
    in_flight = (status.get("upgrade") or {}).get("savepointPath")
    if in_flight:
        paths.append(str(in_flight))
    return paths


def _truth(fj: FlinkJobView, jobs: Sequence[ClusterJob]) -> list[str]:
    """Why the FlinkJob's wanted state does not hold on the cluster (empty list: it holds)."""
    spec, status = fj.spec, fj.status
    own = [j for j in jobs if j.active and j.job_id == status.get("jobId")]
    if spec.get("state", "running") == "suspended":
        return [f"job {j.job_id} is {j.state} although the FlinkJob is suspended" for j in own]
    if len(own) != 1:
        return [f"{len(own)} active jobs with its status.jobId {status.get('jobId')!r}, wanted exactly one"]
    job = own[0]
    problems = []
    if not job.fully_running:
        problems.append(f"job {job.job_id} is {job.state} with vertices {dict(job.vertices)}, not all running")
    if job.parallelism != int(spec["parallelism"]):
        problems.append(f"job {job.job_id} runs at parallelism {job.parallelism}, wanted {spec['parallelism']}")
    name = wanted_job_name(spec)
    if name is not None and job.name != name:
        problems.append(f"job {job.job_id} is named {job.name!r}, the wanted args give {name!r}")
    if job.has_counter != wants_counter(spec):
        problems.append(f"job {job.job_id} {'has' if job.has_counter else 'lacks'} the counter vertex against its args")
    stable = status.get("lastStableSpec") or {}
    if stable.get("jarUri") != spec["jar"]["uri"]:
        problems.append(f"recorded jar {stable.get('jarUri')!r} is not the wanted {spec['jar']['uri']!r}")
    if (stable.get("entryClass") or None) != (spec.get("entryClass") or None):
        problems.append(
            f"recorded entry class {stable.get('entryClass')!r} is not the wanted {spec.get('entryClass')!r}"
        )
    return problems


def check_flinkjob(
    fj: FlinkJobView, jobs: Sequence[ClusterJob], listed: frozenset[str] = LISTED_STALLED_REASONS
) -> list[str]:
    """The per-FlinkJob rules: job on the cluster against the spec, and kstatus-truthful conditions."""
    status = fj.status
    where = f"{fj.name} (generation {fj.generation})"
    ready, stalled = condition(status, "Ready"), condition(status, "Stalled")
    is_ready, is_stalled = ready.get("status") == "True", stalled.get("status") == "True"
    out: list[str] = []
    own_active = [j for j in jobs if j.active and j.job_id == status.get("jobId")]
    if len(own_active) > 1:
        out.append(f"{where}: {len(own_active)} active jobs own its job id")
    truth = _truth(fj, jobs)
    current = status.get("observedGeneration") == fj.generation
    if is_ready:
        if not current:
            out.append(f"{where}: Ready True at observedGeneration {status.get('observedGeneration')}")
        if ready.get("observedGeneration") not in (None, fj.generation):
            out.append(f"{where}: Ready True with its observedGeneration {ready.get('observedGeneration')}")
        out += [f"{where}: Ready True but {p}" for p in truth]
    if is_stalled:
        if is_ready:
            out.append(f"{where}: Ready and Stalled both True")
        if stalled.get("reason") not in listed:
            out.append(f"{where}: Stalled with reason {stalled.get('reason')!r}, which the README does not list")
        if not str(stalled.get("message") or "").strip():
            out.append(f"{where}: Stalled {stalled.get('reason')} without a message saying what to do")
    elif not truth and not is_ready:
        out.append(f"{where}: the wanted state holds on the cluster but Ready is {ready.get('status')!r}")
    elif truth and not is_ready:
        out.append(
            f"{where}: not converged: Ready {ready.get('status')!r}, not Stalled, "
            f"phase {status.get('phase')!r}, message {status.get('message')!r}; " + "; ".join(truth)
        )
    return out


def check_counter(name: str, reading: CounterReading) -> list[str]:
    """State continuity: a job that should carry the counter's state on restored it and did not fall back."""
    if reading.drop_allowed or reading.previous_count is None or reading.previous_counter_uid != reading.counter_uid:
        return []
    out = []
    if reading.job_id != reading.previous_job_id and reading.restored_keys == 0:
        out.append(
            f"{name}: job {reading.job_id} started without the counter's state (restoredKeys 0) although nothing "
            f"allowed dropping it (previous job {reading.previous_job_id} had count {reading.previous_count})"
        )
    if reading.count < reading.previous_count:
        out.append(f"{name}: counter went back from {reading.previous_count} to {reading.count} (job {reading.job_id})")
    return out


def check(snapshot: Snapshot) -> list[str]:
    """Every violated invariant in the snapshot, one sentence each (empty: all hold)."""
    out: list[str] = []
    owned = {str(fj.status.get("jobId")) for fj in snapshot.flinkjobs if fj.status.get("jobId")}
    for job in snapshot.cluster_jobs:
        if job.active and job.job_id not in owned:
            out.append(f"job {job.job_id} ({job.name!r}, {job.state}) runs on the cluster but no FlinkJob owns it")
    for fj in snapshot.flinkjobs:
        out += check_flinkjob(fj, snapshot.cluster_jobs, snapshot.listed_reasons)
        for path in savepoint_paths(fj.status):
            if path not in snapshot.existing_paths:
                out.append(f"{fj.name}: savepoint {path} named in its status is not on disk")
        if fj.name in snapshot.previous_stalls:
            out += check_stall_retried(fj, snapshot.previous_stalls[fj.name])
    for name, reading in sorted(snapshot.counters.items()):
        out += check_counter(name, reading)
    return out
