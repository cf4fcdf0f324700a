"""The namespace-to-cluster mapping: parsing the ConfigMap, matching URLs and savepoint paths on segment
boundaries, the planner's stall, a pass that never asks Flink when refused, and the webhook's refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flinkop.admission import refusal as admission_refusal
from flinkop.cluster_access import AccessPolicy, parse_policy, path_within, refusal, url_within
from flinkop.jars import JarFetcher
from flinkop.netguard import NetGuard, parse_networks
from flinkop.observation import Observation
from flinkop.reconcile import Clients, run_pass
from flinkop.status import Status
from planner_kit import NOW, OLD_JOB, condition, make_spec, run, steady

SOURCE = "ConfigMap flinkop-system/flinkop-cluster-access"
RULES = """
- name: team-a
  namespaces: [team-a, "team-a-*"]
  flinkRestUrls: ["http://flink-a.flink.svc:8081"]
  savepointPrefixes: ["s3://savepoints/team-a/"]
- name: shared
  namespaces: ["analytics-*"]
  flinkRestUrls: ["http://flink-shared.flink.svc:8081/"]
"""


def policy(text: str = RULES) -> AccessPolicy:
    return parse_policy({"rules.yaml": text}, SOURCE)


def spec_for(url: str = "http://flink-a.flink.svc:8081", **fields: Any) -> Any:
    return make_spec(flinkRestUrl=url, savepointDirectory=fields.pop("savepointDirectory", None), **fields)


def test_a_namespace_may_use_the_cluster_and_savepoint_prefix_its_rule_names() -> None:
    spec = spec_for(
        savepointDirectory="s3://savepoints/team-a/orders", initialSavepointPath="s3://savepoints/team-a/sp-1"
    )
    assert policy().refusal("team-a", spec) is None
    assert policy().refusal("team-a-dev", spec) is None


def test_another_cluster_is_refused_naming_the_rule_and_what_it_allows() -> None:
    refused = policy().refusal("team-a", spec_for("http://flink-b.flink.svc:8081"))
    assert refused is not None
    reason, message = refused
    assert reason == "ClusterNotAllowed"
    assert "spec.flinkRestUrl http://flink-b.flink.svc:8081" in message and "namespace team-a" in message
    assert "rule team-a allows http://flink-a.flink.svc:8081" in message and SOURCE in message


def test_a_namespace_in_no_rule_may_use_no_cluster() -> None:
    refused = policy().refusal("team-b", spec_for())
    assert refused is not None and refused[0] == "ClusterNotAllowed"
    assert "No rule" in refused[1] and "namespace team-b" in refused[1]


@pytest.mark.parametrize(
    "field, path",
    [
        ("savepointDirectory", "s3://savepoints/team-b/orders"),
        ("savepointDirectory", "s3://savepoints/team-ab/x"),  # a prefix of a name is not a directory prefix
        ("initialSavepointPath", "s3://savepoints/team-a/../team-b/savepoint-1"),
        ("initialSavepointPath", "s3://other-bucket/team-a/savepoint-1"),
    ],
)
def test_a_savepoint_path_outside_the_rules_prefixes_is_refused_naming_the_field(field: str, path: str) -> None:
    refused = policy().refusal("team-a", spec_for(**{field: path}))
    assert refused is not None
    assert refused[0] == "SavepointPathNotAllowed"
    assert f"spec.{field} {path}" in refused[1] and "rule team-a allows s3://savepoints/team-a/" in refused[1]


def test_a_rule_without_savepoint_prefixes_admits_only_the_clusters_default_directory() -> None:
    url = "http://flink-shared.flink.svc:8081"
    assert policy().refusal("analytics-eu", spec_for(url)) is None
    refused = policy().refusal("analytics-eu", spec_for(url, savepointDirectory="file:///anything"))
    assert refused is not None and "none (the cluster default only)" in refused[1]


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://flink-a.flink.svc:8081", True),
        ("http://flink-a.flink.svc:8081/", True),
        ("HTTP://flink-a.flink.svc:8081", True),
        ("http://flink-a.flink.svc:8082", False),
        ("https://flink-a.flink.svc:8081", False),
        ("http://flink-a.flink.svc.evil.example:8081", False),
        ("http://flink-a.flink.svc:8081@evil.example:8081", False),
    ],
)
def test_url_prefixes_match_scheme_host_and_port_exactly(url: str, allowed: bool) -> None:
    assert url_within(url, "http://flink-a.flink.svc:8081") is allowed


def test_url_prefix_paths_match_on_segment_boundaries() -> None:
    assert url_within("https://gw.example/flink/team-a/", "https://gw.example/flink/team-a")
    assert not url_within("https://gw.example/flink/team-ab", "https://gw.example/flink/team-a")


def test_flinks_single_slash_file_uris_match_triple_slash_prefixes() -> None:
    assert path_within("file:/data/sp/team-a/savepoint-1", "file:///data/sp/team-a")


@pytest.mark.parametrize(
    "text, says",
    [
        ("[oops", "not YAML"),
        ("{a: 1}", "must be a list of rules"),
        ("- name: x\n  namespaces: team-a\n", "namespaces must be a list of strings"),
        ("- name: x\n  flinkRestUrls: [flink:8081]\n", "is not an http(s) URL"),
        ("- name: x\n  savepointPrefixes: [/data/sp]\n", "is not a URI"),
        ("- name: x\n  namespace: [a]\n", "unknown keys namespace"),
    ],
)
def test_an_unusable_configmap_refuses_everything_saying_why(text: str, says: str) -> None:
    broken = policy(text)
    assert broken.error is not None and says in broken.error
    refused = broken.refusal("team-a", spec_for())
    assert refused is not None and refused[0] == "ClusterNotAllowed" and says in refused[1]


def test_a_configmap_without_the_rules_key_refuses_everything() -> None:
    broken = parse_policy({"other": "x"}, SOURCE)
    assert broken.error == "it has no key rules.yaml"


def test_refusal_checks_the_flink_endpoint_against_the_denied_networks_without_sending_anything() -> None:
    guard = NetGuard(denied=parse_networks("169.254.0.0/16", "test"), resolver=lambda h, p: ["169.254.169.254"])
    refused = refusal(spec_for("http://sneaky.team-a.svc:8081"), "team-a", guard, None)
    assert refused is not None and refused[0] == "DeniedNetwork" and "169.254.169.254" in refused[1]


def test_no_policy_and_an_allowed_endpoint_is_no_refusal() -> None:
    guard = NetGuard(resolver=lambda h, p: ["10.0.0.7"])
    assert refusal(spec_for(), "any-namespace", guard, None) is None


# -- the planner and the pass ----------------------------------------------------------------------


def test_the_planner_stalls_with_the_refusals_reason_and_message_and_touches_nothing() -> None:
    obs = Observation(refusal=("ClusterNotAllowed", "spec.flinkRestUrl X is not allowed (rule team-a)"))
    decision = run(make_spec(), steady(), obs)
    assert decision.action is None
    stalled = condition(decision, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ClusterNotAllowed"
    assert decision.status.message == "spec.flinkRestUrl X is not allowed (rule team-a)"


def test_deleting_a_refused_flinkjob_that_never_ran_a_job_releases_it_at_once() -> None:
    obs = Observation(refusal=("ClusterNotAllowed", "not allowed"))
    decision = run(make_spec(), Status(), obs, deleting=True)
    assert decision.done_deleting and decision.action is None


def test_deleting_a_refused_flinkjob_with_a_job_waits_and_gives_up_at_the_deadline_saying_why() -> None:
    obs = Observation(refusal=("ClusterNotAllowed", "spec.flinkRestUrl X is not allowed"))
    waiting = run(make_spec(), steady(), obs, deleting=True, deadline=NOW.replace(year=2030))
    assert not waiting.done_deleting and waiting.action is None
    given_up = run(make_spec(), steady(), obs, deleting=True, deadline=NOW)
    assert given_up.done_deleting and "spec.flinkRestUrl X is not allowed" in given_up.status.message
    assert OLD_JOB in given_up.status.message


class NoFlink(Clients):
    def get(self, url: str, credentials: Any = None) -> Any:
        raise AssertionError("a refused FlinkJob must not get a Flink client")


def test_a_refused_pass_never_makes_a_flink_client_and_writes_the_stall(tmp_path: Path) -> None:
    written: list[dict[str, Any]] = []
    result = run_pass(
        spec={"flinkRestUrl": "http://flink-b:8081", "jar": {"uri": "https://repo.example/j.jar"}, "parallelism": 1},
        status=None,
        generation=1,
        clients=NoFlink(),
        fetcher=JarFetcher(tmp_path),
        write_status=written.append,
        emit=lambda event: None,
        now=NOW,
        admit=lambda spec: ("ClusterNotAllowed", f"spec.flinkRestUrl {spec.flink_rest_url} is not allowed"),
    )
    assert result.error == "refused" and result.decision.action is None
    assert written and written[-1]["message"] == "spec.flinkRestUrl http://flink-b:8081 is not allowed"


# -- the webhook ---------------------------------------------------------------------------------------


def flinkjob(url: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a"},
        "spec": {"flinkRestUrl": url, "jar": {"uri": "https://r/j.jar"}, "parallelism": 1, **spec},
    }


def test_the_webhook_refuses_a_cluster_the_mapping_does_not_allow_naming_the_rule() -> None:
    reason = admission_refusal("CREATE", None, flinkjob("http://flink-b.flink.svc:8081"), "team-a", policy())
    assert reason is not None and reason.startswith("ClusterNotAllowed: ") and "rule team-a" in reason
    assert admission_refusal("CREATE", None, flinkjob("http://flink-a.flink.svc:8081"), "team-a", policy()) is None


def test_the_webhook_refuses_a_savepoint_path_outside_the_prefixes() -> None:
    job = flinkjob("http://flink-a.flink.svc:8081", savepointDirectory="s3://savepoints/team-b")
    reason = admission_refusal("UPDATE", flinkjob("http://flink-a.flink.svc:8081"), job, "team-a", policy())
    assert reason is not None and reason.startswith("SavepointPathNotAllowed: spec.savepointDirectory")


def test_the_webhook_refuses_metadata_hosts_and_denied_literals_without_dns() -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("the webhook must not resolve names")

    guard = NetGuard(resolver=no_dns)
    for url in ("http://169.254.169.254/latest", "http://metadata.google.internal"):
        reason = admission_refusal("CREATE", None, flinkjob(url), "team-a", None, guard)
        assert reason is not None and reason.startswith("DeniedNetwork: spec.flinkRestUrl"), reason
    job = flinkjob("http://flink:8081")
    job["spec"]["jar"] = {"uri": "http://[fd00:ec2::254]/job.jar"}
    reason = admission_refusal("CREATE", None, job, "team-a", None, guard)
    assert reason is not None and reason.startswith("DeniedNetwork: spec.jar.uri")
    assert admission_refusal("CREATE", None, flinkjob("http://flink.team-a.svc:8081"), "team-a", None, guard) is None


def test_the_webhook_never_refuses_the_operators_own_metadata_writes_to_a_refused_flinkjob() -> None:
    job = flinkjob("http://flink-b.flink.svc:8081")
    assert admission_refusal("UPDATE", job, job, "team-a", policy()) is None
