"""Runs the soak's operations (tests/soak/ops.py) against the real bed and checks the invariants
(tests/soak/invariants.py) at every quiescent point.

The bed: a real kube-apiserver, a real Flink session cluster behind the fault proxy
(tests/testbed/flink_proxy.py), and an operator that is its own process serving one namespace,
so that it can be SIGKILLed and started again. Three FlinkJobs: `soak-a` and `soak-b` on the same
cluster and jar, `soak-c` on another jar. Their progress is read from outside, from Flink: the
test job's counter gauges, the job names (set by the args), vertices and parallelism.

A quiescent point ends every fault, then waits until every FlinkJob has settled (observed at its
generation, Ready or Stalled, not Reconciling, a manual savepoint asked for taken) and stays so for
a moment; a settle that does not come within the timeout is a failure (a FlinkJob that never
converges). A violation counts only if it is still there a second look later (status lags Flink by
up to one observe interval). On failure, `SoakFailure` carries the seed, the operations so far, the
violations and the tails of the operator's and Flink's logs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import procs
from testbed.flink_proxy import FlinkProxy
from testbed.flink_rest import FlinkRest
from testbed.flinkjobs import FlinkJobs
from testbed.jobs import MAIN_CLASS
from testbed.operator_process import start_operator

from soak.invariants import (
    LISTED_STALLED_REASONS,
    ClusterJob,
    CounterReading,
    FlinkJobView,
    Snapshot,
    StallSeen,
    check,
    condition,
    counter_uid,
    drop_allowed,
    savepoint_paths,
    stall_of,
    stalled_reasons_in,
    wants_counter,
)
from soak.ops import ARGS_VARIANTS, FAULT_OPS, Op, generate

NAMES = ("soak-a", "soak-b", "soak-c")
README = Path(__file__).resolve().parents[2] / "README.md"
BASE_ARGS = ("--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000")


class SoakFailure(AssertionError):
    pass


@dataclass
class SoakBed:
    """What the soak runs against; `kube` is a testbed.kube.KubeCluster, `flink` a FlinkCluster."""

    kube: Any
    flink: Any
    namespace: str
    jar_v1: Path
    jar_v2: Path
    workdir: Path
    observe_interval: float = 3.0
    settle_timeout: float = 240.0
    # Another operator source tree to run (its `operator/` directory), e.g. an older commit's, to
    # see that the soak catches a bug that commit has. None: this repository's operator.
    operator_src: Path | None = None


@dataclass
class SoakResult:
    seed: int
    operations: int
    counts: Counter[str] = field(default_factory=Counter)
    settles: int = 0
    checks: int = 0  # FlinkJob snapshots checked against every invariant
    counter_checks: int = 0  # of those, with the counter's continuity read from Flink
    seconds: float = 0.0

    def summary(self) -> str:
        faults = sum(self.counts[k] for k in FAULT_OPS)
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        return (
            f"soak seed={self.seed}: {self.operations} operations ({faults} faults), "
            f"{self.settles} quiescent points, {self.checks} FlinkJob checks "
            f"({self.counter_checks} with the counter read), no violation, {self.seconds:.0f} s; by kind: {by_kind}"
        )


ROUTINE_FLINK_LINES = ("Triggering checkpoint", "Completed checkpoint", "Marking checkpoint")


def flink_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a Flink log without the routine checkpoint lines that bury the rest."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    kept = [line for line in text if not any(r in line for r in ROUTINE_FLINK_LINES)]
    return "\n".join(kept[-lines:])


def _say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Soak:
    def __init__(self, bed: SoakBed, seed: int, count: int) -> None:
        self.bed = bed
        self.seed = seed
        self.ops = generate(seed, count, NAMES)
        self.done: list[str] = []
        self.result = SoakResult(seed, count)
        self.switches = bed.workdir / "switches"
        self.switches.mkdir(parents=True, exist_ok=True)
        self.slow, self.fail = self.switches / "slow-snapshots", self.switches / "fail-snapshots"
        self.flink_rest = FlinkRest(bed.flink.rest_url)
        self.proxy = FlinkProxy(bed.flink.rest_url)
        self.jobs = FlinkJobs(bed.kube.api_client(), bed.namespace)
        self.operator: procs.ManagedProcess | None = None
        self.timers: list[threading.Timer] = []
        self.nonce = 0
        # State continuity, per FlinkJob: the last reading, and what happened since.
        self.baseline: dict[str, tuple[str, int, str]] = {}
        self.specs_seen: dict[str, list[dict[str, Any]]] = {n: [] for n in NAMES}
        self.recreated: dict[str, bool] = dict.fromkeys(NAMES, False)
        self.stalls: dict[str, StallSeen] = {}  # at the previous quiescent point

    # -- the bed -------------------------------------------------------------------------------

    def start_operator(self) -> None:
        self.operator = start_operator(
            self.bed.workdir,
            self.bed.kube.admin_kubeconfig,
            name="soak-operator",
            args=("--namespace", self.bed.namespace),
            extra_env={
                "FLINKOP_OBSERVE_INTERVAL": f"{self.bed.observe_interval:g}",
                **({"PYTHONPATH": str(self.bed.operator_src)} if self.bed.operator_src else {}),
            },
        )

    def args_for(self, name: str, variant: str) -> list[str]:
        return [
            *BASE_ARGS,
            "--slow-snapshot-file", str(self.slow), "--slow-snapshot-ms", "3000",
            "--fail-snapshot-file", str(self.fail),
            *ARGS_VARIANTS[variant],
            "--job-name", f"{name}.{variant}",
        ]  # fmt: skip

    def initial_spec(self, name: str) -> dict[str, Any]:
        jar = self.bed.jar_v2 if name == "soak-c" else self.bed.jar_v1
        return {
            "flinkRestUrl": self.proxy.url,
            "jar": {"uri": jar.as_uri()},
            "parallelism": 1,
            "args": self.args_for(name, "base"),
            "savepointHistoryLimit": 3,
            "savepointTimeoutSeconds": 60,
        }

    def spec(self, name: str) -> dict[str, Any]:
        return dict(self.jobs.get(name)["spec"])

    # -- applying operations -------------------------------------------------------------------

    def patch(self, name: str, changes: Mapping[str, Any]) -> None:
        self.jobs.patch_spec(name, changes)

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def apply(self, op: Op) -> None:
        name, p = op.target, op.params
        if op.kind == "kill_operator":
            assert self.operator is not None
            self.operator.kill()
            time.sleep(p["restart_after"])
            self.start_operator()
        elif op.kind == "flink_down":
            self.proxy.down = True
            self.after(p["seconds"], lambda: setattr(self.proxy, "down", False))
        elif op.kind in ("slow_savepoints", "fail_savepoints"):
            switch = self.slow if op.kind == "slow_savepoints" else self.fail
            switch.touch()
            self.after(p["seconds"], lambda: switch.unlink(missing_ok=True))
        else:
            assert name is not None
            self.apply_spec_op(op, name)
            self.specs_seen[name].append(self.spec(name))

    def apply_spec_op(self, op: Op, name: str) -> None:
        p = op.params
        jar_uri = {"v1": self.bed.jar_v1.as_uri(), "v2": self.bed.jar_v2.as_uri()}
        field_ops = {
            "allow_non_restored": ("allowNonRestoredState", "policy"),
            "restore_failure_policy": ("restoreFailurePolicy", "policy"),
            "upgrade_mode": ("upgradeMode", "mode"),
            "savepoint_mode": ("savepointMode", "mode"),
            "parallelism_spec": ("parallelism", "parallelism"),
            "rescale_mode": ("rescaleMode", "mode"),
            "savepoint_nonce": ("savepointNonce", "nonce"),
            "restart_nonce": ("restartNonce", "nonce"),
            "savepoint_interval": ("savepointIntervalSeconds", "seconds"),
            "history_limit": ("savepointHistoryLimit", "limit"),
        }
        if op.kind in field_ops:
            key, param = field_ops[op.kind]
            self.patch(name, {key: p[param]})
        elif op.kind == "jar":
            self.patch(name, {"jar": {"uri": jar_uri[p["jar"]]}})
        elif op.kind == "entry_class":
            self.patch(name, {"entryClass": MAIN_CLASS if p["explicit"] else None})
        elif op.kind == "args":
            self.patch(name, {"args": self.args_for(name, p["variant"])})
        elif op.kind == "suspend":
            self.patch(name, {"state": "suspended"})
        elif op.kind == "resume":
            self.patch(name, {"state": "running"})
        elif op.kind == "suspend_then_resume":
            self.patch(name, {"state": "suspended"})
            self.wait_for(name, lambda st: st.get("phase") == "Suspended", "phase Suspended")
            time.sleep(p["resume_after"])
            self.patch(name, {"state": "running"})
        elif op.kind == "stall_then_policy":
            self.patch(name, {"args": self.args_for(name, p["variant"]), "allowNonRestoredState": "Never"})
            self.wait_for(
                name,
                lambda st: condition(st, "Stalled").get("status") == "True",
                "a stall (the upgrade cannot map the counter's state)",
            )
            time.sleep(p["after"])
            self.patch(name, {"allowNonRestoredState": p["policy"]})
        elif op.kind == "parallelism_scale":
            self.bed.kube.kubectl(
                "scale", f"flinkjob/{name}", f"--replicas={p['parallelism']}", "-n", self.bed.namespace
            )
        elif op.kind == "apply_manifest":
            spec = self.spec(name)
            spec.update(
                jar={"uri": jar_uri[p["jar"]]},
                args=self.args_for(name, p["variant"]),
                parallelism=p["parallelism"],
                allowNonRestoredState=p["policy"],
            )
            manifest = {
                "apiVersion": "flinkop.io/v1alpha1",
                "kind": "FlinkJob",
                "metadata": {"name": name, "namespace": self.bed.namespace},
                "spec": spec,
            }
            path = self.switches / f"{name}-manifest.json"
            path.write_text(json.dumps(manifest, indent=1))
            self.bed.kube.kubectl("apply", "-f", str(path))
        elif op.kind == "delete_recreate":
            spec = self.spec(name)
            self.jobs.delete(name)
            try:
                self.jobs.wait_gone(name, timeout=self.bed.settle_timeout)
            except AssertionError as exc:
                raise SoakFailure(f"deleting {name} never finished: {exc}") from exc
            time.sleep(p["recreate_after"])
            self.jobs.create(name, spec)
            self.recreated[name] = True
            self.stalls.pop(name, None)
        else:
            raise ValueError(f"unknown operation {op.kind}")

    def wait_for(self, name: str, predicate: Callable[[Mapping[str, Any]], bool], what: str) -> bool:
        """Waits (at most 60 s) for a status the next step of a compound operation starts from.
        Returns False when it did not come (the FlinkJob was in another state, say suspended):
        the compound operation then goes on anyway, as a person who gave up waiting would."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if predicate(self.jobs.get(name).get("status") or {}):
                return True
            time.sleep(0.5)
        _say(f"   {name}: no {what} within 60 s; going on")
        return False

    # -- quiescent points ----------------------------------------------------------------------

    def end_faults(self) -> None:
        for timer in self.timers:
            timer.join()
        self.timers.clear()
        self.proxy.down = False
        self.slow.unlink(missing_ok=True)
        self.fail.unlink(missing_ok=True)

    @staticmethod
    def settled(resource: Mapping[str, Any]) -> bool:
        status = resource.get("status") or {}
        spec = resource["spec"]
        if status.get("observedGeneration") != resource["metadata"]["generation"]:
            return False
        if condition(status, "Reconciling").get("status") == "True":
            return False
        stalled = condition(status, "Stalled").get("status") == "True"
        if not stalled and condition(status, "Ready").get("status") != "True":
            return False
        wants_savepoint = spec.get("state", "running") == "running" and spec.get("savepointNonce") is not None
        return stalled or not wants_savepoint or status.get("savepointNonce") == spec.get("savepointNonce")

    def wait_settled(self) -> None:
        deadline = time.monotonic() + self.bed.settle_timeout
        steady_since: float | None = None
        while True:
            resources = [self.jobs.get(n) for n in NAMES]
            waiting = [r for r in resources if not self.settled(r)]
            now = time.monotonic()
            if waiting:
                steady_since = None
            elif steady_since is None:
                steady_since = now
            elif now - steady_since >= self.bed.observe_interval + 1:
                return
            if now > deadline:
                keys = ("observedGeneration", "phase", "message", "jobId", "upgrade", "conditions")
                lines = [
                    f"  {r['metadata']['name']} gen {r['metadata']['generation']}: "
                    + json.dumps({k: (r.get("status") or {}).get(k) for k in keys})
                    for r in waiting
                ]
                raise SoakFailure(
                    f"not converged within the settle timeout of {self.bed.settle_timeout:g} s:\n" + "\n".join(lines)
                )
            time.sleep(1.0)

    def cluster_jobs(self) -> list[ClusterJob]:
        out = []
        for job in self.flink_rest.jobs_overview():
            vertices: dict[str, tuple[int, int]] = {}
            if job["state"] not in ("FINISHED", "CANCELED", "FAILED", "SUSPENDED"):
                for v in self.flink_rest.job(job["jid"])["vertices"]:
                    vertices[str(v["name"])] = (int(v["parallelism"]), int(v["tasks"].get("RUNNING", 0)))
            out.append(ClusterJob(str(job["jid"]), str(job["name"]), str(job["state"]), vertices))
        return out

    def read_counter(self, job_id: str, at_least: int | None) -> tuple[int, int]:
        """The counter (waiting up to 30 s for it to reach `at_least`) and restoredKeys."""
        deadline = time.monotonic() + 30
        count = -1
        while True:
            with contextlib.suppress(Exception):
                count = self.flink_rest.state_counter(job_id)
            if count >= 0 and (at_least is None or count >= at_least):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        restored = -1
        with contextlib.suppress(Exception):
            restored = self.flink_rest.restored_keys(job_id)
        return count, restored

    def snapshot(self, take_counters: bool) -> Snapshot:
        views = []
        for name in NAMES:
            r = self.jobs.get(name)
            views.append(FlinkJobView(name, int(r["metadata"]["generation"]), r["spec"], r.get("status") or {}))
        jobs = self.cluster_jobs()
        paths = {p for v in views for p in savepoint_paths(v.status)}
        existing = frozenset(p for p in paths if Path(p.removeprefix("file:")).exists())
        counters: dict[str, CounterReading] = {}
        if take_counters:
            active = {j.job_id for j in jobs if j.active and j.has_counter}
            for v in views:
                job_id = str(v.status.get("jobId") or "")
                stalled = condition(v.status, "Stalled").get("status") == "True"
                if v.spec.get("state", "running") != "running" or stalled or job_id not in active:
                    continue
                if not wants_counter(v.spec):
                    continue
                prev = self.baseline.get(v.name)
                count, restored = self.read_counter(job_id, prev[1] if prev else None)
                if count < 0:
                    continue
                counters[v.name] = CounterReading(
                    job_id,
                    count,
                    restored,
                    counter_uid(v.spec),
                    prev[0] if prev else None,
                    prev[1] if prev else None,
                    prev[2] if prev else None,
                    drop_allowed(self.specs_seen[v.name], self.recreated[v.name]),
                )
        listed = stalled_reasons_in(README.read_text())
        return Snapshot(views, jobs, existing, counters, dict(self.stalls), listed or LISTED_STALLED_REASONS)

    def quiescent_point(self) -> None:
        self.end_faults()
        self.wait_settled()
        snap = self.snapshot(take_counters=True)
        first = check(snap)
        if first:
            _say("violations at the first look, looking again: " + "; ".join(first))
            time.sleep(2 * self.bed.observe_interval + 2)
            self.wait_settled()
            second = self.snapshot(take_counters=False)
            counter_rules = [v for v in first if "counter" in v and ("restoredKeys" in v or "went back" in v)]
            persisting = check(second) + counter_rules
            if persisting:
                raise SoakFailure("invariants violated:\n  " + "\n  ".join(persisting))
        self.result.settles += 1
        self.result.checks += len(snap.flinkjobs)
        self.result.counter_checks += len(snap.counters)
        for name, reading in snap.counters.items():
            self.baseline[name] = (reading.job_id, reading.count, reading.counter_uid)
        self.stalls = {v.name: seen for v in snap.flinkjobs if (seen := stall_of(v)) is not None}
        for name in NAMES:
            spec = next(v.spec for v in snap.flinkjobs if v.name == name)
            self.specs_seen[name] = [dict(spec)]
            self.recreated[name] = False
        # A FlinkJob whose state may have been dropped and has no reading now starts a new lineage.
        for name in NAMES:
            if name not in snap.counters and self.may_have_dropped(snap, name):
                self.baseline.pop(name, None)

    @staticmethod
    def may_have_dropped(snap: Snapshot, name: str) -> bool:
        view = next(v for v in snap.flinkjobs if v.name == name)
        return not wants_counter(view.spec) or view.spec.get("upgradeMode") == "stateless"

    # -- the run -------------------------------------------------------------------------------

    def failure_report(self, error: BaseException) -> str:
        operator_tail = self.operator.tail(80) if self.operator is not None else "(no operator)"
        return "\n".join(
            [
                f"SOAK FAILED: seed={self.seed} (replay: make soak SEED={self.seed} OPS={self.result.operations})",
                f"{type(error).__name__}: {error}",
                f"operations so far ({len(self.done)}):",
                *(f"  {i + 1:3d}. {d}" for i, d in enumerate(self.done)),
                "--- operator log tail ---",
                operator_tail,
                "--- Flink log tails (routine checkpoint lines left out) ---",
                *(f"--- {p.name} ({p.log_path}) ---\n{flink_tail(p.log_path, 60)}" for p in self.bed.flink.processes),
            ]
        )

    def run(self) -> SoakResult:
        started = time.monotonic()
        source = f", operator from {self.bed.operator_src}" if self.bed.operator_src else ""
        _say(f"seed={self.seed}, {self.result.operations} operations, namespace {self.bed.namespace}{source}")
        try:
            self.flink_rest.cancel_running_jobs()  # the soak's cluster starts empty: every job is its own
            self.start_operator()
            for name in NAMES:
                self.jobs.create(name, self.initial_spec(name))
                self.specs_seen[name].append(self.spec(name))
            self.quiescent_point()
            for op in self.ops:
                self.done.append(op.describe())
                _say(f"{len(self.done)}. {op.describe()}")
                if op.kind == "settle":
                    self.quiescent_point()
                    continue
                self.apply(op)
                self.result.counts[op.kind] += 1
                time.sleep(op.gap)
        except BaseException as exc:
            raise SoakFailure(self.failure_report(exc)) from exc
        finally:
            self.end_faults()
            self.result.seconds = time.monotonic() - started
        _say(self.result.summary())
        return self.result

    def close(self) -> None:
        """Deletes the FlinkJobs (final savepoints), stops the operator and the proxy."""
        self.end_faults()
        with contextlib.suppress(Exception):
            if self.operator is None or not self.operator.alive():
                self.start_operator()
            for name in NAMES:
                with contextlib.suppress(Exception):
                    self.jobs.delete(name)
            for name in NAMES:
                with contextlib.suppress(Exception):
                    self.jobs.wait_gone(name, timeout=60)
        if self.operator is not None:
            self.operator.stop()
        self.proxy.close()


def make_jar_v2(jar: Path, out_dir: Path) -> Path:
    """The same program in a jar with other bytes: a jar change that keeps every operator."""
    v2 = out_dir / "flinkop-testjob-v2.jar"
    if not v2.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(jar, v2)
        with zipfile.ZipFile(v2, "a") as zf:
            zf.writestr("FLINKOP-TEST-VERSION", "2\n")
    return v2


def run_soak(bed: SoakBed, seed: int, count: int) -> SoakResult:
    soak = Soak(bed, seed, count)
    try:
        return soak.run()
    finally:
        soak.close()
