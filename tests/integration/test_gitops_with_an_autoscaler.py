"""GitOps and an autoscaler on one FlinkJob, on the real apiserver, with real Flink and the operator.

An HPA, or KEDA through the HPA it creates, changes a FlinkJob's parallelism by writing its scale
subresource (`PUT .../flinkjobs/NAME/scale`, which sets `spec.parallelism`). The bed has no
metrics-server and no controller-manager, so `kubectl scale`, which writes through the same
subresource, plays the autoscaler here. A GitOps tool re-applies the manifest from Git: client-side
`kubectl apply` (Argo CD's default sync; the `last-applied-configuration` annotation), or server-side
apply with its own field manager and `--force-conflicts` (Flux's kustomize-controller).

Which parallelism a re-apply leaves is decided by the apiserver (v1.20.2 on the bed):
- the manifest leaves `spec.parallelism` out (the recommended setup; the CRD defaults it to 1 at
  create, and no applier owns it): every re-apply keeps the autoscaler's value and the job is not
  touched;
- the manifest sets it: every re-apply puts Git's value back, whatever the autoscaler wrote; the
  operator then rescales once, and at most once per `minRescaleIntervalSeconds` however often the two
  fight;
- a manifest that drops a `parallelism` it used to set removes the field (back to the default 1)
  unless the field is handed over first.

"No further upgrade" is checked over a bounded observation window after the re-apply (several of
the bed operator's 3 s looks at a job at rest): the job id, the upgrade savepoints in
`status.savepointHistory`, the rescale and upgrade Events, and the jobs Flink runs stay as they were.
That is an observation window, not a speed assertion.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from testbed.flinkjobs import FlinkJobs, is_ready_at_current_generation

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE_ARGS = ["--rate", "200", "--keys", "4", "--checkpoint-interval-ms", "1000"]
CLIENT_SIDE = ("apply",)
SERVER_SIDE_AS_FLUX = ("apply", "--server-side", "--field-manager=kustomize-controller", "--force-conflicts")
APPLIERS = [
    pytest.param(CLIENT_SIDE, id="client-side-apply"),
    pytest.param(SERVER_SIDE_AS_FLUX, id="server-side-apply-as-kustomize-controller"),
]
# The bed's operator looks at a job at rest every 3 s (FLINKOP_OBSERVE_INTERVAL): four looks.
OBSERVATION_WINDOW_SECONDS = 12.0
# Events the operator writes when it starts to change a running job (savepoint upgrade or rescale).
CHANGE_EVENTS = frozenset(
    {"Upgrading", "Savepointing", "Submitting", "Rescaling", "Rescaled", "RescalePending", "Suspending"}
)
MIN_RESCALE_INTERVAL_SECONDS = 25


def manifest(name: str, rest_url: str, jar: Path, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flinkop.io/v1alpha1",
        "kind": "FlinkJob",
        "metadata": {"name": name},
        "spec": {"flinkRestUrl": rest_url, "jar": {"uri": jar.as_uri()}, "args": RATE_ARGS, **extra},
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def apply(kube: Any, applier: tuple[str, ...], namespace: str, path: Path) -> None:
    kube.kubectl(*applier, "-n", namespace, "-f", str(path))


def scale(kube: Any, namespace: str, name: str, replicas: int) -> None:
    """What an HPA or KEDA does: a write through the FlinkJob's scale subresource."""
    kube.kubectl("scale", f"flinkjob/{name}", f"--replicas={replicas}", "-n", namespace)


def upgrade_savepoints(resource: dict[str, Any]) -> int:
    return sum(1 for s in resource["status"].get("savepointHistory") or [] if s["reason"] == "upgrade")


def change_events(flinkjobs: FlinkJobs, name: str) -> Counter[str]:
    return Counter(e["reason"] for e in flinkjobs.events(name) if e["reason"] in CHANGE_EVENTS)


def ready_at(parallelism: int) -> Any:
    def predicate(resource: dict[str, Any]) -> bool:
        return is_ready_at_current_generation(resource) and resource["status"].get("parallelism") == parallelism

    return predicate


def assert_nothing_changes(
    flinkjobs: FlinkJobs, flink_rest: Any, name: str, settled: dict[str, Any], events_before: Counter[str]
) -> None:
    """Watches the FlinkJob and Flink for OBSERVATION_WINDOW_SECONDS: same generation, same job at the
    same parallelism, Ready throughout, no new upgrade savepoint, no new change Event."""
    job_id, parallelism = settled["status"]["jobId"], settled["status"]["parallelism"]
    generation = settled["metadata"]["generation"]
    deadline = time.monotonic() + OBSERVATION_WINDOW_SECONDS
    looks = 0
    while time.monotonic() < deadline:
        now = flinkjobs.get(name)
        seen = (now["metadata"]["generation"], now["spec"]["parallelism"], now["status"]["jobId"])
        assert seen == (generation, parallelism, job_id), now["status"]
        assert is_ready_at_current_generation(now), now["status"]
        assert flink_rest.running_jobs() == [job_id]
        looks += 1
        time.sleep(1.0)
    assert looks >= 5
    after = flinkjobs.get(name)
    assert upgrade_savepoints(after) == upgrade_savepoints(settled), after["status"]["savepointHistory"]
    assert change_events(flinkjobs, name) == events_before, flinkjobs.events(name)
    assert flink_rest.job_parallelism(job_id) == parallelism


