"""Spec parsing: the contract's defaults, and the checks the CRD schema cannot make on Kubernetes 1.20."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flinkop.spec import Deployment, FlinkJobSpec, SpecError, parse_spec

BASE: dict[str, Any] = {
    "flinkRestUrl": "http://flink:8081",
    "jar": {"uri": "https://repo.example/job-1.0.jar"},
    "parallelism": 2,
}


def parse(**fields: Any) -> FlinkJobSpec:
    raw = dict(BASE)
    raw.update(fields)
    return parse_spec(raw)


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


def test_minimal_spec_gets_the_contract_defaults() -> None:
    spec = parse()
    assert spec.flink_rest_url == "http://flink:8081"
    assert spec.deployment == Deployment(
        jar_uri="https://repo.example/job-1.0.jar",
        jar_sha256=None,
        entry_class=None,
        args=(),
        parallelism=2,
        restart_nonce=None,
    )
    assert spec.state == "running"
    assert spec.upgrade_mode == "savepoint"
    assert spec.savepoint_mode == "stop"
    assert spec.drain is False
    assert spec.savepoint_directory is None
    assert spec.allow_non_restored_state == "Never"
    assert spec.restore_failure_policy == "Rollback"
    assert spec.initial_savepoint_path is None
    assert spec.savepoint_timeout_seconds == 600
    assert spec.savepoint_nonce is None


def test_every_field_is_read_when_given() -> None:
    spec = parse(
        flinkRestUrl="https://flink.example:8443/",
        jar={"uri": "file:///jars/job.jar", "sha256": "AB" * 32},
        entryClass="io.example.Main",
        args=["--input", "kafka"],
        parallelism=4,
        state="suspended",
        upgradeMode="stateless",
        savepointMode="cancel",
        savepointDirectory="s3://bucket/savepoints",
        allowNonRestoredState="OnJarChange",
        restoreFailurePolicy="Fail",
        initialSavepointPath="s3://bucket/savepoints/savepoint-1",
        savepointTimeoutSeconds=30,
        restartNonce=3,
        savepointNonce=7,
    )
    assert spec.flink_rest_url == "https://flink.example:8443", "a trailing slash is dropped"
    assert spec.deployment == Deployment(
        jar_uri="file:///jars/job.jar",
        jar_sha256="ab" * 32,  # normalised to lower case
        entry_class="io.example.Main",
        args=("--input", "kafka"),
        parallelism=4,
        restart_nonce=3,
    )
    assert (spec.state, spec.upgrade_mode, spec.savepoint_mode) == ("suspended", "stateless", "cancel")
    assert spec.savepoint_directory == "s3://bucket/savepoints"
    assert (spec.allow_non_restored_state, spec.restore_failure_policy) == ("OnJarChange", "Fail")
    assert spec.initial_savepoint_path == "s3://bucket/savepoints/savepoint-1"
    assert spec.savepoint_timeout_seconds == 30
    assert spec.savepoint_nonce == 7


@pytest.mark.parametrize("uri", ["file:///jars/job.jar", "http://repo/job.jar", "https://repo/job.jar"])
def test_jar_uri_accepts_file_http_and_https(uri: str) -> None:
    assert parse(jar={"uri": uri}).deployment.jar_uri == uri


def test_drain_is_accepted_with_stop_mode() -> None:
    spec = parse(drain=True, savepointMode="stop")
    assert spec.drain is True


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        pytest.param({"drain": True, "savepointMode": "cancel"}, "spec.drain", id="drain-with-cancel"),
        pytest.param({"jar": {"uri": BASE["jar"]["uri"], "sha256": "abc"}}, "spec.jar.sha256", id="sha256-short"),
        pytest.param({"jar": {"uri": BASE["jar"]["uri"], "sha256": "g" * 64}}, "spec.jar.sha256", id="sha256-not-hex"),
        pytest.param({"jar": {"uri": BASE["jar"]["uri"], "sha256": "a" * 65}}, "spec.jar.sha256", id="sha256-long"),
        pytest.param({"jar": {"uri": "s3://bucket/job.jar"}}, "spec.jar.uri", id="jar-uri-s3"),
        pytest.param({"jar": {"uri": "ftp://repo/job.jar"}}, "spec.jar.uri", id="jar-uri-ftp"),
        pytest.param({"jar": {"uri": "/jars/job.jar"}}, "spec.jar.uri", id="jar-uri-no-scheme"),
        pytest.param({"jar": {"uri": ""}}, "spec.jar.uri", id="jar-uri-empty"),
        pytest.param({"jar": {}}, "spec.jar.uri", id="jar-uri-missing"),
        pytest.param({"flinkRestUrl": "flink:8081"}, "spec.flinkRestUrl", id="rest-url-no-scheme"),
        pytest.param({"flinkRestUrl": "ftp://flink:8081"}, "spec.flinkRestUrl", id="rest-url-ftp"),
        pytest.param({"flinkRestUrl": ""}, "spec.flinkRestUrl", id="rest-url-empty"),
        pytest.param({"parallelism": 0}, "spec.parallelism", id="parallelism-zero"),
        pytest.param({"parallelism": -1}, "spec.parallelism", id="parallelism-negative"),
        pytest.param({"parallelism": "2"}, "spec.parallelism", id="parallelism-string"),
        pytest.param({"parallelism": 1.5}, "spec.parallelism", id="parallelism-float"),
        pytest.param({"parallelism": True}, "spec.parallelism", id="parallelism-bool"),
        pytest.param({"parallelism": None}, "spec.parallelism", id="parallelism-missing"),
        pytest.param({"args": "--a b"}, "spec.args", id="args-not-a-list"),
        pytest.param({"args": ["--n", 3]}, "spec.args", id="args-not-strings"),
        pytest.param({"state": "paused"}, "spec.state", id="state"),
        pytest.param({"upgradeMode": "rolling"}, "spec.upgradeMode", id="upgrade-mode"),
        pytest.param({"savepointMode": "kill"}, "spec.savepointMode", id="savepoint-mode"),
        pytest.param({"allowNonRestoredState": "Sometimes"}, "spec.allowNonRestoredState", id="allow-non-restored"),
        pytest.param({"restoreFailurePolicy": "Ignore"}, "spec.restoreFailurePolicy", id="restore-failure-policy"),
        pytest.param({"savepointDirectory": "/data/savepoints"}, "spec.savepointDirectory", id="sp-dir-no-scheme"),
        pytest.param({"initialSavepointPath": "/data/sp/s-1"}, "spec.initialSavepointPath", id="initial-sp-no-scheme"),
        pytest.param({"savepointTimeoutSeconds": 0}, "spec.savepointTimeoutSeconds", id="timeout-zero"),
        pytest.param({"savepointTimeoutSeconds": "600"}, "spec.savepointTimeoutSeconds", id="timeout-string"),
    ],
)
def test_invalid_spec_is_refused_naming_the_field(fields: dict[str, Any], names: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse(**fields)
    assert names in str(exc.value)


@pytest.mark.parametrize("key", ["flinkRestUrl", "jar"])
def test_required_field_missing_is_refused_naming_it(key: str) -> None:
    with pytest.raises(SpecError, match=f"spec.{key}"):
        parse_spec(without(key))


def test_parallelism_left_out_is_one_as_the_crd_defaults_it() -> None:
    assert parse_spec(without("parallelism")).deployment.parallelism == 1


def test_bad_jar_scheme_message_says_which_schemes_work() -> None:
    with pytest.raises(SpecError) as exc:
        parse(jar={"uri": "s3://bucket/job.jar"})
    assert "'s3'" in str(exc.value)
    assert "file://, http:// or https://" in str(exc.value)


# -- Deployment: what is an upgrade, and what OnJarChange looks at ----------------------------

DEP = parse(entryClass="io.example.Main", args=["--a"], jar={"uri": BASE["jar"]["uri"], "sha256": "ab" * 32}).deployment


@pytest.mark.parametrize(
    ("changed", "program_changed"),
    [
        pytest.param(replace(DEP, jar_uri="https://repo.example/job-2.0.jar"), True, id="jar-uri"),
        pytest.param(replace(DEP, jar_sha256="cd" * 32), True, id="jar-sha256"),
        pytest.param(replace(DEP, entry_class="io.example.Other"), True, id="entry-class"),
        pytest.param(replace(DEP, args=("--b",)), True, id="args"),
        pytest.param(replace(DEP, parallelism=8), False, id="parallelism-only"),
        pytest.param(replace(DEP, restart_nonce=1), False, id="restart-nonce-only"),
    ],
)
def test_every_deployment_field_changes_the_fingerprint_and_only_program_fields_count_as_program_change(
    changed: Deployment, program_changed: bool
) -> None:
    assert changed.fingerprint != DEP.fingerprint
    assert changed.program_changed(DEP) is program_changed
    assert DEP.program_changed(changed) is program_changed


def test_fingerprint_is_stable_across_a_status_round_trip() -> None:
    again = Deployment.from_dict(DEP.to_dict())
    assert again == DEP
    assert again.fingerprint == DEP.fingerprint


def test_settings_outside_the_deployment_do_not_change_the_fingerprint() -> None:
    base = parse()
    for fields in (
        {"savepointMode": "cancel"},
        {"drain": True},
        {"upgradeMode": "stateless"},
        {"allowNonRestoredState": "Always"},
        {"restoreFailurePolicy": "Fail"},
        {"savepointTimeoutSeconds": 5},
        {"savepointDirectory": "s3://b/sp"},
    ):
        assert parse(**fields).deployment.fingerprint == base.deployment.fingerprint, fields


@pytest.mark.parametrize(
    ("policy", "previous", "target", "expected"),
    [
        ("Never", DEP, replace(DEP, jar_uri="https://repo.example/job-2.0.jar"), False),
        ("Never", DEP, replace(DEP, parallelism=8), False),
        ("Always", DEP, replace(DEP, parallelism=8), True),
        ("Always", None, DEP, True),
        ("OnJarChange", DEP, replace(DEP, jar_uri="https://repo.example/job-2.0.jar"), True),
        ("OnJarChange", DEP, replace(DEP, jar_sha256="cd" * 32), True),
        ("OnJarChange", DEP, replace(DEP, entry_class="io.example.Other"), True),
        ("OnJarChange", DEP, replace(DEP, args=("--b",)), True),
        ("OnJarChange", DEP, replace(DEP, parallelism=8), False),
        ("OnJarChange", DEP, replace(DEP, restart_nonce=2), False),
    ],
)
def test_allow_non_restored_state_follows_the_policy(
    policy: str, previous: Deployment | None, target: Deployment, expected: bool
) -> None:
    spec = parse(allowNonRestoredState=policy)
    assert spec.allow_non_restored_for(previous, target) is expected


@pytest.mark.parametrize(
    "key",
    [
        "savepointTimeoutSeconds",
        "savepointHistoryLimit",
        "minRescaleIntervalSeconds",
        "stabilityTimeoutSeconds",
        "restartLostJobs",
    ],
)
def test_a_null_field_takes_its_default(key: str) -> None:
    """Found by Hypothesis in CI: savepointTimeoutSeconds: null crashed parse_spec."""
    assert parse_spec({**BASE, key: None}) == parse_spec(BASE)
