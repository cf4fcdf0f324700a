"""Act in application mode: the side effects on the FlinkJob's own cluster (through the Kubernetes API).

A start (`SubmitJob` whose deployment has a cluster) creates the cluster's objects, or replaces them
in place, for that start: the job id the status recorded first and the savepoint it restores from. The
JobManager runs the job under that id as it comes up; applying the same start again changes nothing, so
a pass that died after the write-ahead record and before (or during) the call is finished by the next.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flinkop.actions import DeleteCluster, SubmitJob
from flinkop.app_cluster import ClusterBuildError, ClusterStart, build_cluster, cluster_names
from flinkop.app_cluster_kube import AppClusterError, AppClusterKube
from flinkop.spec import FlinkJobSpec


@dataclass(frozen=True)
class AppClusterActs:
    """The cluster of FlinkJob `namespace/name` (uid `uid`), whose spec is `spec`."""

    kube: AppClusterKube
    namespace: str
    name: str
    uid: str
    spec: FlinkJobSpec

    def start(self, action: SubmitJob) -> None:
        """Raises AppClusterError saying what failed."""
        spec = replace(self.spec, deployment=action.deployment)  # a rollback starts the last stable spec
        try:
            start = ClusterStart(action.job_id, action.savepoint_path, action.allow_non_restored_state)
            objects = build_cluster(name=self.name, namespace=self.namespace, uid=self.uid, spec=spec, start=start)
        except ClusterBuildError as exc:
            raise AppClusterError(f"the cluster's objects cannot be built: {exc}", permanent=True) from exc
        self.kube.apply(objects)

    def scale(self, taskmanagers: int) -> None:
        """The TaskManagers' count alone (an in-place rescale): the running pods stay as they are."""
        self.kube.scale_taskmanagers(self.namespace, cluster_names(self.name), self.uid, taskmanagers)

    def delete(self, action: DeleteCluster) -> None:
        self.kube.delete(self.namespace, cluster_names(self.name), self.uid, job_id=action.job_id)
