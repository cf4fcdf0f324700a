"""The CRD's schema uses only keys Kubernetes knows: a YAML slip (an unquoted comma in a flow
mapping makes a key of its own) is caught here, not by kubectl's validation on a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).resolve().parents[2] / "crds" / "flinkjob.yaml"
# JSONSchemaProps fields of apiextensions.k8s.io/v1 that a structural schema may use.
KNOWN = {
    "type", "description", "properties", "items", "required", "enum", "default", "nullable", "format",
    "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "additionalProperties",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource", "anyOf",
    "allOf", "oneOf", "not", "title", "example", "multipleOf",
}  # fmt: skip


def unknown_keys(schema: Any, path: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{path}: not an object"]
    found = [f"{path}.{key}" for key in schema if key not in KNOWN]
    for name, sub in (schema.get("properties") or {}).items():
        found += unknown_keys(sub, f"{path}.properties.{name}")
    if isinstance(schema.get("items"), dict):
        found += unknown_keys(schema["items"], f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        found += unknown_keys(schema["additionalProperties"], f"{path}.additionalProperties")
    return found


def test_every_schema_in_the_crd_uses_only_fields_kubernetes_knows() -> None:
    crd = yaml.safe_load(CRD.read_text())
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert unknown_keys(schema, version["name"]) == []


def test_every_description_is_text() -> None:
    def descriptions(schema: Any) -> list[Any]:
        if not isinstance(schema, dict):
            return []
        out = [schema["description"]] if "description" in schema else []
        for sub in (schema.get("properties") or {}).values():
            out += descriptions(sub)
        if isinstance(schema.get("items"), dict):
            out += descriptions(schema["items"])
        return out

    crd = yaml.safe_load(CRD.read_text())
    for version in crd["spec"]["versions"]:
        assert all(isinstance(d, str) and d for d in descriptions(version["schema"]["openAPIV3Schema"]))
