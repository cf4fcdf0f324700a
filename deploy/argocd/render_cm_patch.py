"""Writes argocd-cm-patch.yaml from health.lua, so that the two cannot drift.

    python3 deploy/argocd/render_cm_patch.py          # rewrite argocd-cm-patch.yaml
    python3 deploy/argocd/render_cm_patch.py --check  # exit 1 if it is out of date

tests/unit/test_argocd_health.py checks that the patch embeds health.lua exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEALTH_LUA = HERE / "health.lua"
CM_PATCH = HERE / "argocd-cm-patch.yaml"
KEY = "resource.customizations.health.flinkop.io_FlinkJob"

HEADER = """\
# Argo CD health check for FlinkJob (flinkop.io): Healthy, Progressing, Degraded or Suspended from the
# operator's status (phase and the kstatus conditions Ready, Reconciling, Stalled).
# Generated from health.lua by render_cm_patch.py: edit health.lua, then run
#   python3 deploy/argocd/render_cm_patch.py
# Apply with:
#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm-patch.yaml
"""


def render(lua: str) -> str:
    if not lua.endswith("\n") or lua.endswith("\n\n"):
        raise ValueError("health.lua must end with exactly one newline (a YAML `|` block keeps one)")
    if lua[:1].isspace():
        raise ValueError("health.lua must not start with whitespace (a YAML `|` block takes its indent from it)")
    if any(line != line.rstrip() or "\t" in line for line in lua.splitlines()):
        raise ValueError("health.lua must have no trailing whitespace and no tabs")
    body = "".join(f"    {line}\n" if line else "\n" for line in lua.splitlines())
    return (
        f"{HEADER}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n"
        f"  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n"
        f"data:\n  {KEY}: |\n{body}"
    )


def main(argv: list[str]) -> int:
    text = render(HEALTH_LUA.read_text())
    if "--check" in argv:
        if CM_PATCH.read_text() != text:
            print(f"{CM_PATCH} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    CM_PATCH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
