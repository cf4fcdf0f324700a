"""`python -m testbed up|down|demo --dir DIR`: the test bed from the command line (for `make demo`).

`up` starts kube-apiserver + etcd and a Flink session cluster that outlive this command, and
writes DIR/env with KUBECONFIG and FLINK_REST_URL; `down` stops whatever `up` or `demo` started;
`demo` runs the operator on the bed, applies deploy/samples/counter-job.yaml, upgrades it and shows
the status before and after.
"""

from __future__ import annotations

import argparse
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
    pids = sorted((bed).glob("**/pids/*.pid")) if bed.exists() else []
    stopped = [p.stem for p in pids if procs.stop_pidfile(p)]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    parser.add_argument("command", choices=["up", "down", "demo"])
    parser.add_argument("--dir", type=Path, default=REPO / ".bed")
    args = parser.parse_args(argv)
    bed = args.dir.resolve()
    try:
        if args.command == "up":
            up(bed)
        elif args.command == "down":
            down(bed)
        else:
            demo(bed)
    except (subprocess.CalledProcessError, AssertionError, RuntimeError) as exc:
        print(f"\n{args.command} failed: {exc}", file=sys.stderr)
        for log in sorted(bed.glob("**/*.log")):
            print(f"--- {log} ---\n{procs.tail(log, 15)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
