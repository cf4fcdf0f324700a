"""The flinkop test bed: a real kube-apiserver (with etcd) and a real Flink session cluster,
started on loopback on free ports, usable from pytest fixtures and from the command line."""
