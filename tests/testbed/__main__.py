"""`python -m testbed up|down|demo|demo-app --dir DIR`: the test bed from the command line (for
`make demo`, `make demo-app` and `make demo-down`).

`up` starts kube-apiserver + etcd and a Flink session cluster that outlive this command, and
writes DIR/env with KUBECONFIG and FLINK_REST_URL; `down` stops whatever `up`, `demo` or `demo-app`
started (the node too); `demo` runs the operator on the bed, applies deploy/samples/counter-job.yaml,
upgrades it and shows the status before and after. `demo-app` does the same in application mode on
the bed's real node (testbed.node: root, one node per machine): kube-apiserver + etcd, the node, the
test job's image, the operator reaching JobManagers at their pod IPs; a FlinkJob with spec.cluster,
upgraded by an image change, its pods shown before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from testbed import procs

REPO = Path(__file__).resolve().parents[2]


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def up(bed: Path) -> tuple[Any, Any, Path]:
    from testbed.flink import start_flink
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube

    down(bed, quiet=True)
    bed.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _say("starting kube-apiserver and etcd")
    kube = start_kube(bed / "kube", detach=True)
    _say("starting the Flink session cluster")
    flink = start_flink(bed / "flink", detach=True)
    _say("compiling the test job")
    jar = build_test_job(bed / "jobs")
    (bed / "env").write_text(
        f"export KUBECONFIG={kube.admin_kubeconfig}\nexport FLINK_REST_URL={flink.rest_url}\n"
        f"export TEST_JOB_JAR={jar}\n"
    )
    _say(f"bed up in {time.monotonic() - t0:.0f} s: source {bed / 'env'} to use it with kubectl")
    return kube, flink, jar


def down(bed: Path, quiet: bool = False) -> None:
    stopped: list[str] = []
    if bed.exists():
        # The operator first (it would apply again a cluster whose pods the node's teardown deletes), then
        # the node (its pods deleted through the apiserver while that still runs), then the rest.
        stopped += [p.stem for p in sorted(bed.glob("operator/pids/*.pid")) if procs.stop_pidfile(p)]
        from testbed.node import DETACHED_STATE

        if (bed / "node" / DETACHED_STATE).exists():
            from testbed.node import stop_detached_node

            if stop_detached_node(bed / "node", bed / "kube" / "admin.kubeconfig"):
                stopped.append("node (kubelet, controller-manager, scheduler, cluster DNS, containerd)")
    pids = sorted((bed).glob("**/pids/*.pid")) if bed.exists() else []
    stopped += [p.stem for p in pids if procs.stop_pidfile(p)]
    if not quiet:
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _kubectl(kube: Any, *args: str, input: str | None = None) -> str:
    return str(kube.kubectl(*args, input=input).stdout)


def demo(bed: Path) -> None:
    import yaml

    from testbed.flink_rest import FlinkRest
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.operator_process import start_operator

    kube, flink, jar = up(bed)
    _kubectl(kube, "apply", "-f", str(REPO / "crds" / "flinkjob.yaml"))
    _kubectl(kube, "wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io")
    _say("starting the operator (python -m flinkop), log in " + str(bed / "operator" / "operator.log"))
    start_operator(bed / "operator", kube.admin_kubeconfig, detach=True)

    sample = yaml.safe_load((REPO / "deploy" / "samples" / "counter-job.yaml").read_text())
    sample["metadata"]["namespace"] = "default"
    sample["spec"]["flinkRestUrl"] = flink.rest_url
    sample["spec"]["jar"]["uri"] = jar.as_uri()
    _say("kubectl apply -f deploy/samples/counter-job.yaml (flinkRestUrl and jar.uri pointed at the bed)")
    print(_kubectl(kube, "apply", "-f", "-", input=yaml.safe_dump(sample)))

    jobs = FlinkJobs(kube.api_client(), "default")
    rest = FlinkRest(flink.rest_url)
    first = jobs.wait("counter", is_ready_at_current_generation, "Ready", timeout=180)
    count = rest.wait_state_counter_at_least(first["status"]["jobId"], 200)
    _say(f"running; the job's keyed state has counted to {count}")
    print(_kubectl(kube, "get", "flinkjobs", "-n", "default"))
    print(_kubectl(kube, "get", "flinkjob", "counter", "-n", "default", "-o", "jsonpath={.status}") + "\n")

    _say('upgrade: kubectl patch flinkjob counter --type=merge -p \'{"spec":{"parallelism":3}}\'')
    print(
        _kubectl(
            kube, "patch", "flinkjob", "counter", "-n", "default", "--type=merge", "-p", '{"spec":{"parallelism":3}}'
        )
    )
    second = jobs.wait("counter", is_ready_at_current_generation, "Ready after the upgrade", timeout=180)
    new_job = second["status"]["jobId"]
    after = rest.wait_state_counter_at_least(new_job, count + 1)
    print(_kubectl(kube, "get", "flinkjobs", "-n", "default"))
    print(_kubectl(kube, "get", "flinkjob", "counter", "-n", "default", "-o", "jsonpath={.status}") + "\n")
    _say(
        f"job {new_job} restored from {rest.restored_from(new_job)} at parallelism "
        f"{rest.job_parallelism(new_job)}; its state counts on: {after} > {count}"
    )
    print("\nEvents:")
    print(
        _kubectl(
            kube,
            "get",
            "events",
            "-n",
            "default",
            "--sort-by=.lastTimestamp",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        )
    )
    print(f"The bed keeps running: `source {bed / 'env'}` to use kubectl on it; `make clean` stops it.")


APP_NAME = "counter-app"
APP_NAMESPACE = "default"


def _show_pods(kube: Any) -> None:
    selector = f"flinkop.io/flinkjob={APP_NAME}"
    print(_kubectl(kube, "get", "pods", "-n", APP_NAMESPACE, "-o", "wide", "-L", "flinkop.io/job-id", "-l", selector))


def _show_status(jobs: Any) -> dict[str, Any]:
    from testbed.app_timing import status_summary

    resource: dict[str, Any] = jobs.get(APP_NAME)
    print(status_summary(resource) + "\n")
    return resource


def demo_app(bed: Path) -> None:
    import yaml
    from kubernetes import client as k8s

    from testbed.app_jobs import JOB_IMAGES, app_spec, import_job_images, make_data_dir, wait_jobmanager_rest
    from testbed.flink_rest import FlinkRest
    from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation
    from testbed.images import FLINK_IMAGE
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube
    from testbed.node import start_node
    from testbed.operator_process import start_operator

    down(bed, quiet=True)
    bed.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _say("starting kube-apiserver and etcd")
    kube = start_kube(bed / "kube", detach=True)
    (bed / "env").write_text(f"export KUBECONFIG={kube.admin_kubeconfig}\n")
    _say("starting the node: containerd, kubelet, controller-manager, scheduler, cluster DNS (needs root)")
    node = start_node(kube, bed / "node", images=(FLINK_IMAGE,), detach=True)
    _say("compiling the test job and importing its image as " + " and ".join(JOB_IMAGES))
    import_job_images(node, build_test_job(bed / "jobs"))
    data_dir = make_data_dir(bed / "app-data")
    _say(f"bed up in {time.monotonic() - t0:.0f} s; savepoints and checkpoints go to {data_dir}")
    _kubectl(kube, "apply", "-f", str(REPO / "crds" / "flinkjob.yaml"))
    _kubectl(kube, "wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io")
    _say(
        "starting the operator (python -m flinkop, FLINKOP_APP_REST_ADDRESS=pod-ip: it runs on the host and "
        f"reaches JobManagers at their pod IPs), log in {bed / 'operator' / 'operator.log'}"
    )
    pod_ip = {"FLINKOP_APP_REST_ADDRESS": "pod-ip"}
    start_operator(bed / "operator", kube.admin_kubeconfig, detach=True, extra_env=pod_ip)

    flinkjob = {
        "apiVersion": "flinkop.io/v1alpha1",
        "kind": "FlinkJob",
        "metadata": {"name": APP_NAME, "namespace": APP_NAMESPACE},
        "spec": app_spec(JOB_IMAGES[0], data_dir),
    }
    manifest = yaml.safe_dump(flinkjob, sort_keys=False)
    _say(f"kubectl apply -f - (a FlinkJob in application mode):\n{manifest}")
    print(_kubectl(kube, "apply", "-f", "-", input=manifest))
    jobs = FlinkJobs(kube.api_client(), APP_NAMESPACE)
    core = k8s.CoreV1Api(kube.api_client())
    jobs.wait(APP_NAME, is_ready_at_current_generation, "Ready", timeout=300, interval=1)
    _say(f"Ready after {time.monotonic() - t0:.0f} s; its pods (kubectl get pods -o wide -L flinkop.io/job-id):")
    _show_pods(kube)
    before = _show_status(jobs)
    job1 = before["status"]["jobId"]
    _, url1, _ = wait_jobmanager_rest(core, APP_NAMESPACE, APP_NAME, timeout=60)
    count = FlinkRest(url1).wait_state_counter_at_least(job1, 200, timeout=120)
    _say(f"job {job1} runs at {url1}; its keyed state has counted to {count}")

    patch = json.dumps({"spec": {"cluster": {"image": JOB_IMAGES[1]}}})
    _say(f"upgrade: kubectl patch flinkjob {APP_NAME} --type=merge -p '{patch}'")
    print(_kubectl(kube, "patch", "flinkjob", APP_NAME, "-n", APP_NAMESPACE, "--type=merge", "-p", patch))
    t_patch = time.monotonic()
    jobs.wait(APP_NAME, is_ready_at_current_generation, "Ready after the upgrade", timeout=300, interval=1)
    _say(f"Ready again {time.monotonic() - t_patch:.0f} s after the patch: the pods before (above) and now")
    _show_pods(kube)
    after = _show_status(jobs)
    job2 = after["status"]["jobId"]
    savepoint = (after["status"].get("lastSavepoint") or {}).get("path")
    _, url2, _ = wait_jobmanager_rest(core, APP_NAMESPACE, APP_NAME, not_job_ids={job1}, timeout=60)
    rest = FlinkRest(url2)
    counted = rest.wait_state_counter_at_least(job2, count + 1, timeout=120)
    _say(
        f"job {job1} stopped with savepoint {savepoint}; job {job2} runs on the new pods, restored from "
        f"{rest.restored_from(job2)}; its state counts on: {counted} > {count}"
    )
    print("\nEvents:")
    columns = "custom-columns=REASON:.reason,MESSAGE:.message"
    about = f"involvedObject.name={APP_NAME}"
    order = "--sort-by=.lastTimestamp"
    print(_kubectl(kube, "get", "events", "-n", APP_NAMESPACE, "--field-selector", about, order, "-o", columns))
    print(
        f"The bed keeps running: `source {bed / 'env'}` (KUBECONFIG={kube.admin_kubeconfig}) to use kubectl on it,\n"
        f"e.g. `kubectl get flinkjob {APP_NAME} -o yaml`, `kubectl get pods -o wide -L flinkop.io/job-id`,\n"
        f'`kubectl patch flinkjob {APP_NAME} --type=merge -p \'{{"spec":{{"state":"suspended"}}}}\'`; '
        f"the JobManager's REST API is at {url2}.\n"
        "While it runs no other node can start on this machine (tests with the node fail): "
        "`make demo-down` stops the operator, the node and the apiserver (`make clean` also removes .bed/)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    parser.add_argument("command", choices=["up", "down", "demo", "demo-app"])
    parser.add_argument("--dir", type=Path, default=REPO / ".bed")
    args = parser.parse_args(argv)
    bed = args.dir.resolve()
    try:
        if args.command == "up":
            up(bed)
        elif args.command == "down":
            down(bed)
        elif args.command == "demo-app":
            demo_app(bed)
        else:
            demo(bed)
    except (subprocess.CalledProcessError, AssertionError, RuntimeError, TimeoutError) as exc:
        print(f"\n{args.command} failed: {exc}", file=sys.stderr)
        for log in sorted(bed.glob("**/*.log")):
            print(f"--- {log} ---\n{procs.tail(log, 15)}", file=sys.stderr)
        if args.command.startswith("demo"):
            print("`make demo-down` stops what it started.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
