"""The operator under test: `python -m flinkop` as a real child process against the bed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed import procs

REPO = Path(__file__).resolve().parents[2]


def start_operator(
    workdir: Path,
    kubeconfig: Path,
    *,
    name: str = "operator",
    extra_env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    detach: bool = False,
) -> procs.ManagedProcess:
    """Starts the operator; it watches all namespaces unless `args` say otherwise."""
    env = dict(os.environ)
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(REPO / "operator"),
            "PYTHONUNBUFFERED": "1",
            "FLINKOP_OBSERVE_INTERVAL": "3",
            "FLINKOP_JAR_CACHE_DIR": str(workdir / f"{name}-jars"),
            # The bed's jars are built at test time and given as file:// URIs, which are off by default.
            "FLINKOP_JAR_ALLOW_FILE": "true",
        }
    )
    env.update(extra_env or {})
    proc = procs.ManagedProcess(
        name,
        [sys.executable, "-m", "flinkop", *args],
        workdir / f"{name}.log",
        env=env,
        cwd=workdir,
        detach=detach,
        pid_path=workdir / "pids" / f"{name}.pid" if detach else None,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    return proc.start()


PEERING_CRDS = REPO / "deploy" / "peering-crds.yaml"


def install_peering_crds(kube: Any) -> None:
    """Applies kopf's peering CRDs from deploy/ (what `--peering` needs) and waits until they serve."""
    kube.kubectl("apply", "-f", str(PEERING_CRDS))
    for crd in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def peer_priorities(kube: Any, peering: str, namespace: str) -> dict[str, int]:
    """The live peers kopf recorded in KopfPeering `peering`: identity (POD_ID) -> priority."""
    got = kube.kubectl("get", "kopfpeerings.kopf.dev", peering, "-n", namespace, "-o", "json", check=False)
    if got.returncode != 0:
        return {}
    status = json.loads(got.stdout).get("status") or {}
    return {identity: int(peer["priority"]) for identity, peer in status.items() if peer}
