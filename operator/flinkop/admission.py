"""The validating admission webhook: refuses a FlinkJob the operator could not act on, at the door.

It makes the checks the CRD schema cannot express on Kubernetes 1.20, by the same code the operator
runs on every pass (`spec.parse_spec`; without the webhook, the operator reports them in status as
`Stalled`/`InvalidSpec`), two rules that need the stored object: `spec.flinkRestUrl` cannot change
while a job is deployed on that cluster, nor can the spec move between session and application mode
(`spec.cluster`) while its job runs in the old one; and the operator's policy: the namespace-to-cluster mapping
(`cluster_access`) and the denied networks, as far as they can be checked without DNS (a metadata
host name, a denied IP literal, in `spec.flinkRestUrl` or `spec.jar.uri`).

Served by kopf over https at `/validate-flinkjob` (`--webhook-listen HOST:PORT --webhook-cert F
--webhook-key F`); a ValidatingWebhookConfiguration points the apiserver there (deploy/webhook/).
This module is imported only when the webhook is served: kopf refuses to start with an admission
handler and no server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from flinkop import GROUP, PLURAL, VERSION, cluster_access
from flinkop.cluster_access import AccessPolicy
from flinkop.flink_client import TERMINAL_JOB_STATES
from flinkop.netguard import NetGuard, NetworkDenied
from flinkop.reconcile import failed_on_own_cluster
from flinkop.settings import OperatorSettings
from flinkop.spec import SpecError, parse_spec

WEBHOOK_ID = "validate-flinkjob"  # kopf routes the URL path /validate-flinkjob to this handler

_server: kopf.WebhookServer | None = None
_guard = OperatorSettings.from_env().net_guard()


def listen(addr: str, port: int, certfile: str, keyfile: str) -> None:
    """Serves the webhook on addr:port with this certificate (re-read by kopf when the files change)."""
    global _server
    _server = kopf.WebhookServer(addr=addr, port=port, certfile=certfile, pkeyfile=keyfile)


@kopf.on.startup()
def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.admission.server = _server


def refusal(
    operation: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    namespace: str = "",
    policy: AccessPolicy | None = None,
    guard: NetGuard | None = None,
) -> str | None:
    """Why this CREATE or UPDATE must be refused, or None to admit it."""
    new_spec = new.get("spec") or {}
    old_spec = _mapping((old or {}).get("spec"))
    if operation == "UPDATE" and new_spec == old_spec:
        return None  # metadata only (finalizers, kopf's annotations): never block the operator's own writes
    if not isinstance(new_spec, Mapping):
        return "spec must be an object"
    try:
        parsed = parse_spec(new_spec)
    except SpecError as exc:
        return str(exc)
    if operation == "UPDATE" and old is not None:
        moved = _mode_change(old_spec, parsed.cluster is not None, _mapping(old.get("status")))
        if moved is not None:
            return moved
    if parsed.cluster is not None:
        if guard is not None and parsed.deployment.jar_uri.startswith(("http://", "https://")):
            try:
                guard.check_url_statically(parsed.deployment.jar_uri, "spec.jar.uri")
            except NetworkDenied as exc:
                return f"DeniedNetwork: {exc}"
        return None  # the operator's own cluster: no cluster-access mapping or session URL applies
    if guard is not None:
        try:
            guard.check_url_statically(parsed.flink_rest_url, "spec.flinkRestUrl")
            if parsed.deployment.jar_uri.startswith(("http://", "https://")):
                guard.check_url_statically(parsed.deployment.jar_uri, "spec.jar.uri")
        except NetworkDenied as exc:
            return f"DeniedNetwork: {exc}"
    if policy is not None:
        refused = policy.refusal(namespace, parsed)
        if refused is not None:
            return f"{refused[0]}: {refused[1]}"
    if operation == "UPDATE" and old is not None:
        old_url = str(old_spec.get("flinkRestUrl") or "").rstrip("/")
        status = _mapping(old.get("status"))
        if old_url and parsed.flink_rest_url != old_url and _job_deployed(status):
            return (
                f"spec.flinkRestUrl cannot change from {old_url} while job {status.get('jobId')} runs there "
                f"(phase {status.get('phase')}): Flink cannot move a running job. To move it to another cluster, "
                "set spec.state: suspended (the operator takes a savepoint and records it in "
                "status.lastSavepoint.path), delete this FlinkJob (the savepoint is kept), and create it again "
                "with the new spec.flinkRestUrl and spec.initialSavepointPath set to that savepoint."
            )
    return None


def _mode_change(old_spec: Mapping[str, Any], to_application: bool, status: Mapping[str, Any]) -> str | None:
    """A move between session and application mode while the job runs in the old one: refused, saying how."""
    was_application = bool(old_spec.get("cluster"))
    if was_application == to_application:
        return None
    if was_application and status.get("phase") == "Failed" and status.get("jobId") and not status.get("upgrade"):
        return failed_on_own_cluster(str(status["jobId"]))
    if not _job_deployed(status):
        return None
    old, new = ("a session cluster", "application mode")
    if was_application:
        old, new = ("its own cluster", "a session cluster")
    return (
        f"job {status.get('jobId')} runs on {old} (phase {status.get('phase')}); a running job cannot move to {new}. "
        "Set spec.state: suspended first (the operator takes a savepoint and records it in "
        "status.lastSavepoint.path), then change the mode together with spec.state: running: the job starts in "
        "the new mode from that savepoint (a directory both modes' pods can read)."
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _job_deployed(status: Mapping[str, Any]) -> bool:
    """A job runs (or is being started or stopped) on the cluster that status names."""
    if status.get("upgrade"):
        return True  # a deploy, upgrade or suspension is in flight against the old cluster
    if not status.get("jobId") or status.get("phase") in ("Suspended", "Failed"):
        return False
    return status.get("jobState") not in TERMINAL_JOB_STATES


@kopf.on.validate(GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"])
def validate_flinkjob(**kwargs: Any) -> None:
    new = kwargs["new"]
    namespace = str(kwargs.get("namespace") or (new.get("metadata") or {}).get("namespace") or "")
    reason = refusal(kwargs["operation"], kwargs["old"], new, namespace, cluster_access.CURRENT.get(), _guard)
    if reason is not None:
        raise kopf.AdmissionError(reason, code=422)
