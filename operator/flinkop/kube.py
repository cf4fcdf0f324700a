"""Writes to the Kubernetes API that must happen inside a pass (not after the handler returns)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from typing import Any

import kubernetes

from flinkop import GROUP, PLURAL, VERSION
from flinkop.credentials import CredentialsError

KUBE_POOL_SIZE = 32


class Conflict(Exception):
    """The resource changed since it was read: the pass must start again from a fresh read."""


class Gone(Exception):
    """The resource no longer exists."""


class StatusStore:
    def __init__(self) -> None:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        # Every pass thread writes status through this client: a pool as large as they are many
        # (the default, 5 per CPU, made urllib3 drop and reopen connections under load).
        config = kubernetes.client.Configuration.get_default_copy()
        config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, KUBE_POOL_SIZE)
        self.api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))

    def writer(self, namespace: str, name: str, resource_version: str) -> StatusWriterWithVersion:
        return StatusWriterWithVersion(self.api, namespace, name, resource_version)

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The FlinkJob as it is now (None: it is gone)."""
        try:
            result: Any = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result)

    def set_finalizers(
        self, namespace: str, name: str, resource_version: str, finalizers: list[str], drop_annotations: list[str]
    ) -> dict[str, Any]:
        """Sets metadata.finalizers (and removes `drop_annotations`) on the version read, or Conflict."""
        metadata: dict[str, Any] = {"resourceVersion": resource_version, "finalizers": finalizers}
        if drop_annotations:
            metadata["annotations"] = {key: None for key in drop_annotations}
        try:
            result: Any = self.api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": metadata}
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{namespace}/{name} changed since it was read") from exc
            if exc.status == 404:
                raise Gone(f"{namespace}/{name} is gone") from exc
            raise
        return dict(result)


class StatusWriterWithVersion:
    """Patches status with the resourceVersion it was read at, so a stale pass cannot overwrite
    a newer write-ahead record (409 Conflict instead)."""

    def __init__(self, api: Any, namespace: str, name: str, resource_version: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.resource_version = resource_version
        self.last_written: dict[str, Any] | None = None  # the resource as the last write left it

    def __call__(self, status: dict[str, Any]) -> None:
        body = {"metadata": {"resourceVersion": self.resource_version}, "status": status}
        try:
            result = self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{self.namespace}/{self.name} changed since it was read") from exc
            raise
        self.resource_version = str(result["metadata"]["resourceVersion"])
        self.last_written = result


class SecretReader:
    """Reads a Secret by name (RBAC: `get` on secrets, never list or watch), cached for `max_age`
    seconds so a rotated credential is picked up within that time. Values are returned decoded and
    go nowhere but the credentials they make."""

    def __init__(self, max_age: float = 30.0) -> None:
        self.max_age = max_age
        self.api = kubernetes.client.CoreV1Api()
        self._cache: dict[tuple[str, str], tuple[float, Mapping[str, bytes] | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        with self._lock:
            cached = self._cache.get((namespace, name))
        if cached is not None and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        try:
            secret = self.api.read_namespaced_secret(name, namespace)
            data: Mapping[str, bytes] | None = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                data = None
            elif exc.status == 403:
                raise CredentialsError(
                    f"the operator may not read Secret {namespace}/{name} (it needs `get` on secrets)"
                ) from None
            else:
                raise CredentialsError(f"reading Secret {namespace}/{name} failed: HTTP {exc.status}") from None
        with self._lock:
            self._cache[(namespace, name)] = (time.monotonic(), data)
        return data
