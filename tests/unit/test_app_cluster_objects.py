"""The objects of an application-mode cluster (flinkop.app_cluster): names, ownership, labels, config.yaml,
the JobManager's command line, TaskManager count, and the pod template merge."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from flinkop.app_cluster import (
    CONF_DIR,
    FLINKJOB_LABEL,
    GENERATION_LABEL,
    JOB_ID_LABEL,
    MAIN_CONTAINER,
    ClusterBuildError,
    ClusterStart,
    build_cluster,
    cluster_names,
    config_yaml_of,
    merge_pod_template,
)
from flinkop.spec import parse_spec

JOB_ID = "0123456789abcdef0123456789abcdef"
UID = "5f0c7a8e-1111-2222-3333-444455556666"
SPEC: dict[str, Any] = {
    "cluster": {
        "image": "localhost/job:1",
        "flinkConfiguration": {"state.backend.type": "hashmap", "execution.checkpointing.interval": "2s"},
        "jobManager": {"resources": {"cpu": "500m", "memory": "1Gi"}},
        "taskManager": {"resources": {"cpu": "1", "memory": "1536Mi"}, "slots": 2},
    },
    "jar": {"uri": "local:///opt/flink/job/job.jar"},
    "entryClass": "io.example.Job",
    "args": ["--rate", "10"],
    "parallelism": 3,
    "savepointDirectory": "file:///data/sp",
}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def build(spec: dict[str, Any] = SPEC, start: ClusterStart | None = None, name: str = "counter") -> Any:
    return build_cluster(
        name=name, namespace="team-a", uid=UID, spec=parse_spec(spec), start=start or ClusterStart(JOB_ID)
    )


def with_cluster(**fields: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["cluster"].update(fields)
    return spec


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


def main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec(deployment)["containers"] if c["name"] == MAIN_CONTAINER)


def test_four_objects_named_after_the_flinkjob_in_apply_order() -> None:
    objects = build()
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects.in_order()]
    assert kinds == [
        ("ConfigMap", "counter-config"),
        ("Service", "counter-jobmanager"),
        ("Deployment", "counter-jobmanager"),
        ("Deployment", "counter-taskmanager"),
    ]
    assert all(o["metadata"]["namespace"] == "team-a" for o in objects.in_order())


def test_every_object_is_owned_by_the_flinkjob_as_its_controller() -> None:
    for obj in build().in_order():
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "flinkop.io/v1alpha1",
                "kind": "FlinkJob",
                "name": "counter",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_objects_and_pods_carry_the_flinkjob_generation_and_job_id_labels() -> None:
    objects = build()
    generation = parse_spec(SPEC).deployment.fingerprint
    assert objects.generation == generation
    for obj in objects.in_order():
        labels = obj["metadata"]["labels"]
        assert labels[FLINKJOB_LABEL] == "counter"
        assert labels[GENERATION_LABEL] == generation
        assert labels[JOB_ID_LABEL] == JOB_ID
    for deployment in (objects.jobmanager, objects.taskmanager):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[GENERATION_LABEL] == generation and labels[JOB_ID_LABEL] == JOB_ID
        # The selector (immutable) names only what every start shares, and the pods match it.
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert JOB_ID_LABEL not in selector and GENERATION_LABEL not in selector
        assert selector.items() <= labels.items()


def test_a_cluster_change_changes_the_generation_label_and_a_new_start_the_job_id() -> None:
    first = build()
    image = build(with_cluster(image="localhost/job:2"))
    restart = build(start=ClusterStart("f" * 32, "file:///data/sp/savepoint-1"))
    assert image.generation != first.generation
    assert restart.generation == first.generation and restart.job_id != first.job_id


@pytest.mark.parametrize(
    "name",
    ["counter", "a" * 63, "my.job.v1", "9lives", "x" * 253, "UPPER", "ends-"],
)
def test_names_are_dns_labels_of_at_most_63_characters(name: str) -> None:
    names = cluster_names(name)
    for value in (names.config_map, names.service, names.jobmanager, names.taskmanager):
        assert len(value) <= 63 and DNS_1035.match(value), value
    assert len(names.flinkjob_label) <= 63


def test_names_are_deterministic_and_long_names_differ_by_hash() -> None:
    assert cluster_names("x" * 100) == cluster_names("x" * 100)
    assert cluster_names("x" * 100).base != cluster_names("x" * 99 + "y").base
    assert cluster_names("my.job").base != cluster_names("my-job").base  # a dot is not silently a dash


def test_config_yaml_holds_the_spec_options_and_what_the_operator_sets() -> None:
    config = config_yaml_of(build(start=ClusterStart(JOB_ID, "file:///data/sp/savepoint-1", True)))
    assert config["state.backend.type"] == "hashmap"
    assert config["execution.checkpointing.interval"] == "2s"
    assert config["jobmanager.rpc.address"] == "counter-jobmanager.team-a"
    assert config["jobmanager.rpc.port"] == 6123
    assert config["rest.port"] == 8081
    assert config["blob.server.port"] == 6124
    assert config["taskmanager.rpc.port"] == 6122  # the port the TaskManager container declares
    assert config["parallelism.default"] == 3
    assert config["taskmanager.numberOfTaskSlots"] == 2
    assert config["jobmanager.memory.process.size"] == "1024m"
    assert config["taskmanager.memory.process.size"] == "1536m"
    assert config["$internal.pipeline.job-id"] == JOB_ID
    assert config["execution.savepoint.path"] == "file:///data/sp/savepoint-1"
    assert config["execution.savepoint-restore.allow-non-restored-state"] is True
    assert config["execution.checkpointing.savepoint-dir"] == "file:///data/sp"  # from spec.savepointDirectory
    assert config["execution.shutdown-on-application-finish"] is False


def test_a_fresh_start_has_no_savepoint_path() -> None:
    config = config_yaml_of(build())
    assert "execution.savepoint.path" not in config
    assert config["execution.savepoint-restore.allow-non-restored-state"] is False


def test_the_configuration_savepoint_directory_is_kept_over_the_spec_default() -> None:
    spec = with_cluster(flinkConfiguration={"execution.checkpointing.savepoint-dir": "s3://b/sp"})
    assert config_yaml_of(build(spec))["execution.checkpointing.savepoint-dir"] == "s3://b/sp"


def test_the_jobmanager_runs_standalone_job_with_jar_class_job_id_restore_flags_then_args() -> None:
    objects = build(start=ClusterStart(JOB_ID, "file:///data/sp/savepoint-1", True))
    assert main_container(objects.jobmanager)["args"] == [
        "standalone-job",
        "--jars", "local:///opt/flink/job/job.jar",
        "--job-id", JOB_ID,
        "--job-classname", "io.example.Job",
        "--fromSavepoint", "file:///data/sp/savepoint-1",
        "--allowNonRestoredState",
        "--rate", "10",
    ]  # fmt: skip


def test_no_restore_flags_without_a_savepoint_and_no_class_without_an_entry_class() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "entryClass"}
    args = main_container(build(spec).jobmanager)["args"]
    assert "--fromSavepoint" not in args and "--allowNonRestoredState" not in args
    assert "--job-classname" not in args


def test_taskmanagers_are_parallelism_over_slots_rounded_up() -> None:
    assert build().taskmanager["spec"]["replicas"] == 2  # 3 / 2
    assert build({**SPEC, "parallelism": 4}).taskmanager["spec"]["replicas"] == 2
    assert build({**SPEC, "parallelism": 5}).taskmanager["spec"]["replicas"] == 3
    assert build().jobmanager["spec"]["replicas"] == 1


def test_taskmanagers_advertise_their_pod_ip_and_are_named_by_their_pod() -> None:
    container = main_container(build().taskmanager)
    assert container["args"] == ["taskmanager", "-Dtaskmanager.host=$(POD_IP)", "-Dtaskmanager.resource-id=$(POD_NAME)"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_IP": "status.podIP", "POD_NAME": "metadata.name"}
    assert container["ports"] == [{"name": "rpc", "containerPort": 6122}]


def test_pods_mount_the_config_map_as_flink_conf_and_get_the_resources_and_image() -> None:
    objects = build()
    for deployment, cpu, memory in ((objects.jobmanager, "500m", "1Gi"), (objects.taskmanager, "1", "1536Mi")):
        container = main_container(deployment)
        assert container["image"] == "localhost/job:1"
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["resources"] == {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        }
        assert {"name": "flink-config", "mountPath": CONF_DIR, "readOnly": True} in container["volumeMounts"]
        assert {"name": "flink-config", "configMap": {"name": "counter-config"}} in pod_spec(deployment)["volumes"]
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_service_is_headless_on_rest_rpc_and_blob_selecting_this_starts_jobmanager() -> None:
    service = build().service
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"rest": 8081, "rpc": 6123, "blob": 6124}
    assert service["spec"]["selector"] == {
        FLINKJOB_LABEL: "counter",
        "flinkop.io/component": "jobmanager",
        JOB_ID_LABEL: JOB_ID,
    }


def test_a_service_account_is_set_on_both_pods() -> None:
    objects = build(with_cluster(serviceAccount="flink"))
    assert pod_spec(objects.jobmanager)["serviceAccountName"] == "flink"
    assert pod_spec(objects.taskmanager)["serviceAccountName"] == "flink"
    assert "serviceAccountName" not in pod_spec(build().jobmanager)


def test_the_pod_template_is_merged_into_both_pods_with_the_operators_fields_winning() -> None:
    template = {
        "metadata": {"labels": {"team": "a", FLINKJOB_LABEL: "spoofed"}, "annotations": {"note": "x"}},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "securityContext": {"fsGroup": 9999},
            "volumes": [{"name": "data", "hostPath": {"path": "/data"}}, {"name": "flink-config", "emptyDir": {}}],
            "containers": [
                {
                    "name": MAIN_CONTAINER,
                    "image": "ignored:1",
                    "env": [{"name": "EXTRA", "value": "1"}, {"name": "POD_IP", "value": "spoofed"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "securityContext": {"runAsNonRoot": True},
                },
                {"name": "sidecar", "image": "busybox"},
            ],
            "initContainers": [{"name": "init", "image": "busybox"}],
        },
    }
    objects = build(with_cluster(podTemplate=template))
    for deployment in (objects.jobmanager, objects.taskmanager):
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"]["team"] == "a"
        assert pod["metadata"]["labels"][FLINKJOB_LABEL] == "counter"
        assert pod["metadata"]["annotations"]["note"] == "x"
        spec = pod["spec"]
        assert spec["nodeSelector"] == {"disk": "ssd"} and spec["securityContext"] == {"fsGroup": 9999}
        assert [c["name"] for c in spec["containers"]] == [MAIN_CONTAINER, "sidecar"]
        assert [c["name"] for c in spec["initContainers"]] == ["init"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"] == {"name": "data", "hostPath": {"path": "/data"}}
        assert volumes["flink-config"] == {"name": "flink-config", "configMap": {"name": "counter-config"}}
        container = main_container(deployment)
        assert container["image"] == "localhost/job:1"
        assert container["securityContext"] == {"runAsNonRoot": True}
        env = {e["name"]: e for e in container["env"]}
        assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data", CONF_DIR]


def test_merge_without_a_template_is_the_operators_pod() -> None:
    pod = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}
    assert merge_pod_template(None, pod) is pod


def test_a_session_mode_spec_has_no_cluster_to_build() -> None:
    spec = parse_spec({"flinkRestUrl": "http://f:8081", "jar": {"uri": "https://r/j.jar"}})
    with pytest.raises(ClusterBuildError, match="session cluster"):
        build_cluster(name="a", namespace="n", uid=UID, spec=spec, start=ClusterStart(JOB_ID))


@pytest.mark.parametrize("job_id", ["", "xyz", JOB_ID.upper(), JOB_ID + "0"])
def test_a_job_id_that_is_not_32_hex_digits_is_refused(job_id: str) -> None:
    with pytest.raises(ClusterBuildError, match="job id"):
        ClusterStart(job_id)


def test_a_savepoint_path_with_spaces_is_refused() -> None:
    with pytest.raises(ClusterBuildError, match="savepoint path"):
        ClusterStart(JOB_ID, "file:///a b")


def test_the_objects_are_the_same_for_the_same_inputs() -> None:
    assert build().in_order() == build().in_order()
