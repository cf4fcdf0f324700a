"""High availability through kopf peering: replicas that share a peering object see each other, and
only the live one with the highest priority handles FlinkJobs; the others wait, paused.

kopf pauses every peer that shares the highest priority, so each process needs its own. The
default makes the earlier-started operator win, so a replica that starts later (a rollout, a
rescheduled pod) waits as a standby instead of taking over from an active one in mid-upgrade;
random low bits break the tie between replicas started in the same second.

A standby takes over once the active operator's keep-alive is older than the peering lifetime
(`FLINKOP_PEERING_LIFETIME`, seconds, default 60), or at once when it exits cleanly. It then finishes
whatever the status's write-ahead record says is in flight, as a restarted operator would.

With `--peering NAME` the operator makes sure its peering object exists (ClusterKopfPeering NAME when
cluster-wide, KopfPeering NAME in each namespace named by `--namespace`), so that a plain
`kubectl apply -k deploy/` is enough; the kopf.dev peering CRDs must be installed
(deploy/peering-crds.yaml).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from typing import Any

import kopf
import kubernetes

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"
CLUSTER_PLURAL, NAMESPACED_PLURAL = "clusterkopfpeerings", "kopfpeerings"
LIFETIME_ENV = "FLINKOP_PEERING_LIFETIME"
DEFAULT_LIFETIME = 60

_EPOCH_END = 2**32  # seconds; priorities stay positive until 2106
_TIE_BITS = 20  # the whole priority stays below 2**53, exact in any JSON reader
_EXACT_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

logger = logging.getLogger(__name__)

_namespaces: tuple[str, ...] = ()


def default_priority(started: float | None = None) -> int:
    """A priority that is higher the earlier the process started (`started`, epoch seconds)."""
    seconds = int(time.time() if started is None else started)
    return ((_EPOCH_END - seconds) << _TIE_BITS) | random.getrandbits(_TIE_BITS)


def lifetime_from_env(environ: dict[str, str] | None = None) -> int:
    raw = (environ if environ is not None else dict(os.environ)).get(LIFETIME_ENV, str(DEFAULT_LIFETIME))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{LIFETIME_ENV}={raw!r} must be a whole number of seconds >= 1")
    return value


def serve_namespaces(namespaces: list[str]) -> None:
    """The `--namespace` values: KopfPeering objects are ensured in those that are exact names."""
    global _namespaces
    _namespaces = tuple(namespaces)


@kopf.on.startup()
def configure_peering(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.lifetime = lifetime_from_env()
    settings.peering.stealth = True  # no log line for every keep-alive
    if settings.peering.standalone or not settings.peering.mandatory:
        return
    _ensure_peering_objects(settings.peering.name, settings.peering.clusterwide)


def _ensure_peering_objects(name: str, clusterwide: bool) -> None:
    config: Any = kubernetes.config  # untyped
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = kubernetes.client.CustomObjectsApi()
    if clusterwide:
        _ensure(api, name, None)
        return
    for namespace in _namespaces:
        if _EXACT_NAMESPACE.match(namespace):
            _ensure(api, name, namespace)
        else:
            logger.warning(f"--namespace {namespace!r} is a pattern: create KopfPeering {name!r} in each namespace.")


def _ensure(api: Any, name: str, namespace: str | None) -> None:
    """Reads the peering object and creates it when absent (get first: a pre-made one needs no `create`)."""
    kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
    where = "" if namespace is None else f" in namespace {namespace}"
    try:
        if namespace is None:
            api.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, CLUSTER_PLURAL, name)
        else:
            api.get_namespaced_custom_object(PEERING_GROUP, PEERING_VERSION, namespace, NAMESPACED_PLURAL, name)
        return
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
    body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": kind, "metadata": {"name": name}}
    try:
        if namespace is None:
            api.create_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, CLUSTER_PLURAL, body)
        else:
            api.create_namespaced_custom_object(PEERING_GROUP, PEERING_VERSION, namespace, NAMESPACED_PLURAL, body)
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            return  # another replica made it first
        if exc.status == 404:
            raise kopf.PermanentError(
                f"{kind} is not a known resource: install the kopf.dev peering CRDs "
                "(kubectl apply -f deploy/peering-crds.yaml) or run without --peering"
            ) from exc
        raise
    logger.info(f"Created {kind} {name!r}{where} for peering.")
