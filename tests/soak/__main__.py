"""`python -m soak --seed N --ops N`: a soak on a bed of its own (what `make soak` runs).

Starts a kube-apiserver with etcd, a Flink session cluster and the test job's jar under a fresh
directory, runs the soak, prints its summary (or the failure with its seed), and stops the bed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from soak.runner import SoakBed, SoakFailure, make_jar_v2, run_soak

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="the seed to replay (default: drawn and printed)")
    parser.add_argument("--ops", type=int, default=300, help="number of operations (default 300)")
    parser.add_argument("--observe-interval", type=float, default=3.0, help="the operator's FLINKOP_OBSERVE_INTERVAL")
    parser.add_argument("--settle-timeout", type=float, default=240.0, help="seconds a quiescent point may take")
    parser.add_argument("--dir", type=Path, default=None, help="where the bed lives (default: a fresh temp dir)")
    opts = parser.parse_args(argv)
    seed = opts.seed if opts.seed is not None else int(time.time())
    workdir = (opts.dir or Path(tempfile.mkdtemp(prefix="flinkop-soak-"))).resolve()
    print(f"soak seed {seed}, {opts.ops} operations, bed in {workdir}", flush=True)

    from testbed.flink import start_flink
    from testbed.jobs import build_test_job
    from testbed.kube import start_kube

    kube = start_kube(workdir / "kube")
    flink = None
    try:
        kube.kubectl("apply", "-f", str(REPO / "crds" / "flinkjob.yaml"))
        kube.kubectl("wait", "--for=condition=Established", "crd/flinkjobs.flinkop.io", "--timeout=60s")
        kube.kubectl("create", "namespace", "own-soak")
        flink = start_flink(workdir / "flink")
        jar = build_test_job(workdir / "jobs")
        bed = SoakBed(
            kube, flink, "own-soak", jar, make_jar_v2(jar, workdir / "jobs"), workdir / "soak",
            observe_interval=opts.observe_interval, settle_timeout=opts.settle_timeout,
        )  # fmt: skip
        try:
            run_soak(bed, seed, opts.ops)
        except SoakFailure as exc:
            print(exc, flush=True)
            return 1
        return 0
    finally:
        if flink is not None:
            flink.stop()
        kube.stop()


if __name__ == "__main__":
    sys.exit(main())
