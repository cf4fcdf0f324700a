"""Keeps `cluster_access.CURRENT` in step with the ConfigMap `FLINKOP_CLUSTER_ACCESS_CONFIGMAP` names.

Read once at start-up (before any FlinkJob is handled), then watched in a thread of its own: only
that one ConfigMap, in its namespace (RBAC: get, list and watch on configmaps there, nothing
cluster-wide). A read that fails for lack of rights makes a policy that refuses everything.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kopf
import kubernetes

from flinkop.cluster_access import CURRENT, AccessPolicy, PolicyHolder, parse_policy
from flinkop.settings import OperatorSettings

log = logging.getLogger("flinkop.cluster_access")


def _load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _apply(holder: PolicyHolder, source: str, data: dict[str, str] | None, exists: bool) -> None:
    if not exists:
        if holder.get() is not None:
            log.warning("%s is gone: no namespace-to-cluster mapping until it is created again", source)
        holder.set(None)
        return
    policy = parse_policy(data, source)
    if policy.error is not None:
        log.error("%s is unusable, every FlinkJob is refused until it is fixed: %s", source, policy.error)
    else:
        log.info("%s: %d namespace-to-cluster rules in force", source, len(policy.rules))
    holder.set(policy)


def read_once(api: Any, namespace: str, name: str, holder: PolicyHolder) -> str | None:
    """Reads the ConfigMap into `holder`; returns the list's resourceVersion to watch from."""
    source = f"ConfigMap {namespace}/{name}"
    try:
        listed = api.list_namespaced_config_map(namespace, field_selector=f"metadata.name={name}")
    except kubernetes.client.ApiException as exc:
        holder.set(AccessPolicy(source, error=f"the operator cannot read it: HTTP {exc.status}"))
        log.error("%s cannot be read (HTTP %s): every FlinkJob is refused", source, exc.status)
        return None
    items = listed.items or []
    _apply(holder, source, dict(items[0].data or {}) if items else None, bool(items))
    return str(listed.metadata.resource_version)


def _watch_forever(api: Any, namespace: str, name: str, holder: PolicyHolder, version: str | None) -> None:
    source = f"ConfigMap {namespace}/{name}"
    while True:
        try:
            if version is None:
                version = read_once(api, namespace, name, holder)
                if version is None:
                    time.sleep(10)
                    continue
            stream = kubernetes.watch.Watch().stream(
                api.list_namespaced_config_map,
                namespace,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=300,
            )
            for event in stream:
                obj = event["object"]
                version = str(obj.metadata.resource_version)
                _apply(holder, source, dict(obj.data or {}), event["type"] != "DELETED")
        except Exception as exc:  # a broken watch (410 Gone included): read it afresh
            log.debug("watch of %s ended (%s); reading it again", source, exc)
            version = None
            time.sleep(2)


def start(settings: OperatorSettings, holder: PolicyHolder = CURRENT) -> None:
    ref = settings.cluster_access_configmap
    if ref is None:
        holder.set(None)
        return
    namespace, name = ref
    _load_config()
    api = kubernetes.client.CoreV1Api()
    version = read_once(api, namespace, name, holder)
    threading.Thread(
        target=_watch_forever, args=(api, namespace, name, holder, version), name="flinkop-cluster-access", daemon=True
    ).start()


@kopf.on.startup()
def watch_cluster_access(**_: Any) -> None:
    start(OperatorSettings.from_env())
