"""The FlinkJob spec as plain values: parsed, defaulted and checked beyond what the CRD schema can.

`Deployment` is the part of the spec that defines the running Flink job: a change to it is an
upgrade. Its `fingerprint` is stored in status to tell which spec a job runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import ParseResult, urlparse

SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
JAR_SCHEMES = ("file", "http", "https")
ALLOW_NON_RESTORED = ("Never", "Always", "OnJarChange")


class SpecError(ValueError):
    """The spec cannot be acted on; the message names the field and what is wrong."""


@dataclass(frozen=True)
class Deployment:
    jar_uri: str
    jar_sha256: str | None
    entry_class: str | None
    args: tuple[str, ...]
    parallelism: int
    restart_nonce: int | None = None

    @cached_property
    def fingerprint(self) -> str:
        # Computed once per value: every pass compares fingerprints several times (B3's idle profile).
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "jarUri": self.jar_uri,
            "jarSha256": self.jar_sha256,
            "entryClass": self.entry_class,
            "args": list(self.args),
            "parallelism": self.parallelism,
            "restartNonce": self.restart_nonce,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        return cls(
            jar_uri=str(d["jarUri"]),
            jar_sha256=d.get("jarSha256"),
            entry_class=d.get("entryClass"),
            args=tuple(str(a) for a in d.get("args") or ()),
            parallelism=int(d["parallelism"]),
            restart_nonce=d.get("restartNonce"),
        )

    def only_parallelism_differs(self, other: Deployment) -> bool:
        """A rescale: same program, same restart nonce, another parallelism."""
        return (
            self.parallelism != other.parallelism
            and not self.program_changed(other)
            and self.restart_nonce == other.restart_nonce
        )

    def program_changed(self, other: Deployment) -> bool:
        """True when jar, entry class or args differ: what `OnJarChange` looks at."""
        return (
            self.jar_uri != other.jar_uri
            or (self.jar_sha256 or "").lower() != (other.jar_sha256 or "").lower()
            or self.entry_class != other.entry_class
            or self.args != other.args
        )


@dataclass(frozen=True)
class FlinkJobSpec:
    flink_rest_url: str
    deployment: Deployment
    state: str = "running"
    upgrade_mode: str = "savepoint"
    savepoint_mode: str = "stop"
    drain: bool = False
    savepoint_directory: str | None = None
    allow_non_restored_state: str = "Never"
    restore_failure_policy: str = "Rollback"
    initial_savepoint_path: str | None = None
    savepoint_timeout_seconds: int = 600
    savepoint_nonce: int | None = None
    savepoint_interval_seconds: int | None = None
    savepoint_history_limit: int = 10
    savepoint_max_age_seconds: int | None = None
    dispose_savepoints_on_delete: bool = False
    rescale_mode: str = "Auto"
    min_rescale_interval_seconds: int = 60
    in_place_rescale_timeout_seconds: int = 120
    stability_timeout_seconds: int = 300  # a start must pass the stability gate within this
    restart_lost_jobs: bool = True  # a job its cluster no longer lists starts again from the last savepoint
    scale_selector: str | None = None
    rest_auth_secret: str | None = None  # Secret (same namespace): `token`, or `username` and `password`
    tls_ca_secret: tuple[str, str] | None = None  # (Secret name, key) of the CA that signs Flink's certificate
    tls_insecure_skip_verify: bool = False

    def attempt_key(self, deployment: Deployment) -> str:
        """What a failed attempt at `deployment` is remembered by (`status.failure.fingerprint`): the
        deployment and every policy field that can make the next attempt at it go differently. A
        stall that needs a person lifts when any of them changes."""
        policy = [
            self.allow_non_restored_state,
            self.restore_failure_policy,
            self.upgrade_mode,
            self.savepoint_mode,
            self.drain,
            self.savepoint_directory,
            self.initial_savepoint_path,
            self.rescale_mode,
            self.in_place_rescale_timeout_seconds,
            self.stability_timeout_seconds,
            self.restart_lost_jobs,
        ]
        return hashlib.sha256(json.dumps([deployment.fingerprint, policy]).encode()).hexdigest()[:16]

    def allow_non_restored_for(self, previous: Deployment | None, target: Deployment) -> bool:
        """The `-n` flag for restoring `target` from a savepoint of `previous`, by the policy."""
        if self.allow_non_restored_state == "Always":
            return True
        if self.allow_non_restored_state == "OnJarChange":
            return previous is not None and target.program_changed(previous)
        return False


def _bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key} {value!r} must be true or false")
    return value


def _enum(spec: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = spec.get(key, default)
    if value not in allowed:
        raise SpecError(f"spec.{key} is {value!r}; it must be one of {', '.join(allowed)}")
    return str(value)


def _positive_int(spec: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = spec.get(key)
    if value is None:  # absent, or null in the manifest: the default
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"spec.{key} {value!r} must be an integer >= 1")
    return value


def _non_negative_int(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key)
    if value is None:  # absent, or null in the manifest: the default
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpecError(f"spec.{key} {value!r} must be an integer >= 0")
    return value


def _optional(spec: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    """spec[key] when it is of `kind` (or absent/null: None); SpecError naming the field otherwise."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"spec.{key} {_show(value)} must be {what}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:119] + "…"


