"""Credentials from Secrets (restAuthSecretRef, tls.caSecretRef) and the operator's jar host allow-list:
pure logic, with Secrets given as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from flinkop.credentials import CredentialsError, SecretReader, resolve
from flinkop.jars import JarError, JarFetcher, host_allowed
from flinkop.spec import SpecError
from planner_kit import make_spec

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def secrets(**by_name: Mapping[str, bytes]) -> SecretReader:
    def read(namespace: str, name: str) -> Mapping[str, bytes] | None:
        assert namespace == "team-a", "Secrets are read in the FlinkJob's own namespace only"
        return by_name.get(name)

    return read


def test_a_token_secret_gives_a_bearer_header() -> None:
    spec = make_spec(restAuthSecretRef={"name": "auth"})
    creds = resolve(spec, "team-a", secrets(auth={"token": b"s3cr3t-token\n"}))
    assert creds.authorization() == "Bearer s3cr3t-token"


def test_a_username_and_password_secret_gives_basic_auth() -> None:
    spec = make_spec(restAuthSecretRef={"name": "auth"})
    creds = resolve(spec, "team-a", secrets(auth={"username": b"flink", "password": b"pa55"}))
    assert creds.authorization() == ("flink", "pa55")


def test_credentials_never_show_their_values() -> None:
    spec = make_spec(
        flinkRestUrl="https://flink:8443", restAuthSecretRef={"name": "a"}, tls={"caSecretRef": {"name": "ca"}}
    )
    creds = resolve(spec, "team-a", secrets(a={"username": b"u", "password": b"pa55"}, ca={"ca.crt": CA_PEM}))
    assert "pa55" not in repr(creds) and "MIIB" not in repr(creds) and "pa55" not in creds.key


@pytest.mark.parametrize(
    "data, says",
    [
        pytest.param(None, "team-a/auth named by spec.restAuthSecretRef does not exist", id="missing"),
        pytest.param({"user": b"x"}, "neither a `token` key", id="no-usable-keys"),
    ],
)
def test_an_unusable_auth_secret_is_an_error_naming_it(data: Mapping[str, bytes] | None, says: str) -> None:
    spec = make_spec(restAuthSecretRef={"name": "auth"})
    reader = secrets(**({"auth": data} if data is not None else {}))
    with pytest.raises(CredentialsError, match=says):
        resolve(spec, "team-a", reader)


def test_a_ca_secret_becomes_a_ca_bundle_file_and_checks_stay_on() -> None:
    spec = make_spec(flinkRestUrl="https://flink:8443", tls={"caSecretRef": {"name": "ca", "key": "root.pem"}})
    creds = resolve(spec, "team-a", secrets(ca={"root.pem": CA_PEM}))
    bundle = creds.verify()
    assert isinstance(bundle, str) and Path(bundle).read_bytes() == CA_PEM
    assert resolve(make_spec(flinkRestUrl="https://flink:8443"), "team-a", secrets()).verify() is True


def test_a_ca_secret_without_a_certificate_is_refused() -> None:
    spec = make_spec(flinkRestUrl="https://flink:8443", tls={"caSecretRef": {"name": "ca"}})
    with pytest.raises(CredentialsError, match="not a PEM certificate"):
        resolve(spec, "team-a", secrets(ca={"ca.crt": b"hello"}))


@pytest.mark.parametrize(
    "fields, says",
    [
        pytest.param({"tls": {"insecureSkipVerify": True}}, "https:// spec.flinkRestUrl only", id="tls-on-http"),
        pytest.param(
            {"flinkRestUrl": "https://f:1", "tls": {"insecureSkipVerify": True, "caSecretRef": {"name": "c"}}},
            "not both",
            id="ca-and-insecure",
        ),
        pytest.param({"restAuthSecretRef": {"key": "x"}}, "restAuthSecretRef must be", id="ref-without-name"),
    ],
)
def test_bad_credential_fields_are_spec_errors(fields: dict[str, object], says: str) -> None:
    with pytest.raises(SpecError, match=says):
        make_spec(**fields)


@pytest.mark.parametrize(
    "uri, allowed, ok",
    [
        ("https://repo.example.com/a.jar", (), True),
        ("https://repo.example.com/a.jar", ("repo.example.com",), True),
        ("https://evil.example.org/a.jar", ("repo.example.com",), False),
        ("https://maven.corp.example/a.jar", ("*.corp.example",), True),
        ("https://corp.example/a.jar", ("*.corp.example",), False),
        ("https://corp.example.evil/a.jar", ("*.corp.example",), False),
        ("file:///jars/a.jar", ("repo.example.com",), False),
        ("file:///jars/a.jar", ("file", "repo.example.com"), True),
    ],
)
def test_jar_hosts_are_checked_against_the_allow_list(uri: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert host_allowed(uri, allowed) is ok


def test_a_jar_from_a_host_not_allowed_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    fetcher = JarFetcher(tmp_path, allowed_hosts=("repo.example.com",))
    with pytest.raises(JarError) as refused:
        fetcher.fetch("http://127.0.0.1:1/job.jar", None)  # nothing listens there: a fetch would fail otherwise
    assert refused.value.reason == "JarHostNotAllowed"
    assert "FLINKOP_JAR_ALLOWED_HOSTS" in str(refused.value)
