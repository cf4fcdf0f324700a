"""Writes to the Kubernetes API that must happen inside a pass (not after the handler returns)."""

from __future__ import annotations

from typing import Any

import kubernetes

from flinkop import GROUP, PLURAL, VERSION


class Conflict(Exception):
    """The resource changed since it was read: the pass must start again from a fresh read."""


class StatusStore:
    def __init__(self) -> None:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        self.api = kubernetes.client.CustomObjectsApi()

    def writer(self, namespace: str, name: str, resource_version: str) -> StatusWriterWithVersion:
        return StatusWriterWithVersion(self.api, namespace, name, resource_version)


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
