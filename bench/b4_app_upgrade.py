"""B4: an application-mode upgrade by the operator against the same steps by hand, on the bed's real node.

Both jobs run the test job in application mode (spec.cluster: a JobManager Deployment running
`standalone-job`, a TaskManager Deployment, a headless Service, a ConfigMap), each on its own cluster
on the bed's one node, from the job's image in two tags of the same content (testbed.app_jobs).

A: a FlinkJob the operator serves (namespace `b4-operator`; the operator runs on the host with
   FLINKOP_APP_REST_ADDRESS=pod-ip and `--namespace b4-operator`). Each pair patches its
   `spec.cluster.image` to the other tag; the operator does the rest (stop with a savepoint, one status
   write, the cluster's objects replaced in place for a new job id with `--fromSavepoint`).
B: the same by hand on a second cluster, built by flinkop.app_cluster.build_cluster for a FlinkJob in a
   namespace no operator serves (`b4-by-hand`; the FlinkJob only owns the objects): `POST
   /jobs/<id>/stop` with the same target directory, the savepoint polled at the operator's pace
   (flinkop.plan.common.stopping_poll: every 0.1 s for 2 s, then every 0.25 s), the old job's end
   awaited, then AppClusterKube.apply of the objects for a new job id restoring from the savepoint
   (ClusterStart(new_id, savepoint)), with the other image tag.

Pairs run interleaved (A B A B ...). For both, this script observes the same way:
  * the old job's end: a thread reads the old JobManager's live `/jobs/overview` every 10 ms from the
    patch (A) or the stop call (B) until it lists the job ended, and keeps Flink's `end-time` (the old
    JobManager stays up after its job ends until its pod is replaced). When the pod went away before
    that read (not expected: the operator replaces the pod only after it saw the job end), the savepoint's
    `_metadata` modification time on the host stands in (`end_source: savepoint-file`; it precedes the
    job's end by the time the tasks take to finish after the savepoint, so downtime reads longer);
  * the new JobManager: its pod (the FlinkJob's JobManager with another job id, Running with an IP) is
    listed every 50 ms; then its live `/jobs/overview` is read every 10 ms until the new job runs every task.
Total = end minus the patch (A) or the stop call (B); downtime = end minus the old job's end-time.
After each run: the new job restored from the upgrade's savepoint (checked), a completed checkpoint,
and for A the FlinkJob Ready at its generation, before the next run.

The node has 2 CPUs: both clusters (a JobManager and one TaskManager each) fit side by side at
`--cpu 500m` per pod (requests = limits, as the operator sets them); absolute times are longer than
at 1 CPU. Needs root (the node). Every wait has a timeout (RUN_TIMEOUT for any one step of a run).

    PYTHONPATH=tests:operator python bench/b4_app_upgrade.py --pairs 3 --out bench/results/b4.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

NS_A = "b4-operator"
NS_B = "b4-by-hand"
NAME_A = "bench"
NAME_B = "bench-by-hand"
END_POLL = 0.01  # the old job's end and the new job's RUNNING: read every 10 ms
POD_POLL = 0.05  # the new JobManager pod: listed every 50 ms
RUN_TIMEOUT = 300.0  # any one wait of a run (a pod start at 0.5 CPU takes tens of seconds)


@dataclass
class EndWatch:
    """Reads `rest_url`'s live /jobs/overview every 10 ms in a thread until job `job_id` has ended (Flink's
    end-time kept), the JobManager stops answering after having answered (`gone`), or `timeout` passes."""

    rest_url: str
    job_id: str
    timeout: float = RUN_TIMEOUT
    end: float | None = None
    gone: bool = False
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> EndWatch:
        threading.Thread(target=self._run, name=f"end-of-{self.job_id[:8]}", daemon=True).start()
        return self

    def _run(self) -> None:
        from testbed.app_timing import ended_at

        session = requests.Session()
        deadline = time.monotonic() + self.timeout
        failures = 0
        try:
            while time.monotonic() < deadline:
                try:
                    answer = session.get(f"{self.rest_url}/jobs/overview", timeout=(0.5, 5))
                    answer.raise_for_status()
                    failures = 0
                    end = ended_at(answer.json().get("jobs") or [], self.job_id)
                    if end is not None:
                        self.end = end
                        return
                except (requests.RequestException, ValueError) as exc:
                    failures += 1
                    if failures >= 20:  # 20 failed reads in a row (~0.2 s+): the pod is being replaced
                        self.gone = True
                        self.error = f"{type(exc).__name__}: {exc}"
                        return
                time.sleep(END_POLL)
            self.error = f"job {self.job_id} had not ended after {self.timeout:.0f} s"
        finally:
            session.close()
            self._done.set()

    def wait(self, timeout: float = RUN_TIMEOUT) -> EndWatch:
        if not self._done.wait(timeout):
            raise TimeoutError(f"no end of job {self.job_id} read within {timeout:.0f} s")
        return self


def wait_all_running(rest_url: str, job_id: str, timeout: float = RUN_TIMEOUT) -> tuple[float, float]:
    """Reads the new JobManager's live /jobs/overview every 10 ms (refused connections while it starts
    are retried) until job `job_id` runs every task: (first answer's time, that moment's time)."""
    from testbed.app_timing import all_running

    session = requests.Session()
    deadline = time.monotonic() + timeout
    first_answer: float | None = None
    last = "no answer yet"
    try:
        while time.monotonic() < deadline:
            try:
                answer = session.get(f"{rest_url}/jobs/overview", timeout=(0.5, 5))
                answer.raise_for_status()
                now = time.time()
                first_answer = first_answer or now
                jobs = answer.json().get("jobs") or []
                if all_running(jobs, job_id):
                    return first_answer, now
                last = json.dumps([{k: j.get(k) for k in ("jid", "state", "tasks")} for j in jobs])[:500]
            except (requests.RequestException, ValueError) as exc:
                last = f"{type(exc).__name__}"
            time.sleep(END_POLL)
    finally:
        session.close()
    raise TimeoutError(f"job {job_id} at {rest_url} did not run every task within {timeout:.0f} s; last: {last}")


def stop_with_savepoint(rest_url: str, job_id: str, directory: str, timeout: float = RUN_TIMEOUT) -> str:
    """`POST /jobs/<id>/stop` as the operator makes it, then the savepoint polled at the operator's pace."""
    from flinkop.plan.common import stopping_poll

    session = requests.Session()
    try:
        answer = session.post(
            f"{rest_url}/jobs/{job_id}/stop", json={"drain": False, "targetDirectory": directory}, timeout=10
        )
        answer.raise_for_status()
        request_id = answer.json()["request-id"]
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            time.sleep(stopping_poll(time.monotonic() - started))
            status = session.get(f"{rest_url}/jobs/{job_id}/savepoints/{request_id}", timeout=10).json()
            if (status.get("status") or {}).get("id") != "COMPLETED":
                continue
            operation = status.get("operation") or {}
            if operation.get("failure-cause"):
                raise RuntimeError(f"the savepoint of job {job_id} failed: {str(operation['failure-cause'])[:2000]}")
            return str(operation["location"])
    finally:
        session.close()
    raise TimeoutError(f"the savepoint of job {job_id} did not complete within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/b4.json"))
    parser.add_argument("--cpu", default="500m", help="CPU of each JobManager and TaskManager pod (2 clusters fit)")
    parser.add_argument("--operator-verbose", action="store_true", help="debug log (slower; to see where time goes)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, savepoints) on success")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    from flinkop.app_cluster import ClusterStart, build_cluster
    from flinkop.app_cluster_kube import AppClusterKube
    from flinkop.spec import parse_spec
    from kubernetes import client as k8s
    from testbed.app_jobs import DATA_MOUNT, app_spec, import_job_images, make_data_dir, wait_jobmanager_rest
    from testbed.app_timing import savepoint_on_host, summarise
    from testbed.flink_rest import FlinkRest
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.images import FLINK_IMAGE
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube
    from testbed.node import start_node
    from testbed.operator_process import start_operator

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="flinkop-b4-"))
    kube = start_kube(work / "kube")
    node = operator = None
    ok = False
    try:
        node = start_node(kube, work / "node", images=(FLINK_IMAGE,))
        images = import_job_images(node, build_test_job(work / "jobs"))
        data_dir = make_data_dir(work / "data")
        repo = Path(__file__).resolve().parents[1]
        kube.kubectl("apply", "-f", str(repo / "crds" / "flinkjob.yaml"))
        kube.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io", "--timeout=60s")
        api = kube.api_client()
        core = k8s.CoreV1Api(api)
        for namespace in (NS_A, NS_B):
            kube.kubectl("create", "namespace", namespace)
            _wait(lambda ns=namespace: _has_token(core, ns), 60, f"the default ServiceAccount's token in {namespace}")
        operator = start_operator(
            work / "operator",
            kube.admin_kubeconfig,
            extra_env={"FLINKOP_APP_REST_ADDRESS": "pod-ip"},
            args=("--namespace", NS_A, *(("--verbose",) if args.operator_verbose else ())),
        )

        def spec(image: str) -> dict[str, Any]:
            return app_spec(image, data_dir, cpu=args.cpu)

        directory = spec(images[0])["savepointDirectory"]

        # A's FlinkJob, deployed by the operator; B's FlinkJob (no operator serves its namespace) owns the
        # cluster this script applies for it.
        jobs_a = FlinkJobs(api, NS_A)
        jobs_a.create(NAME_A, spec(images[0]))
        b_meta = FlinkJobs(api, NS_B).create(NAME_B, spec(images[0]))["metadata"]
        clusters = AppClusterKube(api)

        def apply_b(image: str, start: ClusterStart) -> None:
            clusters.apply(
                build_cluster(name=NAME_B, namespace=NS_B, uid=b_meta["uid"], spec=parse_spec(spec(image)), start=start)
            )

        apply_b(images[0], ClusterStart(uuid.uuid4().hex))
        a_job = jobs_a.wait(NAME_A, is_ready_at_current_generation, "Ready", timeout=RUN_TIMEOUT, interval=1)
        a_job_id = a_job["status"]["jobId"]
        a_job_id2, a_url, _ = wait_jobmanager_rest(core, NS_A, NAME_A, timeout=60)
        assert a_job_id2 == a_job_id, (a_job_id, a_job_id2)
        b_job_id, b_url, _ = wait_jobmanager_rest(core, NS_B, NAME_B, timeout=RUN_TIMEOUT)
        wait_all_running(b_url, b_job_id)
        FlinkRest(a_url).wait_checkpoint_completed(a_job_id, timeout=120)
        FlinkRest(b_url).wait_checkpoint_completed(b_job_id, timeout=120)
        print(f"bed and both jobs up in {time.monotonic() - started:.0f} s", flush=True)

        def measured(
            kind: str, pair: int, image: str, t0: float, watch: EndWatch, ns: str, name: str, old: str
        ) -> tuple[dict[str, Any], str, str]:
            """Waits for the new JobManager and for its job to run every task: the run's total and marks."""
            new_id, new_url, t_pod = wait_jobmanager_rest(core, ns, name, not_job_ids={old}, timeout=RUN_TIMEOUT)
            t_rest, t_end = wait_all_running(new_url, new_id)
            watch.wait()
            run: dict[str, Any] = {
                "kind": kind,
                "pair": pair,
                "image": image,
                "old_job": old,
                "new_job": new_id,
                "total": t_end - t0,
                "marks": {"pod_ip": t_pod - t0, "rest_answers": t_rest - t0, "all_running": t_end - t0},
            }
            return run, new_id, new_url

        def finish(run: dict[str, Any], savepoint: str, new_url: str, watch: EndWatch, t0: float) -> None:
            """Downtime from the old job's end-time (or the savepoint file), and the restore checked."""
            written = (savepoint_on_host(savepoint, data_dir, DATA_MOUNT) / "_metadata").stat().st_mtime
            end, source = (watch.end, "end-time") if watch.end is not None else (written, "savepoint-file")
            t_end = t0 + run["total"]
            run.update(
                downtime=t_end - end,
                end_source=source,
                savepoint=savepoint,
                savepoint_written=written - t0,
                at=[t0, end, t_end],
            )
            run["marks"]["old_end"] = end - t0
            if watch.error:
                run["end_watch"] = watch.error
            rest = FlinkRest(new_url)
            restored = rest.restored_from(run["new_job"])
            if restored != savepoint:
                raise AssertionError(f"{run['kind']}: job {run['new_job']} restored from {restored}, not {savepoint}")
            rest.wait_checkpoint_completed(run["new_job"], timeout=120)

        runs: list[dict[str, Any]] = []
        for pair in range(args.pairs):
            image = images[(pair + 1) % 2]

            # A: the operator.
            watch = EndWatch(a_url, a_job_id).start()
            time.sleep(0.05)  # the watch's thread reading before the clock starts, for A and B alike
            t0 = time.time()
            jobs_a.patch_spec(NAME_A, {"cluster": spec(image)["cluster"]})
            run, new_id, new_url = measured("A", pair, image, t0, watch, NS_A, NAME_A, a_job_id)
            ready = jobs_a.wait(NAME_A, is_ready_at_current_generation, "Ready", timeout=RUN_TIMEOUT, interval=0.5)
            status = ready["status"]
            if status["jobId"] != new_id:
                raise AssertionError(f"A: the FlinkJob runs {status['jobId']}, the new JobManager {new_id}")
            finish(run, status["lastSavepoint"]["path"], new_url, watch, t0)
            runs.append(run)
            a_job_id, a_url = new_id, new_url

            # B: by hand, the operator's steps.
            watch = EndWatch(b_url, b_job_id).start()
            time.sleep(0.05)
            t0 = time.time()
            savepoint = stop_with_savepoint(b_url, b_job_id, directory)
            t_savepoint = time.time()
            if watch.wait().end is None:  # the operator waits for the old job's end before it applies
                raise RuntimeError(f"B: job {b_job_id} did not end after its savepoint: {watch.error}")
            t_ended_seen = time.time()
            apply_b(image, ClusterStart(uuid.uuid4().hex, savepoint_path=savepoint))
            t_applied = time.time()
            run, new_id, new_url = measured("B", pair, image, t0, watch, NS_B, NAME_B, b_job_id)
            run["marks"].update(savepoint_seen=t_savepoint - t0, end_seen=t_ended_seen - t0, applied=t_applied - t0)
            finish(run, savepoint, new_url, watch, t0)
            runs.append(run)
            b_job_id, b_url = new_id, new_url
            print(json.dumps(runs[-2:]), flush=True)

        summary = summarise(runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {"pairs": args.pairs, "cpu_per_pod": args.cpu, "parallelism": 2, "taskmanagers": 1}
        args.out.write_text(json.dumps({"runs": runs, "summary": summary, "settings": settings}, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        print(f"B4 done in {time.monotonic() - started:.0f} s; results in {args.out}", flush=True)
        ok = True
        return 0
    finally:
        if operator is not None:
            operator.stop()
        if node is not None:
            node.stop()
        kube.stop()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work} (logs under kube/logs, node/logs, operator/)", file=sys.stderr)


def _has_token(core: Any, namespace: str) -> bool:
    from kubernetes.client import ApiException

    try:
        account = core.read_namespaced_service_account("default", namespace, _request_timeout=10)
    except ApiException:
        return False
    return bool(account.secrets)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
