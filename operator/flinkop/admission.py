"""The validating admission webhook: refuses a FlinkJob the operator could not act on, at the door.

It makes the checks the CRD schema cannot express on Kubernetes 1.20, by the same code the operator
runs on every pass (`spec.parse_spec`; without the webhook, the operator reports them in status as
`Stalled`/`InvalidSpec`), and one rule that needs the stored object: `spec.flinkRestUrl` cannot change
while a job is deployed on that cluster.

Served by kopf over https at `/validate-flinkjob` (`--webhook-listen HOST:PORT --webhook-cert F
--webhook-key F`); a ValidatingWebhookConfiguration points the apiserver there (deploy/webhook/).
This module is imported only when the webhook is served: kopf refuses to start with an admission
handler and no server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from flinkop import GROUP, PLURAL, VERSION
from flinkop.flink_client import TERMINAL_JOB_STATES
from flinkop.spec import SpecError, parse_spec

WEBHOOK_ID = "validate-flinkjob"  # kopf routes the URL path /validate-flinkjob to this handler

_server: kopf.WebhookServer | None = None


def listen(addr: str, port: int, certfile: str, keyfile: str) -> None:
    """Serves the webhook on addr:port with this certificate (re-read by kopf when the files change)."""
    global _server
    _server = kopf.WebhookServer(addr=addr, port=port, certfile=certfile, pkeyfile=keyfile)


@kopf.on.startup()
def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.admission.server = _server


def refusal(operation: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str | None:
    """Why this CREATE or UPDATE must be refused, or None to admit it."""
    new_spec = new.get("spec") or {}
    old_spec = (old or {}).get("spec") or {}
    if operation == "UPDATE" and new_spec == old_spec:
        return None  # metadata only (finalizers, kopf's annotations): never block the operator's own writes
    try:
        parsed = parse_spec(new_spec)
    except SpecError as exc:
        return str(exc)
    if operation == "UPDATE" and old is not None:
        old_url = str(old_spec.get("flinkRestUrl") or "").rstrip("/")
        status = old.get("status") or {}
        if old_url and parsed.flink_rest_url != old_url and _job_deployed(status):
            return (
                f"spec.flinkRestUrl cannot change from {old_url} while job {status.get('jobId')} runs there "
                f"(phase {status.get('phase')}): Flink cannot move a running job. To move it to another cluster, "
                "set spec.state: suspended (the operator takes a savepoint and records it in "
                "status.lastSavepoint.path), delete this FlinkJob (the savepoint is kept), and create it again "
                "with the new spec.flinkRestUrl and spec.initialSavepointPath set to that savepoint."
            )
    return None


def _job_deployed(status: Mapping[str, Any]) -> bool:
    """A job runs (or is being started or stopped) on the cluster that status names."""
    if status.get("upgrade"):
        return True  # a deploy, upgrade or suspension is in flight against the old cluster
    if not status.get("jobId") or status.get("phase") in ("Suspended", "Failed"):
        return False
    return status.get("jobState") not in TERMINAL_JOB_STATES


@kopf.on.validate(GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"])
def validate_flinkjob(**kwargs: Any) -> None:
    reason = refusal(kwargs["operation"], kwargs["old"], kwargs["new"])
    if reason is not None:
        raise kopf.AdmissionError(reason, code=422)
