"""Property-based tests (Hypothesis) of spec parsing and the admission webhook's validation on random and
adversarial specs: they never crash (only SpecError, or a refusal string), and a refusal names the
field that is wrong. Examples are bounded so the unit suite stays fast."""

from __future__ import annotations

import re
from typing import Any

from flinkop.admission import refusal
from flinkop.cluster_access import parse_policy
from flinkop.spec import FlinkJobSpec, SpecError, parse_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "flinkRestUrl": "http://flink:8081",
    "jar": {"uri": "https://repo.example/job.jar"},
    "parallelism": 2,
}
# Every field parse_spec reads, with nested ones as dotted paths.
FIELDS = (
    "flinkRestUrl",
    "jar",
    "jar.uri",
    "jar.sha256",
    "parallelism",
    "args",
    "entryClass",
    "restartNonce",
    "state",
    "upgradeMode",
    "savepointMode",
    "drain",
    "savepointDirectory",
    "initialSavepointPath",
    "savepointTimeoutSeconds",
    "restAuthSecretRef",
    "tls",
    "tls.caSecretRef",
    "tls.insecureSkipVerify",
    "allowNonRestoredState",
    "restoreFailurePolicy",
    "savepointNonce",
    "savepointIntervalSeconds",
    "savepointHistoryLimit",
    "savepointMaxAgeSeconds",
    "disposeSavepointsOnDelete",
    "rescaleMode",
    "minRescaleIntervalSeconds",
    "inPlaceRescaleTimeoutSeconds",
    "scaleSelector",
)

# Strings an attacker would try: URLs that break parsers, hosts that smuggle, control characters, huge text.
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "http://[",
        "http://[::1",
        "http://flink:99999",
        "http://flink:-1",
        "http://flink:port",
        "http://user:pass@flink:8081",
        "http://flink:8081\r\nX-Injected: 1",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "file:",
        "javascript:alert(1)",
        "s3://bucket/../other",
        "\x00",
        "\ud800",
        "😀://x",
        "http://" + "a" * 5000,
        "stop",
        "running",
        "x" * 10000,
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30) | NASTY_STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


def with_field(path: str, value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    head, _, tail = path.partition(".")
    if tail:
        inner = spec.get(head)
        spec[head] = {**(inner if isinstance(inner, dict) else {}), tail: value}
    else:
        spec[head] = value
    return spec


@BOUNDED
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), JSON, max_size=12))
def test_parse_spec_never_crashes_on_random_specs(spec: dict[str, Any]) -> None:
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        assert re.search(r"\bspec(\.\w+)*\b", str(exc)), str(exc)
    else:
        assert isinstance(parsed, FlinkJobSpec)


@BOUNDED
@given(st.sampled_from(FIELDS), JSON)
def test_a_wrong_value_in_one_field_is_refused_naming_that_field(path: str, value: Any) -> None:
    spec = with_field(path, value)
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        top = path.split(".")[0]
        message = str(exc)
        # The field itself, or (for a cross-field rule) its partner named in the same message.
        partners = {"drain": "savepointMode", "tls": "flinkRestUrl", "restAuthSecretRef": "restAuthSecretRef"}
        assert f"spec.{top}" in message or f"spec.{partners.get(top, top)}" in message, (path, value, message)
    else:
        assert isinstance(parsed, FlinkJobSpec)
        assert parsed.flink_rest_url and parsed.deployment.parallelism >= 1


@BOUNDED
@given(st.sampled_from(["flinkRestUrl", "jar.uri", "savepointDirectory", "initialSavepointPath"]), NASTY_STRINGS)
def test_adversarial_uris_are_parsed_or_refused_naming_the_field(path: str, value: str) -> None:
    try:
        parse_spec(with_field(path, value))
    except SpecError as exc:
        assert f"spec.{path}" in str(exc), (value, str(exc))


@BOUNDED
@given(
    st.sampled_from(["CREATE", "UPDATE"]),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(["spec", "status", "metadata"]), JSON, max_size=3)),
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8),
)
def test_the_webhook_answers_every_review_with_a_reason_or_admission_never_an_exception(
    operation: str, old: dict[str, Any] | None, new_spec: dict[str, Any]
) -> None:
    policy = parse_policy(
        {"rules.yaml": '- {name: r, namespaces: [team-a], flinkRestUrls: ["http://flink:8081"]}'}, "ConfigMap x/y"
    )
    answer = refusal(operation, old, {"spec": new_spec}, "team-a", policy)
    assert answer is None or ("spec" in answer and len(answer) < 2000), answer


@BOUNDED
@given(st.text(max_size=300))
def test_any_configmap_text_makes_a_policy_or_a_refuse_everything_error(text: str) -> None:
    policy = parse_policy({"rules.yaml": text}, "ConfigMap x/y")
    assert policy.error is not None or all(r.name for r in policy.rules)