def _url(value: str, field: str) -> ParseResult:
    """urlparse, with what it raises or lets through (spaces, control characters, a bad port) as SpecError."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise SpecError(f"{field} {_show(value)} contains spaces or control characters")
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise SpecError(f"{field} {_show(value)} is not a valid URL ({exc})") from None
    return parsed


def parse_spec(spec: Mapping[str, Any]) -> FlinkJobSpec:
    """Parses a FlinkJob's spec, with the contract's defaults. Raises SpecError, naming the field,
    for what the CRD schema cannot reject on Kubernetes 1.20 (cross-field rules, formats), and for
    anything else a spec may hold: the webhook and every pass run this on untrusted input."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    url = spec.get("flinkRestUrl")
    if not isinstance(url, str) or not url:
        raise SpecError("spec.flinkRestUrl is required (the REST endpoint of the Flink session cluster)")
    parsed_url = _url(url, "spec.flinkRestUrl")
    if parsed_url.scheme not in ("http", "https") or not parsed_url.hostname:
        raise SpecError(f"spec.flinkRestUrl {_show(url)} is not an http:// or https:// URL")
    jar = spec.get("jar") or {}
    if not isinstance(jar, Mapping):
        raise SpecError("spec.jar must be an object: {uri: ..., sha256: ...}")
    uri = jar.get("uri")
    if not isinstance(uri, str) or not uri:
        raise SpecError("spec.jar.uri is required (file://, http:// or https:// location of the job jar)")
    scheme = _url(uri, "spec.jar.uri").scheme
    if scheme not in JAR_SCHEMES:
        raise SpecError(f"spec.jar.uri {uri!r} has scheme {scheme or '(none)'!r}; use file://, http:// or https://")
    sha = jar.get("sha256")
    if sha is not None and not SHA256_RE.match(str(sha)):
        raise SpecError(f"spec.jar.sha256 {sha!r} is not 64 hexadecimal digits")
    parallelism = spec.get("parallelism", 1)  # the CRD's default, for a manifest that leaves it to an autoscaler
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise SpecError(f"spec.parallelism {parallelism!r} must be an integer >= 1")
    args = spec.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise SpecError("spec.args must be a list of strings")
    deployment = Deployment(
        jar_uri=uri,
        jar_sha256=str(sha).lower() if sha else None,
        entry_class=_optional(spec, "entryClass", str, "a string (a class name)") or None,
        args=tuple(args),
        parallelism=parallelism,
        restart_nonce=_optional(spec, "restartNonce", int, "an integer"),
    )
    state = _enum(spec, "state", ("running", "suspended"), "running")
    upgrade_mode = _enum(spec, "upgradeMode", ("savepoint", "stateless"), "savepoint")
    savepoint_mode = _enum(spec, "savepointMode", ("stop", "cancel"), "stop")
    drain = bool(_optional(spec, "drain", bool, "true or false"))
    if drain and savepoint_mode != "stop":
        raise SpecError("spec.drain: true works only with spec.savepointMode: stop (cancel cannot drain)")
    sp_dir = _optional(spec, "savepointDirectory", str, "a string (a URI)") or None
    if sp_dir is not None and not _url(sp_dir, "spec.savepointDirectory").scheme:
        raise SpecError(
            f"spec.savepointDirectory {sp_dir!r} is not a URI; write it with its scheme, e.g. file:///data/sp"
        )
    initial = _optional(spec, "initialSavepointPath", str, "a string (a URI)") or None
    if initial is not None and not _url(initial, "spec.initialSavepointPath").scheme:
        raise SpecError(
            f"spec.initialSavepointPath {initial!r} is not a URI; write it as Flink reports it, e.g. "
            "file:///data/sp/savepoint-1a2b3c-0123456789ab"
        )
    timeout = _positive_int(spec, "savepointTimeoutSeconds", 600)
    assert timeout is not None
    auth_ref = spec.get("restAuthSecretRef") or {}
    if auth_ref and not (isinstance(auth_ref, Mapping) and isinstance(auth_ref.get("name"), str) and auth_ref["name"]):
        raise SpecError("spec.restAuthSecretRef must be {name: <Secret in this namespace>}")
    tls = spec.get("tls") or {}
    if not isinstance(tls, Mapping):
        raise SpecError("spec.tls must be an object: {caSecretRef: ..., insecureSkipVerify: ...}")
    ca_ref = tls.get("caSecretRef") or {}
    if ca_ref and not (isinstance(ca_ref, Mapping) and isinstance(ca_ref.get("name"), str) and ca_ref["name"]):
        raise SpecError("spec.tls.caSecretRef must be {name: <Secret in this namespace>, key: <default ca.crt>}")
    insecure = tls.get("insecureSkipVerify", False)
    if not isinstance(insecure, bool):
        raise SpecError(f"spec.tls.insecureSkipVerify {_show(insecure)} must be true or false")
    ca_key = ca_ref.get("key") if isinstance(ca_ref, Mapping) else None
    if ca_key is not None and not (isinstance(ca_key, str) and ca_key):
        raise SpecError("spec.tls.caSecretRef.key must be the name of a key in the Secret")
    if (ca_ref or insecure) and parsed_url.scheme != "https":
        raise SpecError("spec.tls applies to an https:// spec.flinkRestUrl only")
    if ca_ref and insecure:
        raise SpecError("spec.tls: set either caSecretRef or insecureSkipVerify, not both")
    return FlinkJobSpec(
        flink_rest_url=url.rstrip("/"),
        deployment=deployment,
        state=state,
        upgrade_mode=upgrade_mode,
        savepoint_mode=savepoint_mode,
        drain=drain,
        savepoint_directory=sp_dir,
        allow_non_restored_state=_enum(spec, "allowNonRestoredState", ALLOW_NON_RESTORED, "Never"),
        restore_failure_policy=_enum(spec, "restoreFailurePolicy", ("Rollback", "Fail"), "Rollback"),
        initial_savepoint_path=initial,
        savepoint_timeout_seconds=timeout,
        savepoint_nonce=_optional(spec, "savepointNonce", int, "an integer"),
        savepoint_interval_seconds=_positive_int(spec, "savepointIntervalSeconds", None),
        savepoint_history_limit=_positive_int(spec, "savepointHistoryLimit", 10) or 10,
        savepoint_max_age_seconds=_positive_int(spec, "savepointMaxAgeSeconds", None),
        dispose_savepoints_on_delete=bool(_optional(spec, "disposeSavepointsOnDelete", bool, "true or false")),
        rescale_mode=_enum(spec, "rescaleMode", ("Auto", "InPlace", "Savepoint"), "Auto"),
        min_rescale_interval_seconds=_non_negative_int(spec, "minRescaleIntervalSeconds", 60),
        in_place_rescale_timeout_seconds=_positive_int(spec, "inPlaceRescaleTimeoutSeconds", 120) or 120,
        stability_timeout_seconds=_positive_int(spec, "stabilityTimeoutSeconds", 300) or 300,
        restart_lost_jobs=_bool(spec, "restartLostJobs", True),
        scale_selector=_optional(spec, "scaleSelector", str, "a string (a label selector)") or None,
        rest_auth_secret=str(auth_ref["name"]) if auth_ref else None,
        tls_ca_secret=(str(ca_ref["name"]), str(ca_ref.get("key") or "ca.crt")) if ca_ref else None,
        tls_insecure_skip_verify=insecure,
    )
