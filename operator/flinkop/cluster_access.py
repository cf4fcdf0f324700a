"""Which namespaces may use which Flink clusters and savepoint paths: an operator-level ConfigMap.

On a cluster shared by teams, `spec.flinkRestUrl`, `spec.savepointDirectory` and
`spec.initialSavepointPath` are chosen by whoever may create a FlinkJob in a namespace. The ConfigMap
named by `FLINKOP_CLUSTER_ACCESS_CONFIGMAP` (in the operator's namespace) maps namespaces to what
they may use, in its key `rules.yaml`:

    - name: team-a                       # named in every refusal
      namespaces: [team-a, "team-a-*"]   # exact names or globs
      flinkRestUrls: ["http://flink-a-rest.flink.svc:8081"]   # URL prefixes (scheme, host, port, path)
      savepointPrefixes: ["s3://savepoints/team-a/"]          # for savepointDirectory and initialSavepointPath

A namespace in no rule may use no cluster; a rule without `savepointPrefixes` admits no
`spec.savepointDirectory` nor `spec.initialSavepointPath` (the cluster's own default directory is
used). A ConfigMap that cannot be read or parsed refuses everything, saying why. No setting: no
mapping (every namespace may use every cluster); setting given but the ConfigMap absent: no mapping
either, until it is created.

Checked on every pass before any Flink call (`refusal`, carried to the planner as
`Observation.refusal`: Stalled `ClusterNotAllowed` / `SavepointPathNotAllowed` / `DeniedNetwork`) and
by the admission webhook.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import yaml

from flinkop.netguard import NetGuard, NetworkDenied
from flinkop.spec import FlinkJobSpec

RULES_KEY = "rules.yaml"
Refusal = tuple[str, str]  # (Stalled reason, message)


@dataclass(frozen=True)
class AccessRule:
    name: str
    namespaces: tuple[str, ...]
    flink_rest_urls: tuple[str, ...]
    savepoint_prefixes: tuple[str, ...] = ()

    def covers(self, namespace: str) -> bool:
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    def allows_url(self, url: str) -> bool:
        return any(url_within(url, prefix) for prefix in self.flink_rest_urls)

    def allows_path(self, path: str) -> bool:
        return any(path_within(path, prefix) for prefix in self.savepoint_prefixes)


@dataclass(frozen=True)
class AccessPolicy:
    source: str  # "ConfigMap ns/name", for messages
    rules: tuple[AccessRule, ...] = ()
    error: str | None = None  # the ConfigMap could not be used: everything is refused, saying this

    def refusal(self, namespace: str, spec: FlinkJobSpec) -> Refusal | None:
        if self.error is not None:
            return "ClusterNotAllowed", f"The operator's {self.source} is unusable ({self.error}); nothing is allowed."
        rules = [r for r in self.rules if r.covers(namespace)]
        if not rules:
            return (
                "ClusterNotAllowed",
                f"No rule of the operator's {self.source} covers namespace {namespace}: it may use no Flink cluster; "
                "ask the platform team to add one.",
            )
        url = spec.flink_rest_url
        fitting = [r for r in rules if r.allows_url(url)]
        if not fitting:
            allowed = "; ".join(f"rule {r.name} allows {', '.join(r.flink_rest_urls) or 'none'}" for r in rules)
            return (
                "ClusterNotAllowed",
                f"spec.flinkRestUrl {url} is not allowed for namespace {namespace} by the operator's {self.source} "
                f"({allowed}); nothing was sent to it.",
            )
        for field_name, path in (
            ("spec.savepointDirectory", spec.savepoint_directory),
            ("spec.initialSavepointPath", spec.initial_savepoint_path),
        ):
            if path is None or any(r.allows_path(path) for r in fitting):
                continue
            allowed = "; ".join(
                f"rule {r.name} allows {', '.join(r.savepoint_prefixes) or 'none (the cluster default only)'}"
                for r in fitting
            )
            return (
                "SavepointPathNotAllowed",
                f"{field_name} {path} is not allowed for namespace {namespace} by the operator's {self.source} "
                f"({allowed}); Flink was not asked to use it.",
            )
        return None


def url_within(url: str, prefix: str) -> bool:
    """Whether `url` is at or under `prefix`: same scheme, host and port, path on a segment boundary
    (`http://flink-a` never admits `http://flink-a.evil.example`)."""
    try:
        u, p = urlparse(url), urlparse(prefix)
        u_port = u.port or (443 if u.scheme == "https" else 80)
        p_port = p.port or (443 if p.scheme == "https" else 80)
    except ValueError:
        return False
    if u.scheme.lower() != p.scheme.lower() or (u.hostname or "") != (p.hostname or "") or u_port != p_port:
        return False
    return _path_under(u.path, p.path)


def path_within(path: str, prefix: str) -> bool:
    """Whether a savepoint path is under a prefix: same scheme and authority, path on a segment boundary,
    no `..` segment (Flink writes `file:/x` for `file:///x`: both are the same here)."""
    u, p = urlparse(path), urlparse(prefix)
    if u.scheme.lower() != p.scheme.lower() or u.netloc != p.netloc:
        return False
    if ".." in u.path.split("/"):
        return False
    return _path_under(u.path, p.path)


def _path_under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def parse_policy(data: Mapping[str, str] | None, source: str) -> AccessPolicy:
    """The policy in a ConfigMap's data; an unusable one is a policy that refuses everything."""
    text = (data or {}).get(RULES_KEY)
    if text is None:
        return AccessPolicy(source, error=f"it has no key {RULES_KEY}")
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return AccessPolicy(source, error=f"{RULES_KEY} is not YAML: {str(exc)[:200]}")
    if not isinstance(raw, list):
        return AccessPolicy(source, error=f"{RULES_KEY} must be a list of rules")
    rules = []
    for i, entry in enumerate(raw):
        where = f"{RULES_KEY} rule {i + 1}"
        if not isinstance(entry, Mapping):
            return AccessPolicy(source, error=f"{where} is not a mapping")
        name = entry.get("name") or f"#{i + 1}"
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("namespaces", "flinkRestUrls", "savepointPrefixes"):
            value = entry.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                return AccessPolicy(source, error=f"{where} ({name}): {key} must be a list of strings")
            lists[key] = tuple(value)
        for url in lists["flinkRestUrls"]:
            if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
                return AccessPolicy(
                    source, error=f"{where} ({name}): flinkRestUrls entry {url!r} is not an http(s) URL"
                )
        for prefix in lists["savepointPrefixes"]:
            if not urlparse(prefix).scheme:
                return AccessPolicy(source, error=f"{where} ({name}): savepointPrefixes entry {prefix!r} is not a URI")
        unknown = set(entry) - {"name", "namespaces", "flinkRestUrls", "savepointPrefixes"}
        if unknown:
            return AccessPolicy(source, error=f"{where} ({name}): unknown keys {', '.join(sorted(map(str, unknown)))}")
        rules.append(AccessRule(str(name), lists["namespaces"], lists["flinkRestUrls"], lists["savepointPrefixes"]))
    return AccessPolicy(source, tuple(rules))


