"""Runs the Argo CD health check for FlinkJob (deploy/argocd/health.lua) for real, in Lua.

Argo CD runs health checks in gopher-lua (Lua 5.1) with the resource as the global `obj`; this
runs the same file in lupa's Lua 5.1 with `obj` built the way Argo CD builds it from the JSON:
objects and arrays become tables (arrays 1-based), null becomes nil (the key is absent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lupa.lua51 import LuaRuntime

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
CM_PATCH = REPO / "deploy" / "argocd" / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.flinkop.io_FlinkJob"
STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended")


def _to_lua(lua: Any, value: Any) -> Any:
    """A JSON-like Python value as a Lua value: dicts and lists as tables, None as nil."""
    if isinstance(value, Mapping):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        table = lua.table()
        index = 1
        for item in value:
            if item is not None:  # Argo CD appends nil to an array, which adds nothing
                table[index] = _to_lua(lua, item)
                index += 1
        return table
    return value


def argocd_health(resource: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) that deploy/argocd/health.lua returns for `resource` (a FlinkJob as JSON)."""
    lua = LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = _to_lua(lua, resource)
    result = lua.execute(HEALTH_LUA.read_text())
    if result is None or lua.eval("type")(result) != "table":
        raise AssertionError(f"health.lua returned {result!r}, not a table")
    status, message = result["status"], result["message"]
    if status not in STATUSES:
        raise AssertionError(f"health.lua returned status {status!r}, not one of {STATUSES}")
    return str(status), "" if message is None else str(message)
