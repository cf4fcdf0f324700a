"""flinkop: a Kubernetes operator that makes Apache Flink job upgrades savepoint-safe."""

GROUP = "flinkop.io"
VERSION = "v1alpha1"
PLURAL = "flinkjobs"
FINALIZER = "flinkop.io/finalizer"
ANNOTATION_PREFIX = "flinkop.io"