class PolicyHolder:
    """The policy in force (None: no mapping), replaced as the ConfigMap changes; read by passes and the webhook."""

    def __init__(self) -> None:
        self._policy: AccessPolicy | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def get(self) -> AccessPolicy | None:
        with self._lock:
            return self._policy

    def set(self, policy: AccessPolicy | None) -> None:
        with self._lock:
            changed = policy != self._policy
            self._policy = policy
            listeners = list(self._listeners)
        if changed:
            for listener in listeners:
                listener()  # every FlinkJob is planned again under the new policy

    def on_change(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)


CURRENT = PolicyHolder()


def refusal(spec: FlinkJobSpec, namespace: str, guard: NetGuard | None, policy: AccessPolicy | None) -> Refusal | None:
    """Why this FlinkJob's spec may not be acted on here, or None: the mapping, then the denied networks
    (the Flink endpoint is resolved and checked; nothing is sent anywhere)."""
    if policy is not None:
        refused = policy.refusal(namespace, spec)
        if refused is not None:
            return refused
    if guard is not None:
        try:
            guard.vet_url(spec.flink_rest_url, "spec.flinkRestUrl")
        except NetworkDenied as exc:
            return "DeniedNetwork", f"{exc}."
        except OSError:
            return None  # not resolvable now: the pass reports Flink unreachable, and retries
    return None