@pytest.mark.parametrize("applier", APPLIERS)
def test_a_reapplied_manifest_without_parallelism_keeps_the_autoscalers_parallelism_and_touches_no_job(
    applier: tuple[str, ...],
    operator: Any,
    flink: Any,
    flink_rest: Any,
    flinkjobs: FlinkJobs,
    test_job_jar: Path,
    kube: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The recommended setup: the autoscaler owns spec.parallelism, the manifest in Git leaves it out."""
    path = write(tmp_path / "flinkjob.yaml", manifest("autoscaled", flink.rest_url, test_job_jar))
    apply(kube, applier, namespace, path)
    first = flinkjobs.wait("autoscaled", ready_at(1), "Ready at the default parallelism 1")
    assert first["spec"]["parallelism"] == 1, "the CRD's default"

    scale(kube, namespace, "autoscaled", 2)
    scaled = flinkjobs.wait("autoscaled", ready_at(2), "Ready after the autoscaler's rescale to 2")
    assert scaled["status"]["jobId"] != first["status"]["jobId"], "a savepoint rescale on this cluster"
    assert upgrade_savepoints(scaled) == 1
    counter = flink_rest.wait_state_counter_at_least(scaled["status"]["jobId"], 1)
    events_before = change_events(flinkjobs, "autoscaled")

    apply(kube, applier, namespace, path)
    reapplied = flinkjobs.get("autoscaled")
    assert reapplied["spec"]["parallelism"] == 2, "the autoscaler's parallelism wins"
    assert reapplied["metadata"]["generation"] == scaled["metadata"]["generation"], "the spec was not written"

    assert_nothing_changes(flinkjobs, flink_rest, "autoscaled", scaled, events_before)
    assert flink_rest.wait_state_counter_at_least(scaled["status"]["jobId"], counter + 1) > counter


def test_a_reapplied_manifest_with_parallelism_puts_gits_value_back_with_one_coalesced_rescale(
    operator: Any,
    flink: Any,
    flink_rest: Any,
    flinkjobs: FlinkJobs,
    test_job_jar: Path,
    kube: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Git owns spec.parallelism (Argo CD's default client-side sync, no ignoreDifferences) and an
    autoscaler writes it too: each re-apply puts Git's value back. The operator rescales at most once
    per minRescaleIntervalSeconds, to the newest value, and does nothing once the two agree."""
    document = manifest(
        "git-owned", flink.rest_url, test_job_jar, parallelism=2, minRescaleIntervalSeconds=MIN_RESCALE_INTERVAL_SECONDS
    )
    path = write(tmp_path / "flinkjob.yaml", document)
    apply(kube, CLIENT_SIDE, namespace, path)
    flinkjobs.wait("git-owned", ready_at(2), "Ready at Git's parallelism 2")

    scale(kube, namespace, "git-owned", 3)
    scaled = flinkjobs.wait("git-owned", ready_at(3), "Ready after the autoscaler's rescale to 3")
    assert upgrade_savepoints(scaled) == 1

    apply(kube, CLIENT_SIDE, namespace, path)
    assert flinkjobs.get("git-owned")["spec"]["parallelism"] == 2, "Git's parallelism wins on a re-apply"
    scale(kube, namespace, "git-owned", 4)  # the autoscaler and the GitOps tool fight on
    apply(kube, CLIENT_SIDE, namespace, path)
    pending = flinkjobs.wait(
        "git-owned", lambda r: bool((r.get("status") or {}).get("rescalePendingUntil")), "a pending rescale"
    )
    assert pending["spec"]["parallelism"] == 2
    assert pending["status"]["jobId"] == scaled["status"]["jobId"], "the job is not touched while it waits"

    back = flinkjobs.wait("git-owned", ready_at(2), "Ready at Git's parallelism again", timeout=120)
    assert upgrade_savepoints(back) == 2, "one rescale back to 2; the 4 in between never ran"
    assert flink_rest.job_parallelism(back["status"]["jobId"]) == 2
    events_before = change_events(flinkjobs, "git-owned")

    apply(kube, CLIENT_SIDE, namespace, path)
    assert flinkjobs.get("git-owned")["metadata"]["generation"] == back["metadata"]["generation"]
    assert_nothing_changes(flinkjobs, flink_rest, "git-owned", back, events_before)


# -- Which parallelism a re-apply leaves: the apiserver alone (no Flink, no operator) ---------------

HANDOVER = "handover-to-autoscaler"


def _release_by_set_last_applied(kube: Any, namespace: str, path: Path) -> None:
    """Client-side apply: record the new manifest as last applied, so the next apply does not delete
    a field that only the old one had."""
    kube.kubectl("apply", "set-last-applied", "-n", namespace, "-f", str(path))


def _release_by_handover(kube: Any, namespace: str, path: Path) -> None:
    """Server-side apply: a second field manager applies the live value, so it shares the field and
    it outlives the GitOps manager's release (the Kubernetes server-side apply docs' HPA handover)."""
    live = json.loads(kube.kubectl("get", "-n", namespace, "-f", str(path), "-o", "json").stdout)
    patch = {
        "apiVersion": live["apiVersion"],
        "kind": live["kind"],
        "metadata": {"name": live["metadata"]["name"]},
        "spec": {"parallelism": live["spec"]["parallelism"]},
    }
    kube.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={HANDOVER}",
        "--validate=false",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(patch),
    )


