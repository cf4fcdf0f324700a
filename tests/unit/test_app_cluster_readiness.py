"""How a cluster's pods are read (flinkop.app_cluster_kube's pure parts): why a pod cannot start, the
readiness sentence for status, and the REST address setting."""

from __future__ import annotations

from typing import Any

import pytest
from flinkop.app_cluster_kube import (
    MAX_TERMINATION_MESSAGE,
    ClusterReadiness,
    ComponentReadiness,
    PodProblem,
    RestAddress,
    pod_problem,
    rest_address_from_env,
)


def pod(name: str = "jm-1", conditions: list[Any] | None = None, containers: list[Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"conditions": conditions or [], "containerStatuses": containers or []},
    }


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": "flink-main-container",
        "image": "localhost/x:1",
        "state": {"waiting": {"reason": reason, "message": message}},
        **extra,
    }


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"])
def test_an_image_that_cannot_be_pulled_is_image_missing_naming_the_image(reason: str) -> None:
    problem = pod_problem(pod(containers=[waiting(reason, "not present")]))
    assert problem == PodProblem(
        "jm-1", "ImageMissing", f"image localhost/x:1 cannot be pulled ({reason}): not present"
    )


def test_an_unschedulable_pod_says_the_schedulers_reason() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient memory.",
    }
    problem = pod_problem(pod(conditions=[condition]))
    assert problem == PodProblem("jm-1", "Unschedulable", "0/1 nodes are available: 1 Insufficient memory.")


def test_a_crash_loop_gives_the_exit_code_restarts_and_last_words_bounded() -> None:
    last = {"terminated": {"exitCode": 3, "reason": "Error", "message": "boom\n" * 1000}}
    problem = pod_problem(pod(containers=[waiting("CrashLoopBackOff", "back-off 10s", lastState=last, restartCount=4)]))
    assert problem is not None and problem.reason == "CrashLoopBackOff"
    assert "exited with code 3 (Error), 4 restarts; last words: boom boom" in problem.message
    assert len(problem.message) <= MAX_TERMINATION_MESSAGE + 200


def test_a_running_or_starting_pod_has_no_problem() -> None:
    running = {"name": "flink-main-container", "state": {"running": {"startedAt": "now"}}}
    assert pod_problem(pod(containers=[running])) is None
    assert pod_problem(pod(containers=[waiting("ContainerCreating")])) is None
    assert pod_problem({"metadata": {"name": "x"}}) is None


def test_a_huge_scheduler_message_is_bounded() -> None:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x" * 100_000}
    problem = pod_problem(pod(conditions=[condition]))
    assert problem is not None and len(problem.message) <= 500


def test_the_summary_counts_each_component_and_names_the_first_problem() -> None:
    readiness = ClusterReadiness(
        jobmanager=ComponentReadiness(1, 1, 1),
        taskmanager=ComponentReadiness(
            0, 2, 2, (PodProblem("tm-1", "Unschedulable", "no memory"), PodProblem("tm-2", "Unschedulable", "no"))
        ),
    )
    assert not readiness.all_ready
    assert readiness.summary() == (
        "JobManager 1/1 ready, TaskManagers 0/2 ready; pod tm-1: Unschedulable: no memory (and 1 more)"
    )


def test_a_missing_deployment_is_not_ready() -> None:
    readiness = ClusterReadiness(ComponentReadiness(0, 0, None), ComponentReadiness(0, 0, None))
    assert not readiness.all_ready
    assert readiness.summary() == "JobManager no Deployment, TaskManagers no Deployment"


def test_all_ready_when_every_wanted_pod_is_ready() -> None:
    assert ClusterReadiness(ComponentReadiness(1, 1, 1), ComponentReadiness(3, 3, 3)).all_ready


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, RestAddress.SERVICE), ({"FLINKOP_APP_REST_ADDRESS": "pod-ip"}, RestAddress.POD_IP),
     ({"FLINKOP_APP_REST_ADDRESS": " service "}, RestAddress.SERVICE)],
)  # fmt: skip
def test_the_rest_address_setting_defaults_to_the_service(environ: dict[str, str], expected: RestAddress) -> None:
    assert rest_address_from_env(environ) is expected


def test_a_wrong_rest_address_setting_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"FLINKOP_APP_REST_ADDRESS.*service or pod-ip"):
        rest_address_from_env({"FLINKOP_APP_REST_ADDRESS": "nodeport"})
