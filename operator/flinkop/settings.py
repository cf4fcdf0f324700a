"""Operator-wide settings, read once at start-up from the command line and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flinkop.app_cluster_kube import rest_address_from_env
from flinkop.netguard import DEFAULT_DENIED_NETWORKS, DENIED_SETTING, EXTRA_SETTING, NetGuard, parse_networks

# deploy/operator.yaml sets FLINKOP_JAR_ALLOWED_HOSTS to this: until a person replaces it with the
# hosts jars come from, every jar fetch fails saying so (rather than allowing any host).
JAR_HOSTS_PLACEHOLDER = "REPLACE-WITH-YOUR-JAR-HOSTS"


@dataclass(frozen=True)
class OperatorSettings:
    # How often each Flink cluster's job list is read (once for all its FlinkJobs): a job at rest that
    # failed or was cancelled outside the operator is noticed within this time.
    observe_interval: float = 10.0
    pass_workers: int = 16  # passes running at once (each FlinkJob's passes run one at a time)
    delete_timeout: float = 300.0  # how long deletion tries for a final savepoint
    flink_timeout: float = 10.0  # per Flink REST request
    overview_max_age: float = 5.0  # a cluster's job list is shared by its FlinkJobs for this long
    max_concurrent_upgrades: int = 10  # upgrades and rescales in flight at once; more wait their turn
    jar_cache_dir: Path | None = None
    max_jar_bytes: int = 512 * 1024 * 1024
    # Hosts jars may come from (`repo.example.com`, `*.example.com`, `file` for file://); empty: any.
    jar_allowed_hosts: tuple[str, ...] = ()
    jar_allow_file: bool = False  # file:// jars read the operator's own disk: off unless enabled
    jar_fetch_deadline: float = 300.0  # a jar download ends by then, however slowly the server sends
    flink_max_response_bytes: int = 16 * 1024 * 1024  # a larger Flink REST answer is refused, not read
    # Networks no request goes to (Flink REST, jar fetches, redirects): link-local and cloud metadata.
    denied_networks: tuple[str, ...] = DEFAULT_DENIED_NETWORKS
    extra_denied_networks: tuple[str, ...] = ()
    # The ConfigMap mapping namespaces to the Flink clusters and savepoint paths they may use, as
    # (namespace, name); None: no mapping, every namespace may use every cluster.
    cluster_access_configmap: tuple[str, str] | None = None
    # Application mode: where the operator reaches a JobManager's REST API: "service" (its Service's cluster
    # DNS name) or "pod-ip" (the JobManager pod's IP, for an operator outside the cluster or without DNS).
    app_rest_address: str = "service"

    def net_guard(self) -> NetGuard:
        return NetGuard.from_settings(self.denied_networks, self.extra_denied_networks)

    @classmethod
    def from_env(cls) -> OperatorSettings:
        def num(name: str, default: float) -> float:
            raw = os.environ.get(name)
            try:
                return float(raw) if raw else default
            except ValueError as exc:
                raise SystemExit(f"{name}={raw!r} is not a number") from exc

        def flag(name: str, default: bool) -> bool:
            raw = os.environ.get(name, "").strip().lower()
            if not raw:
                return default
            if raw in ("true", "1", "yes"):
                return True
            if raw in ("false", "0", "no"):
                return False
            raise SystemExit(f"{name}={raw!r} is not true or false")

        def networks(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = os.environ.get(name)
            if raw is None or not raw.strip():
                return default
            if raw.strip().lower() == "none":
                return ()
            try:
                return tuple(str(n) for n in parse_networks(raw, name))
            except ValueError as exc:
                raise SystemExit(str(exc)) from exc

        cache = os.environ.get("FLINKOP_JAR_CACHE_DIR")
        return cls(
            observe_interval=num("FLINKOP_OBSERVE_INTERVAL", cls.observe_interval),
            pass_workers=max(1, int(num("FLINKOP_PASS_WORKERS", cls.pass_workers))),
            delete_timeout=num("FLINKOP_DELETE_TIMEOUT", cls.delete_timeout),
            flink_timeout=num("FLINKOP_FLINK_TIMEOUT", cls.flink_timeout),
            overview_max_age=num("FLINKOP_OVERVIEW_MAX_AGE", cls.overview_max_age),
            max_concurrent_upgrades=int(num("FLINKOP_MAX_CONCURRENT_UPGRADES", cls.max_concurrent_upgrades)),
            jar_cache_dir=Path(cache) if cache else None,
            max_jar_bytes=int(num("FLINKOP_MAX_JAR_BYTES", cls.max_jar_bytes)),
            jar_allowed_hosts=tuple(
                h.strip() for h in os.environ.get("FLINKOP_JAR_ALLOWED_HOSTS", "").split(",") if h.strip()
            ),
            jar_allow_file=flag("FLINKOP_JAR_ALLOW_FILE", cls.jar_allow_file),
            jar_fetch_deadline=num("FLINKOP_JAR_FETCH_TIMEOUT", cls.jar_fetch_deadline),
            flink_max_response_bytes=int(num("FLINKOP_FLINK_MAX_RESPONSE_BYTES", cls.flink_max_response_bytes)),
            denied_networks=networks(DENIED_SETTING, cls.denied_networks),
            extra_denied_networks=networks(EXTRA_SETTING, ()),
            cluster_access_configmap=_configmap_ref(os.environ.get("FLINKOP_CLUSTER_ACCESS_CONFIGMAP", "")),
            app_rest_address=_app_rest_address(),
        )


def _app_rest_address() -> str:
    try:
        return rest_address_from_env(os.environ).value
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def _configmap_ref(raw: str) -> tuple[str, str] | None:
    """`namespace/name`, or `name` in the operator's own namespace (POD_NAMESPACE, set in the Deployment)."""
    raw = raw.strip()
    if not raw:
        return None
    namespace, _, name = raw.rpartition("/")
    namespace = namespace or os.environ.get("POD_NAMESPACE", "")
    if not namespace or not name:
        raise SystemExit(
            f"FLINKOP_CLUSTER_ACCESS_CONFIGMAP={raw!r}: write it as namespace/name "
            "(or set POD_NAMESPACE for a bare name)"
        )
    return namespace, name