@pytest.mark.parametrize(
    ("applier", "git_before", "git_after", "release", "wins"),
    [
        pytest.param(CLIENT_SIDE, None, None, None, "autoscaler", id="client-side-without-parallelism"),
        pytest.param(SERVER_SIDE_AS_FLUX, None, None, None, "autoscaler", id="server-side-without-parallelism"),
        pytest.param(CLIENT_SIDE, 2, 2, None, "git", id="client-side-with-parallelism"),
        pytest.param(SERVER_SIDE_AS_FLUX, 2, 2, None, "git", id="server-side-with-parallelism"),
        pytest.param(CLIENT_SIDE, 2, None, None, "default", id="client-side-dropping-parallelism"),
        pytest.param(SERVER_SIDE_AS_FLUX, 2, None, None, "default", id="server-side-dropping-parallelism"),
        pytest.param(
            CLIENT_SIDE, 2, None, _release_by_set_last_applied, "autoscaler", id="client-side-dropping-after-release"
        ),
        pytest.param(SERVER_SIDE_AS_FLUX, 2, None, _release_by_handover, "autoscaler", id="server-side-after-handover"),
    ],
)
def test_which_parallelism_a_reapply_leaves_after_the_autoscaler_wrote_it(
    applier: tuple[str, ...],
    git_before: int | None,
    git_after: int | None,
    release: Any,
    wins: str,
    crd: Path,
    kube: Any,
    own_namespace: str,
    tmp_path: Path,
) -> None:
    """The whole table of the README's "GitOps with an autoscaler", on the apiserver alone: in a
    namespace no operator serves, so nothing but the appliers and the scale subresource writes."""
    rest_url, jar = "http://127.0.0.1:9", tmp_path / "job.jar"
    before = manifest("fj", rest_url, jar, **({"parallelism": git_before} if git_before else {}))
    after = manifest("fj", rest_url, jar, **({"parallelism": git_after} if git_after else {}))
    apply(kube, applier, own_namespace, write(tmp_path / "before.yaml", before))
    scale(kube, own_namespace, "fj", 5)
    after_path = write(tmp_path / "after.yaml", after)
    if release is not None:
        release(kube, own_namespace, after_path)
    generation = _get(kube, own_namespace)["metadata"]["generation"]

    apply(kube, applier, own_namespace, after_path)
    apply(kube, applier, own_namespace, after_path)  # a GitOps tool re-applies on every interval

    live = _get(kube, own_namespace)
    expected = {"autoscaler": 5, "git": git_after, "default": 1}[wins]
    assert live["spec"]["parallelism"] == expected, live["metadata"].get("managedFields")
    if wins == "autoscaler":
        assert live["metadata"]["generation"] == generation, "a re-apply that keeps it writes no spec"
    else:
        assert live["metadata"]["generation"] == generation + 1, "one spec change, not one per re-apply"


def _get(kube: Any, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        kube.kubectl("get", "flinkjob/fj", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )
    return result


def test_the_autoscaled_sample_leaves_parallelism_to_the_crds_default(crd: Path, kube: Any, namespace: str) -> None:
    sample = REPO / "deploy" / "samples" / "autoscaled-job.yaml"
    assert "parallelism" not in yaml.safe_load(sample.read_text())["spec"]
    dry_run = kube.kubectl("apply", "--dry-run=server", "-o", "json", "-n", namespace, "-f", str(sample))
    assert json.loads(dry_run.stdout)["spec"]["parallelism"] == 1
