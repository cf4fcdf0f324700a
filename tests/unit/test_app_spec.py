"""Application mode's spec section (spec.cluster): exactly one of it and flinkRestUrl, its fields,
defaults, bounds and quantities, local:// jars, and how it enters the Deployment's fingerprint."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flinkop.spec import (
    MAX_CONFIG_ENTRIES,
    MAX_POD_TEMPLATE_CHARS,
    AppCluster,
    Deployment,
    Resources,
    SpecError,
    parse_quantity,
    parse_spec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

APP: dict[str, Any] = {
    "cluster": {
        "image": "registry.example/team/job:1.0",
        "flinkConfiguration": {"execution.checkpointing.savepoint-dir": "s3://bucket/sp"},
        "jobManager": {"resources": {"cpu": "500m", "memory": "1Gi"}},
        "taskManager": {"resources": {"cpu": 1, "memory": "1536Mi"}, "slots": 2},
    },
    "jar": {"uri": "local:///opt/flink/usrlib/job.jar"},
    "parallelism": 3,
}


def app(**cluster_fields: Any) -> dict[str, Any]:
    spec = copy.deepcopy(APP)
    for key, value in cluster_fields.items():
        if value is None:
            spec["cluster"].pop(key, None)
        else:
            spec["cluster"][key] = value
    return spec


def refused(spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as exc:
        parse_spec(spec)
    return str(exc.value)


def test_a_cluster_section_parses_into_the_deployment_with_defaults() -> None:
    parsed = parse_spec(APP)
    cluster = parsed.cluster
    assert cluster is not None and parsed.application_mode
    assert parsed.deployment.cluster is cluster
    assert parsed.flink_rest_url == ""
    assert cluster.image == "registry.example/team/job:1.0"
    assert cluster.image_pull_policy == "IfNotPresent"
    assert cluster.configuration == {"execution.checkpointing.savepoint-dir": "s3://bucket/sp"}
    assert cluster.jobmanager == Resources("500m", "1Gi")
    assert cluster.taskmanager == Resources("1", "1536Mi")
    assert cluster.slots == 2
    assert cluster.service_account is None and cluster.pod_template is None


def test_defaults_of_an_image_only_cluster_section() -> None:
    cluster = parse_spec({**APP, "cluster": {"image": "flink:2.3"}}).cluster
    assert cluster == AppCluster(image="flink:2.3")
    assert cluster.slots == 1
    assert cluster.jobmanager.flink_memory == "1600m" and cluster.taskmanager.flink_memory == "1728m"


def test_session_mode_still_parses_without_a_cluster() -> None:
    parsed = parse_spec({"flinkRestUrl": "http://flink:8081", "jar": {"uri": "https://r/j.jar"}})
    assert parsed.cluster is None and not parsed.application_mode
    assert parsed.flink_rest_url == "http://flink:8081"


def test_both_flink_rest_url_and_cluster_are_refused_naming_both() -> None:
    message = refused({**APP, "flinkRestUrl": "http://flink:8081"})
    assert "spec.flinkRestUrl" in message and "spec.cluster" in message and "exactly one" in message


def test_neither_flink_rest_url_nor_cluster_is_refused_naming_both() -> None:
    message = refused({"jar": {"uri": "https://r/j.jar"}})
    assert "spec.flinkRestUrl is required" in message and "spec.cluster" in message


def test_local_jar_is_refused_in_session_mode() -> None:
    message = refused({"flinkRestUrl": "http://flink:8081", "jar": {"uri": "local:///opt/job.jar"}})
    assert "spec.jar.uri" in message and "application mode" in message


def test_file_jar_is_refused_in_application_mode() -> None:
    message = refused({**APP, "jar": {"uri": "file:///jars/job.jar"}})
    assert "spec.jar.uri" in message and "local://" in message


@pytest.mark.parametrize("uri", ["local://opt/job.jar", "local:relative.jar", "local:///x.jar?y=1"])
def test_local_jar_must_be_an_absolute_path(uri: str) -> None:
    assert "local:///absolute" in refused({**APP, "jar": {"uri": uri}})


@pytest.mark.parametrize("uri", ["https://repo.example/job.jar", "http://repo/job.jar"])
def test_http_jars_are_allowed_in_application_mode(uri: str) -> None:
    assert parse_spec({**APP, "jar": {"uri": uri}}).deployment.jar_uri == uri


def test_s3_jar_in_application_mode_names_the_schemes_that_work() -> None:
    assert "local://, http:// or https://" in refused({**APP, "jar": {"uri": "s3://b/j.jar"}})


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        pytest.param({"image": None}, "spec.cluster.image is required", id="image-missing"),
        pytest.param({"image": ""}, "spec.cluster.image is required", id="image-empty"),
        pytest.param({"image": 5}, "spec.cluster.image", id="image-number"),
        pytest.param({"image": "flink:2.3 --privileged"}, "spec.cluster.image", id="image-space"),
        pytest.param({"image": "a" * 513}, "spec.cluster.image", id="image-too-long"),
        pytest.param({"imagePullPolicy": "Sometimes"}, "spec.cluster.imagePullPolicy", id="pull-policy"),
        pytest.param({"flinkConfiguration": ["a"]}, "spec.cluster.flinkConfiguration", id="config-list"),
        pytest.param({"flinkConfiguration": {"a": 1}}, "spec.cluster.flinkConfiguration.a", id="config-number"),
        pytest.param({"flinkConfiguration": {"a b": "1"}}, "spec.cluster.flinkConfiguration key", id="config-key"),
        pytest.param({"flinkConfiguration": {"k" * 201: "1"}}, "spec.cluster.flinkConfiguration key", id="key-long"),
        pytest.param({"flinkConfiguration": {"a": "x" * 4097}}, "spec.cluster.flinkConfiguration.a", id="value-long"),
        pytest.param({"flinkConfiguration": {"a": "x\ny: 1"}}, "control characters", id="value-newline"),
        pytest.param(
            {"flinkConfiguration": {f"k{i}": "v" for i in range(MAX_CONFIG_ENTRIES + 1)}},
            f"at most {MAX_CONFIG_ENTRIES}",
            id="config-entries",
        ),
        pytest.param(
            {"flinkConfiguration": {f"k{i}": "v" * 4000 for i in range(20)}}, "at most 65536", id="config-total"
        ),
        pytest.param({"jobManager": "big"}, "spec.cluster.jobManager must be an object", id="jm-not-object"),
        pytest.param({"jobManager": {"replicas": 2}}, "spec.cluster.jobManager.replicas", id="jm-replicas"),
        pytest.param({"jobManager": {"replicas": True}}, "spec.cluster.jobManager.replicas", id="jm-replicas-bool"),
        pytest.param({"taskManager": {"slots": 0}}, "spec.cluster.taskManager.slots", id="slots-zero"),
        pytest.param({"taskManager": {"slots": "2"}}, "spec.cluster.taskManager.slots", id="slots-string"),
        pytest.param({"taskManager": {"slots": 257}}, "spec.cluster.taskManager.slots", id="slots-too-many"),
        pytest.param({"serviceAccount": "Flink_SA"}, "spec.cluster.serviceAccount", id="service-account"),
        pytest.param({"podTemplate": "yes"}, "spec.cluster.podTemplate must be an object", id="template-string"),
        pytest.param({"podTemplate": {"replicas": 3}}, "spec.cluster.podTemplate has replicas", id="template-field"),
        pytest.param(
            {"podTemplate": {"spec": {"containers": [{"image": "x"}]}}},
            "spec.cluster.podTemplate.spec.containers",
            id="template-container-unnamed",
        ),
        pytest.param(
            {"podTemplate": {"metadata": {"labels": {"a": 1}}}},
            "spec.cluster.podTemplate.metadata.labels",
            id="template-label-number",
        ),
        pytest.param(
            {"podTemplate": {"metadata": {"annotations": {"a": "x" * MAX_POD_TEMPLATE_CHARS}}}},
            f"at most {MAX_POD_TEMPLATE_CHARS}",
            id="template-too-big",
        ),
    ],
)
def test_invalid_cluster_field_is_refused_naming_it(fields: dict[str, Any], names: str) -> None:
    assert names in refused(app(**fields))


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("taskmanager.numberOfTaskSlots", "spec.cluster.taskManager.slots"),
        ("parallelism.default", "spec.parallelism"),
        ("jobmanager.memory.process.size", "spec.cluster.jobManager.resources.memory"),
        ("taskmanager.memory.process.size", "spec.cluster.taskManager.resources.memory"),
        ("execution.savepoint.path", "spec.initialSavepointPath"),
        ("execution.savepoint-restore.allow-non-restored-state", "spec.allowNonRestoredState"),
        ("jobmanager.rpc.address", "Service"),
        ("rest.port", "8081"),
    ],
)
def test_configuration_the_operator_sets_is_refused_saying_where_it_goes(key: str, hint: str) -> None:
    message = refused(app(flinkConfiguration={key: "1"}))
    assert f"spec.cluster.flinkConfiguration sets {key}" in message and hint in message


@pytest.mark.parametrize(
    ("resources", "names"),
    [
        ({"cpu": "half"}, "spec.cluster.taskManager.resources.cpu"),
        ({"cpu": "0"}, "spec.cluster.taskManager.resources.cpu"),
        ({"cpu": "-1"}, "spec.cluster.taskManager.resources.cpu"),
        ({"cpu": "2000"}, "spec.cluster.taskManager.resources.cpu"),
        ({"cpu": True}, "spec.cluster.taskManager.resources.cpu"),
        ({"memory": "1GB"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": "1 Gi"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": "100Ki"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": "17Ti"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": "1500.5"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": "1e400"}, "spec.cluster.taskManager.resources.memory"),
        ({"memory": ["1Gi"]}, "spec.cluster.taskManager.resources.memory"),
    ],
)
def test_bad_resource_quantities_are_refused_naming_the_field(resources: dict[str, Any], names: str) -> None:
    assert names in refused(app(taskManager={"resources": resources}))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        (2, "2"),
        ("1.5", "1.5"),
        ("1Gi", str(2**30)),
        ("1536Mi", str(1536 * 2**20)),
        ("1G", "1000000000"),
        ("2e9", "2000000000"),
        ("2E3", "2000"),
        ("1k", "1000"),
        (".5", "0.5"),
    ],
)
def test_kubernetes_quantities_are_read_as_kubernetes_does(text: Any, value: str) -> None:
    assert parse_quantity(text, "f") == type(parse_quantity(1, "f"))(value)


def test_memory_becomes_a_flink_size_in_whole_mebibytes() -> None:
    assert Resources("1", "1536Mi").flink_memory == "1536m"
    assert Resources("1", "2G").flink_memory == "1907m"  # 2e9 bytes, rounded down


@pytest.mark.parametrize(("parallelism", "slots", "taskmanagers"), [(1, 1, 1), (3, 2, 2), (4, 2, 2), (5, 4, 2)])
def test_taskmanagers_are_parallelism_over_slots_rounded_up(parallelism: int, slots: int, taskmanagers: int) -> None:
    spec = {**app(taskManager={"slots": slots}), "parallelism": parallelism}
    assert parse_spec(spec).deployment.taskmanagers == taskmanagers


def test_too_many_taskmanagers_are_refused_saying_to_raise_the_slots() -> None:
    message = refused({**app(taskManager={"slots": 1}), "parallelism": 5000})
    assert "spec.parallelism" in message and "slots" in message


def test_rest_auth_and_tls_are_refused_in_application_mode() -> None:
    assert "spec.restAuthSecretRef" in refused({**APP, "restAuthSecretRef": {"name": "s"}})
    assert "spec.tls" in refused({**APP, "tls": {"insecureSkipVerify": True}})


def test_a_sha256_for_a_local_jar_is_refused_as_it_cannot_be_checked() -> None:
    said = refused({**APP, "jar": {"uri": "local:///opt/flink/job/job.jar", "sha256": "a" * 64}})
    assert "spec.jar.sha256" in said and "local://" in said
    parse_spec({**APP, "jar": {"uri": "https://jars.example.com/job.jar", "sha256": "a" * 64}})


def test_pod_template_is_kept_as_given() -> None:
    template = {"metadata": {"labels": {"team": "a"}}, "spec": {"nodeSelector": {"disk": "ssd"}}}
    assert parse_spec(app(podTemplate=template)).cluster.pod_template == template  # type: ignore[union-attr]


def test_the_deployment_round_trips_through_its_dict_with_the_cluster() -> None:
    template = {"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}
    deployment = parse_spec(app(podTemplate=template, serviceAccount="flink")).deployment
    again = Deployment.from_dict(deployment.to_dict())
    assert again == deployment
    assert again.fingerprint == deployment.fingerprint


def test_a_session_mode_fingerprint_has_no_cluster_key_so_it_is_unchanged() -> None:
    deployment = parse_spec({"flinkRestUrl": "http://f:8081", "jar": {"uri": "https://r/j.jar"}}).deployment
    assert "cluster" not in deployment.to_dict()
    # The value the fingerprint had before application mode existed, for this same spec (computed with
    # the spec module of the commit before): running jobs are not seen as changed by an operator upgrade.
    assert deployment.fingerprint == "ebafa6e4c75c4e1b"


@pytest.mark.parametrize(
    "change",
    [
        {"image": "registry.example/team/job:1.1"},
        {"flinkConfiguration": {"execution.checkpointing.savepoint-dir": "s3://bucket/other"}},
        {"jobManager": {"resources": {"cpu": "1", "memory": "1Gi"}}},
        {"taskManager": {"resources": {"cpu": 1, "memory": "2Gi"}, "slots": 2}},
        {"taskManager": {"resources": {"cpu": 1, "memory": "1536Mi"}, "slots": 3}},
        {"serviceAccount": "other"},
        {"podTemplate": {"spec": {"nodeSelector": {"a": "b"}}}},
        {"imagePullPolicy": "Always"},
    ],
)
def test_a_change_to_the_cluster_changes_the_fingerprint_and_is_not_a_rescale(change: dict[str, Any]) -> None:
    before = parse_spec(APP).deployment
    after = parse_spec({**app(**change), "parallelism": 4}).deployment
    same_parallelism = parse_spec(app(**change)).deployment
    assert same_parallelism.fingerprint != before.fingerprint
    assert not after.only_parallelism_differs(before)


def test_an_image_change_is_a_program_change_and_a_configuration_change_is_not() -> None:
    before = parse_spec(APP).deployment
    image = parse_spec(app(image="registry.example/team/job:2.0")).deployment
    config = parse_spec(app(flinkConfiguration={"pipeline.max-parallelism": "128"})).deployment
    assert image.program_changed(before)
    assert not config.program_changed(before)


def test_a_parallelism_change_alone_is_a_rescale_in_application_mode() -> None:
    before = parse_spec(APP).deployment
    after = parse_spec({**APP, "parallelism": 6}).deployment
    assert after.only_parallelism_differs(before)
    assert (before.taskmanagers, after.taskmanagers) == (2, 3)


def test_moving_between_session_and_application_mode_is_a_program_change() -> None:
    session = parse_spec({"flinkRestUrl": "http://f:8081", "jar": {"uri": "https://r/j.jar"}}).deployment
    application = parse_spec({**APP, "jar": {"uri": "https://r/j.jar"}, "parallelism": 1}).deployment
    assert application.program_changed(session) and session.program_changed(application)


@pytest.mark.parametrize(
    ("spec_dir", "config", "expected"),
    [
        ("s3://a/sp", {"execution.checkpointing.savepoint-dir": "s3://b/sp"}, "s3://a/sp"),
        (None, {"execution.checkpointing.savepoint-dir": "s3://b/sp"}, "s3://b/sp"),
        (None, {"state.savepoints.dir": "s3://c/sp"}, "s3://c/sp"),
        (None, {}, None),
    ],
)
def test_the_savepoint_directory_comes_from_the_spec_then_the_configuration(
    spec_dir: str | None, config: dict[str, str], expected: str | None
) -> None:
    spec = {**app(flinkConfiguration=config)}
    if spec_dir:
        spec["savepointDirectory"] = spec_dir
    parsed = parse_spec(spec)
    assert parsed.cluster is not None
    assert parsed.cluster.savepoint_directory(parsed.savepoint_directory) == expected


CLUSTER_FIELDS = (
    "image",
    "imagePullPolicy",
    "flinkConfiguration",
    "jobManager",
    "taskManager",
    "serviceAccount",
    "podTemplate",
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(CLUSTER_FIELDS) | st.text(max_size=8), JSON, max_size=8))
def test_random_cluster_sections_are_parsed_or_refused_naming_spec_cluster(section: dict[str, Any]) -> None:
    try:
        parsed = parse_spec({**APP, "cluster": {"image": "flink:2.3", **section}})
    except SpecError as exc:
        assert "spec.cluster" in str(exc) or "spec.parallelism" in str(exc), str(exc)
        assert len(str(exc)) < 1000
    else:
        assert parsed.cluster is not None
        # What parsed is usable: it round-trips and builds a fingerprint.
        assert Deployment.from_dict(parsed.deployment.to_dict()) == parsed.deployment


def test_the_webhook_admits_application_mode_and_refuses_a_mode_change_while_the_job_runs() -> None:
    from flinkop.admission import refusal as admission_refusal

    app = {"cluster": {"image": "flink:2.3"}, "jar": {"uri": "local:///opt/flink/job/job.jar"}, "parallelism": 1}
    session = {"flinkRestUrl": "http://flink:8081", "jar": {"uri": "https://jars.example.com/j.jar"}, "parallelism": 1}
    assert admission_refusal("CREATE", None, {"spec": app}) is None
    running = {"jobId": "a" * 32, "phase": "Running", "jobState": "RUNNING"}
    for old, new in ((session, app), (app, session)):
        said = admission_refusal("UPDATE", {"spec": old, "status": running}, {"spec": new})
        assert said is not None and "spec.state: suspended" in said and "a" * 32 in said
        suspended = {**running, "phase": "Suspended", "jobState": "FINISHED"}
        assert admission_refusal("UPDATE", {"spec": old, "status": suspended}, {"spec": new}) is None
    # Failed on its own cluster, whose objects are still there: suspended first (that removes them).
    failed = {**running, "phase": "Failed", "jobState": "FAILED"}
    said = admission_refusal("UPDATE", {"spec": app, "status": failed}, {"spec": session})
    assert said is not None and "spec.state: suspended" in said and "objects stay" in said
    # Failed on a session cluster: nothing of it is left to remove; the move is admitted.
    assert admission_refusal("UPDATE", {"spec": session, "status": failed}, {"spec": app}) is None
