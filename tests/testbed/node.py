"""A real Kubernetes node beside the bed's apiserver: containerd, runc, a CNI bridge, kubelet,
kube-controller-manager and kube-scheduler (v1.20.2, built by tests/bed/scripts/build-kube-node.sh and
cached like the apiserver), with the bed's images (testbed.images) imported into containerd.

Everything stays on this machine: the kubelet and controller-manager listen on 127.0.0.1 only (the
scheduler and controller-manager serve nothing), pods sit on a bridge of their own with a /16 from
host-local IPAM and no default route (no masquerade, no forwarding: the host's ip_forward is left as
it is), the host has an address on that bridge so it reaches pod IPs, containerd pulls nothing (every
registry endpoint is a closed loopback port; images come from `ctr images import`), the kubelet gets
`AWS_EC2_METADATA_DISABLED=true` (Kubernetes 1.20's AWS credential provider would otherwise try the
cloud metadata address), and a kubelet built to warn about, never change, the host's sysctls. Cluster
DNS is testbed.cluster_dns on the host's bridge address: it answers Service names of the cluster domain
from the apiserver (a headless Service with its pods' IPs) and refuses every other name, forwarding
nothing (pods with dnsPolicy Default get a resolv.conf naming their own loopback). No kube-proxy:
Services have no ClusterIP routing; pods reach each other by pod IP, or by a headless Service's name.

containerd runs with `restrict_oom_score_adj = true` (these machines lack CAP_SYS_RESOURCE, so
lowering oom_score_adj fails and every sandbox with it) and its root, state, socket and runc state
in the node's directory. A few paths are fixed in Kubernetes 1.20 and containerd 1.6 and so shared
by the machine: /var/log/pods, /var/log/containers, /var/lib/kubelet/device-plugins,
/var/lib/cni/results, /run/containerd/s (shim sockets); `Node.stop()` removes what this node put
there, unmounts what it mounted, removes its cgroups (all under one cgroup root of its own) and its
bridge, and kills containerd's shims by their socket address. One node at a time per machine (the
kubelet's device-plugin socket is fixed).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import yaml

from testbed import procs
from testbed.kube import NODE_NAME, KubeCluster, KubectlError, cache_dir, kubectl_binary

if TYPE_CHECKING:
    from testbed.images import ImageTar

KUBE_VERSION = "v1.20.2"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "bed" / "scripts" / "build-kube-node.sh"
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_FS = Path("/sys/fs/cgroup")

# Paths Kubernetes 1.20 / containerd 1.6 write to whatever their configuration says.
FIXED_PATHS = (
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/cni/results"),
    Path("/run/containerd/s"),
    Path("/run/containerd/fifo"),
)

_READY_TIMEOUT = 120.0

# Host sysctls an unpatched kubelet would set (KernelTunableModify), and the one the CNI bridge
# plugin's isGateway would: the node must leave them as they were.
HOST_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)


def read_host_sysctls() -> dict[str, str]:
    """The current values of HOST_SYSCTLS (from /proc/sys)."""
    return {name: (Path("/proc/sys") / name).read_text().strip() for name in HOST_SYSCTLS}


class NodeError(RuntimeError):
    """The node could not be built, started or stopped; the message carries the relevant log tails."""


def _say(message: str) -> None:
    print(f"[testbed.node] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Binaries


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    controller_manager: Path
    scheduler: Path
    pause: Path


def ensure_node_binaries() -> NodeBinaries:
    """The cached kubelet, kube-controller-manager, kube-scheduler and pause, built first when missing."""
    directory = cache_dir() / f"kube-node-{KUBE_VERSION}"
    binaries = NodeBinaries(
        kubelet=directory / "kubelet",
        controller_manager=directory / "kube-controller-manager",
        scheduler=directory / "kube-scheduler",
        pause=directory / "pause",
    )
    paths = (binaries.kubelet, binaries.controller_manager, binaries.scheduler, binaries.pause)
    if all(os.access(p, os.X_OK) for p in paths):
        return binaries
    started = time.monotonic()
    _say(f"building kubelet, kube-controller-manager, kube-scheduler {KUBE_VERSION} (about 6 minutes, once)")
    result = subprocess.run([str(BUILD_SCRIPT), str(cache_dir())], check=False)
    if result.returncode != 0:
        raise NodeError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}; see its output above")
    missing = [str(p) for p in paths if not os.access(p, os.X_OK)]
    if missing:
        raise NodeError(f"{BUILD_SCRIPT} succeeded but {', '.join(missing)} are missing")
    _say(f"node binaries built in {time.monotonic() - started:.0f} s")
    return binaries


def _require_tools() -> dict[str, str]:
    tools = {}
    for tool in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "mount", "umount"):
        found = shutil.which(tool)
        if found is None:
            raise NodeError(f"'{tool}' not found; run tests/bed/scripts/install-system-deps.sh")
        tools[tool] = found
    for plugin in ("bridge", "host-local", "loopback"):
        if not os.access(CNI_BIN_DIR / plugin, os.X_OK):
            raise NodeError(f"CNI plugin {CNI_BIN_DIR / plugin} missing; install containernetworking-plugins")
    if os.geteuid() != 0:
        raise NodeError("the node needs root (containerd, runc, network namespaces, cgroups)")
    return tools


# --------------------------------------------------------------------------------------------------
# The node


@dataclass
class Node:
    kube: KubeCluster
    workdir: Path
    name: str
    bridge: str
    pod_subnet: str
    host_ip: str  # the host's address on the pod bridge
    cgroup_root: str
    containerd_socket: Path
    containerd: procs.ManagedProcess
    kubelet: procs.ManagedProcess
    controller_manager: procs.ManagedProcess
    scheduler: procs.ManagedProcess
    cluster_dns: procs.ManagedProcess | None = None  # testbed.cluster_dns on host_ip:53
    images: list[str] = field(default_factory=list)
    host_sysctls_before: dict[str, str] = field(default_factory=dict)
    startup_seconds: float = 0.0
    image_import_seconds: float = 0.0
    image_root: Path | None = None  # containerd's root: images, snapshots, metadata
    _image_root_lock: IO[str] | None = field(default=None, repr=False)
    _fixed_before: dict[str, set[str] | None] = field(default_factory=dict, repr=False)
    _cgroups_before: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def processes(self) -> list[procs.ManagedProcess]:
        found = [self.containerd, self.kubelet, self.controller_manager, self.scheduler]
        return found + ([self.cluster_dns] if self.cluster_dns is not None else [])

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines)}" for p in self.processes)

    def ctr(self, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """`ctr` against this node's containerd, in the CRI's namespace k8s.io."""
        return _ctr_at(self.containerd_socket, *args, check=check, timeout=timeout)

    def import_images(self, tars: list[ImageTar]) -> float:
        """Imports the images containerd does not hold yet (or holds at another digest), unpacked for
        the CRI. Returns the seconds it took."""
        started = time.monotonic()
        listed = self.ctr("images", "list").stdout.splitlines()[1:]
        present = {line.split()[0]: line.split()[2] for line in listed if len(line.split()) > 2}
        for tar in tars:
            if present.get(tar.ref) != tar.manifest_digest:
                self.ctr("images", "import", "--digests", str(tar.path))
        return time.monotonic() - started

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each node process (containerd's shims summed as `shims`), in MiB."""
        rss = {p.name: _rss_mib(p.pid) for p in self.processes if p.alive()}
        rss["shims"] = sum(_rss_mib(pid) for pid in _shim_pids(self.containerd_socket))
        return rss

    def stop(self) -> None:
        """Stops everything and removes what the node left outside its directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []
        pod_uids = _node_pod_uids(self.kube)
        if self.kubelet.alive() and self.containerd.alive():
            _delete_node_pods(self.kube, timeout=30)
        for proc in (self.scheduler, self.controller_manager, self.kubelet):
            proc.stop(timeout=10)
        if self.cluster_dns is not None:
            self.cluster_dns.stop(timeout=5)
        if self.containerd.alive():
            _remove_leftover_containers(self.containerd_socket)
        self.containerd.stop(timeout=10)
        for pid in _shim_pids(self.containerd_socket):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        errors += _unmount_under(self.workdir)
        errors += _remove_cgroups(self.cgroup_root, self._cgroups_before)
        _run_quiet(["ip", "link", "delete", self.bridge])
        errors += _clean_fixed_paths(self._fixed_before, pod_uids, self.name)
        for sub in ("containerd", "kubelet"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        _record_path(self.name).unlink(missing_ok=True)
        if self._image_root_lock is not None and self.image_root is not None:
            # The shared image store is reused by the next node only after a clean stop.
            if not errors:
                (self.image_root / _CLEAN_MARK).touch()
            self._image_root_lock.close()
            self._image_root_lock = None
        if errors:
            _say("teardown left: " + "; ".join(errors))


def _ctr_at(socket: Path, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", f"--address={socket}", "--namespace=k8s.io", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0.0


def _shim_pids(socket: Path) -> list[int]:
    """containerd-shim-runc-v2 processes of the containerd at `socket` (they outlive containerd)."""
    pids = []
    needle = str(socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _run_quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _run(argv: list[str]) -> str:
    done = _run_quiet(argv)
    if done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --------------------------------------------------------------------------------------------------
# Start


def _pick_subnet() -> ipaddress.IPv4Network:
    """A /16 for pods that no route of this machine overlaps (10.200.0.0/16 upwards)."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]")
    used = []
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    for second in range(200, 250):
        candidate = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise NodeError("no free 10.x.0.0/16 for the pod network")


def _watched_paths() -> list[Path]:
    """FIXED_PATHS and their parents, deepest first."""
    paths = set(FIXED_PATHS) | {p.parent for p in FIXED_PATHS} | {Path("/var/lib/kubelet")}
    return sorted(paths, key=lambda p: (len(p.parts), str(p)), reverse=True)


def _snapshot_fixed_paths() -> dict[str, set[str] | None]:
    """For each watched path: its entries, or None when it does not exist."""
    return {str(p): set(os.listdir(p)) if p.is_dir() else None for p in _watched_paths()}


def _cgroup_hierarchies() -> list[Path]:
    return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and (p / "cgroup.procs").exists())


def _snapshot_cgroups() -> dict[str, set[str]]:
    return {str(h): {c.name for c in h.iterdir() if c.is_dir()} for h in _cgroup_hierarchies()}


def _create_cgroup_root(name: str) -> None:
    """The kubelet's --cgroup-root must exist in every hierarchy; cpuset needs cpus/mems to be usable."""
    for hierarchy in _cgroup_hierarchies():
        path = hierarchy / name.strip("/")
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def _containerd_config(workdir: Path, image_root: Path, socket: Path, pause_image: str, cni_conf_dir: Path) -> str:
    root = workdir / "containerd"
    cri = "plugins.'io.containerd.grpc.v1.cri'"
    return f"""\
# Written by tests/testbed/node.py: everything under {root}; see the module docstring.
version = 2
root = "{image_root}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

[{cri}]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Unprivileged-like root here: lowering oom_score_adj needs CAP_SYS_RESOURCE, which is missing.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{root / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  # Nothing is ever pulled: every registry is this closed loopback port (and HTTPS_PROXY too).
  [{cri}.registry.mirrors."docker.io"]
    endpoint = ["http://127.0.0.1:9"]
  [{cri}.registry.mirrors."*"]
    endpoint = ["http://127.0.0.1:9"]
"""


def _cni_conflist(name: str, bridge: str, subnet: ipaddress.IPv4Network, host_ip: str, ipam_dir: Path) -> str:
    hosts = list(subnet.hosts())
    conflist = {
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                # The host's address on the bridge is set by the node (not isGateway: that would
                # also turn on the host's ip_forward), so the host reaches pods and nothing routes.
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": str(subnet), "rangeStart": str(hosts[1]), "rangeEnd": str(hosts[-1])}]],
                    "routes": [],  # no default route: pods reach only the bridge's /16
                },
            },
        ],
    }
    del host_ip
    return json.dumps(conflist, indent=2) + "\n"


def _kubelet_config(
    workdir: Path, port: int, healthz_port: int, client_ca: Path, cgroup_root: str, cluster_dns: str | None = None
) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        # No iptables chains on the host (KUBE-MARK-MASQ and friends are kube-proxy's business).
        "makeIPTablesUtilChains": False,
        "protectKernelDefaults": False,
        # The disk is shared: never garbage-collect images (they are imported, not pullable), and evict
        # only when it is really full.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        # Pods with dnsPolicy Default get their own loopback as nameserver: nothing outside is reachable.
        # ("" would mean the host's /etc/resolv.conf, and so would an empty file: containerd copies the
        # host's file when the kubelet passes no nameserver.)
        "resolvConf": str(workdir / "kubelet" / "resolv.conf"),
        "clusterDomain": "cluster.local",
        # Pods with dnsPolicy ClusterFirst (the default) ask the bed's cluster DNS (testbed.cluster_dns).
        **({"clusterDNS": [cluster_dns]} if cluster_dns else {}),
        "hairpinMode": "none",
        "volumePluginDir": str(workdir / "kubelet" / "volume-plugins"),
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusUpdateFrequency": "4s",
        "runtimeRequestTimeout": "2m",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _closed_proxy_env() -> dict[str, str]:
    """A proxy on a closed loopback port for every HTTP client of the node: nothing leaves the machine."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    closed = "http://127.0.0.1:9"
    env.update(
        {
            "HTTP_PROXY": closed,
            "HTTPS_PROXY": closed,
            "http_proxy": closed,
            "https_proxy": closed,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # Kubernetes 1.20's AWS credential provider otherwise asks the cloud metadata address.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def start_node(
    kube: KubeCluster,
    workdir: Path,
    *,
    images: tuple[str, ...] | None = None,
    timeout: float = _READY_TIMEOUT,
    detach: bool = False,
) -> Node:
    """Starts containerd, imports the images, starts the kubelet, controller-manager and scheduler
    against `kube`, and waits until the node is Ready and the `default` ServiceAccount has its token.

    `images` names images of testbed.images (all of them by default); they are built first when
    not cached. Raises NodeError, with log tails, if the node does not come up (and cleans up).

    `detach=True` lets the node outlive this Python process (the demo's bed): pid files in
    workdir/pids/ and what its teardown needs in workdir/DETACHED_STATE; `stop_detached_node(workdir)`
    stops it and cleans up as `Node.stop()` does. The shared image store's lock is held only while this
    process lives; no other node starts while this one runs anyway (the kubelet's fixed device-plugin
    socket is checked first)."""
    from testbed import images as bed_images

    started = time.monotonic()
    tools = _require_tools()
    binaries = ensure_node_binaries()
    wanted = tuple(bed_images.BUILDERS) if images is None else images
    if bed_images.PAUSE_IMAGE not in wanted:
        wanted = (bed_images.PAUSE_IMAGE, *wanted)
    tars = bed_images.build_all(wanted)
    images_built = time.monotonic()

    _sweep_stale_nodes()
    if kube.kubelet_client_ca is None or kube.service_account_key is None or not kube.component_kubeconfigs:
        raise NodeError("the apiserver was not started ready for a node (testbed.kube.start_kube)")
    if _run_quiet(["ip", "link", "show"]).stdout.count(": fkbr") and _device_plugin_socket_in_use():
        raise NodeError("another bed node runs on this machine (only one at a time: fixed kubelet paths)")

    workdir = workdir.resolve()
    for sub in ("containerd", "kubelet", "cni", "logs", "certs"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    for sub in ("containerd", "kubelet/root", "kubelet/certs", "kubelet/volume-plugins", "cni/net.d", "cni/ipam"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir()

    suffix = secrets.token_hex(3)
    name = f"flinkop-{suffix}"
    bridge = f"fkbr{suffix}"
    cgroup_root = f"/flinkop-node-{suffix}"
    subnet = _pick_subnet()
    host_ip = str(next(iter(subnet.hosts())))
    socket = workdir / "containerd" / "containerd.sock"
    image_root, image_root_lock = _image_root(workdir)
    if len(str(socket)) > 100:
        raise NodeError(f"{socket} is too long for a unix socket path; use a shorter work directory")

    fixed_before = _snapshot_fixed_paths()
    cgroups_before = _snapshot_cgroups()
    env = _closed_proxy_env()
    # What a later start needs to clean up after this node, should this process be killed outright
    # (its pods' processes and containerd's shims outlive it).
    record = {
        "workdir": str(workdir),
        "socket": str(socket),
        "bridge": bridge,
        "cgroup_root": cgroup_root,
        "fixed_before": {path: None if entries is None else sorted(entries) for path, entries in fixed_before.items()},
    }
    _record_path(name).parent.mkdir(parents=True, exist_ok=True)
    _record_path(name).write_text(json.dumps(record) + "\n")

    (workdir / "containerd" / "config.toml").write_text(
        _containerd_config(workdir, image_root, socket, bed_images.PAUSE_IMAGE, workdir / "cni" / "net.d")
    )
    (workdir / "cni" / "net.d" / "10-flinkop.conflist").write_text(
        _cni_conflist(name, bridge, subnet, host_ip, workdir / "cni" / "ipam")
    )
    kubelet_port, healthz_port = procs.free_port(), procs.free_port()
    (workdir / "kubelet" / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    kubelet_config = workdir / "kubelet" / "config.yaml"
    kubelet_config.write_text(
        _kubelet_config(workdir, kubelet_port, healthz_port, kube.kubelet_client_ca, cgroup_root, cluster_dns=host_ip)
    )
    cluster_dns = procs.ManagedProcess(
        "cluster-dns",
        [sys.executable, "-m", "testbed.cluster_dns", "--listen", host_ip, "--kubeconfig", str(kube.admin_kubeconfig)],
        logs / "cluster-dns.log",
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        **_detached(workdir, "cluster-dns", detach),
    )

    containerd = procs.ManagedProcess(
        "containerd",
        [tools["containerd"], f"--config={workdir / 'containerd' / 'config.toml'}", "--log-level=warn"],
        logs / "containerd.log",
        env=env,
        **_detached(workdir, "containerd", detach),
    )
    kubelet = procs.ManagedProcess(
        "kubelet",
        [
            str(binaries.kubelet),
            f"--config={kubelet_config}",
            f"--kubeconfig={kube.component_kubeconfigs['kubelet']}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{socket}",
            f"--image-service-endpoint=unix://{socket}",
            f"--hostname-override={NODE_NAME}",
            f"--root-dir={workdir / 'kubelet' / 'root'}",
            f"--cert-dir={workdir / 'kubelet' / 'certs'}",
            f"--v={os.environ.get('FLINKOP_KUBELET_V', '1')}",
        ],
        logs / "kubelet.log",
        env=env,
        **_detached(workdir, "kubelet", detach),
    )
    cm_kubeconfig = kube.component_kubeconfigs["controller-manager"]
    controller_manager = procs.ManagedProcess(
        "kube-controller-manager",
        [
            str(binaries.controller_manager),
            f"--kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={kube.service_account_key}",
            f"--root-ca-file={kube.ca_file}" if kube.ca_file else "--root-ca-file=",
            "--controllers=*",
            "--v=1",
        ],
        logs / "kube-controller-manager.log",
        env=env,
        **_detached(workdir, "kube-controller-manager", detach),
    )
    scheduler = procs.ManagedProcess(
        "kube-scheduler",
        [
            str(binaries.scheduler),
            f"--kubeconfig={kube.component_kubeconfigs['scheduler']}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--port=0",
            "--leader-elect=false",
            "--v=1",
        ],
        logs / "kube-scheduler.log",
        env=env,
        **_detached(workdir, "kube-scheduler", detach),
    )
    node = Node(
        kube=kube,
        workdir=workdir,
        name=name,
        bridge=bridge,
        pod_subnet=str(subnet),
        host_ip=host_ip,
        cgroup_root=cgroup_root,
        containerd_socket=socket,
        containerd=containerd,
        kubelet=kubelet,
        controller_manager=controller_manager,
        scheduler=scheduler,
        cluster_dns=cluster_dns,
        images=[t.ref for t in tars],
        host_sysctls_before=read_host_sysctls(),
        image_root=image_root,
        _image_root_lock=image_root_lock,
        _fixed_before=fixed_before,
        _cgroups_before=cgroups_before,
    )
    try:
        # The bridge first, with the host's address: the CNI plugin then only attaches pods to it.
        _run(["ip", "link", "add", "name", bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{host_ip}/{subnet.prefixlen}", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        _create_cgroup_root(cgroup_root)
        containerd.start()
        _wait_for(lambda: socket.exists() and node.ctr("version", check=False).returncode == 0, node, 30, "containerd")
        node.image_import_seconds = node.import_images(tars)
        cluster_dns.start()  # on the bridge's host address, which exists from here on
        for proc in (kubelet, controller_manager, scheduler):
            proc.start()
        _wait_for(lambda: _node_ready(kube), node, timeout, "node Ready")
        _wait_for(lambda: _default_token_exists(kube), node, timeout, "the default ServiceAccount's token")
    except BaseException:
        node.stop()
        raise
    if detach:
        state = {
            "name": name,
            "socket": str(socket),
            "image_root": str(image_root),
            "image_root_shared": image_root_lock is not None,
            "cgroups_before": {path: sorted(names) for path, names in cgroups_before.items()},
        }
        (workdir / DETACHED_STATE).write_text(json.dumps(state, indent=2) + "\n")
    node.startup_seconds = time.monotonic() - started
    _say(
        f"node {NODE_NAME} Ready in {node.startup_seconds:.1f} s (images {images_built - started:.1f} s, "
        f"import {node.image_import_seconds:.1f} s); pods on {bridge} {subnet}, host at {host_ip}"
    )
    return node


_CLEAN_MARK = "flinkop-clean-stop"
DETACHED_STATE = "detached-node.json"
DETACHED_PROCESSES = ("kube-scheduler", "kube-controller-manager", "kubelet", "cluster-dns")  # containerd last


def _detached(workdir: Path, name: str, detach: bool) -> dict[str, Any]:
    """ManagedProcess arguments for a node process that outlives the starting process, with its pid file."""
    return {"detach": detach, "pid_path": workdir / "pids" / f"{name}.pid" if detach else None}


def _pidfile_alive(pid_file: Path) -> bool:
    try:
        os.killpg(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def stop_detached_node(workdir: Path, admin_kubeconfig: Path | None) -> bool:
    """Stops a node started with `start_node(..., detach=True)` in `workdir` and cleans up after it as
    `Node.stop()` does: its pods deleted through the apiserver first (when `admin_kubeconfig` is given
    and the apiserver answers), the kubelet, controller-manager, scheduler and cluster DNS stopped, the
    containers left killed, containerd stopped, then its pods' processes, mounts, cgroups, bridge and
    what it wrote to the fixed paths removed. True if there was such a node. Needs root."""
    state_file = workdir.resolve() / DETACHED_STATE
    try:
        state = json.loads(state_file.read_text())
        name, socket = str(state["name"]), Path(state["socket"])
        cgroups_before = {path: set(names) for path, names in state["cgroups_before"].items()}
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError) as exc:
        raise NodeError(f"{state_file} cannot be read ({exc}); remove it and clean up by hand") from exc
    pids = workdir.resolve() / "pids"
    record_file = _record_path(name)
    pod_uids: set[str] = set()
    if admin_kubeconfig is not None and admin_kubeconfig.exists() and _pidfile_alive(pids / "kubelet.pid"):
        kube = _KubectlAt(admin_kubeconfig)
        with contextlib.suppress(KubectlError, subprocess.TimeoutExpired, OSError):
            pod_uids = _node_pod_uids(kube)
            _delete_node_pods(kube, timeout=30)
    for proc in DETACHED_PROCESSES:
        procs.stop_pidfile(pids / f"{proc}.pid")
    if _containerd_answers(str(socket)):
        _remove_leftover_containers(socket)
    procs.stop_pidfile(pids / "containerd.pid")
    errors: list[str] = []
    try:
        record = json.loads(record_file.read_text())
        fixed_before = {
            path: None if entries is None else set(entries) for path, entries in record["fixed_before"].items()
        }
        errors = _clean_up_after(
            record_file,
            Path(record["workdir"]),
            socket,
            str(record["bridge"]),
            str(record["cgroup_root"]),
            fixed_before,
            cgroups_before=cgroups_before,
            pod_uids=pod_uids,
        )
    except (OSError, ValueError, KeyError) as exc:
        errors.append(f"node record {record_file} unreadable ({exc}): its bridge, mounts and cgroups were left")
    if state.get("image_root_shared") and not errors:
        _mark_image_root_clean(Path(state["image_root"]))
    state_file.unlink(missing_ok=True)
    if errors:
        _say("teardown left: " + "; ".join(errors))
    return True


def _mark_image_root_clean(image_root: Path) -> None:
    """Marks the shared image store as cleanly stopped (the next node reuses it), unless another node
    holds it by now."""
    with open(cache_dir() / "containerd-root.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        if image_root.is_dir():
            (image_root / _CLEAN_MARK).touch()


def _record_path(name: str) -> Path:
    return cache_dir() / "nodes" / f"{name}.json"


def _containerd_answers(socket_path: str) -> bool:
    import socket as socket_module

    with socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM) as s:
        try:
            s.connect(socket_path)
        except OSError:
            return False
    return True


def _cgroup_pids(cgroup_root: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / cgroup_root.strip("/")
        if not root.is_dir():
            continue
        for procs_file in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(line) for line in procs_file.read_text().split()}
    return pids


def _sweep_stale_nodes() -> None:
    """Cleans up after nodes whose process was killed before it could stop them (recorded in
    <cache>/nodes/, their containerd gone): kills their pods' processes (found by the node's own
    cgroup root) and containerd's shims (by socket), unmounts, removes cgroups and the bridge."""
    for record_file in sorted((cache_dir() / "nodes").glob("*.json")):
        try:
            record = json.loads(record_file.read_text())
            workdir, socket_path = Path(record["workdir"]), str(record["socket"])
            bridge, cgroup_root = str(record["bridge"]), str(record["cgroup_root"])
            fixed_before = {
                path: None if entries is None else set(entries) for path, entries in record["fixed_before"].items()
            }
        except (OSError, ValueError, KeyError):
            record_file.unlink(missing_ok=True)
            continue
        if _containerd_answers(socket_path):
            continue  # a live node (of another process, or detached)
        _say(f"cleaning up after {record_file.stem}, which was not stopped ({workdir})")
        _clean_up_after(record_file, workdir, Path(socket_path), bridge, cgroup_root, fixed_before)


def _clean_up_after(
    record_file: Path,
    workdir: Path,
    socket: Path,
    bridge: str,
    cgroup_root: str,
    fixed_before: dict[str, set[str] | None],
    cgroups_before: dict[str, set[str]] | None = None,
    pod_uids: set[str] | None = None,
) -> list[str]:
    """What Node.stop does once its processes are gone, for a node whose containerd is gone: kills its
    pods' processes (by its cgroup root) and containerd's shims (by socket), unmounts, removes its
    cgroups (`cgroups_before`: the top-level ones that existed before it started; without it, only its
    own root), its bridge, what it wrote to the fixed paths, and its record. Returns what it could not."""
    for _ in range(5):
        victims = _cgroup_pids(cgroup_root) | set(_shim_pids(socket))
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    errors = _unmount_under(workdir)
    errors += _remove_cgroups(cgroup_root, cgroups_before if cgroups_before is not None else _snapshot_cgroups())
    _run_quiet(["ip", "link", "delete", bridge])
    # Its pods' logs, CNI results, the kubelet's device-plugin files: what appeared since it started.
    errors += _clean_fixed_paths(fixed_before, pod_uids or set(), record_file.stem)
    for sub in ("containerd", "kubelet"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    record_file.unlink(missing_ok=True)
    return errors


def _image_root(workdir: Path) -> tuple[Path, IO[str] | None]:
    """containerd's root: the shared one in the cache (images imported and unpacked there stay for the
    next run), locked for this node's life; a private one in `workdir` when another node holds it.
    A shared root not marked as cleanly stopped (a run that crashed with containers in it) is wiped."""
    shared = cache_dir() / "containerd-root"
    shared.parent.mkdir(parents=True, exist_ok=True)
    lock = open(cache_dir() / "containerd-root.lock", "w")  # noqa: SIM115 - held for the node's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        _say(f"{shared} is in use by another node: importing the images into a private root")
        return workdir / "containerd" / "root", None
    if shared.exists() and not (shared / _CLEAN_MARK).exists():
        _say(f"{shared} was not stopped cleanly: starting it afresh")
        _unmount_under(shared)
        shutil.rmtree(shared, ignore_errors=True)
    (shared / _CLEAN_MARK).unlink(missing_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    return shared, lock


def _device_plugin_socket_in_use() -> bool:
    sock = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
    if not sock.exists():
        return False
    import socket as socket_module

    with socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _wait_for(check: Any, node: Node, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for proc in node.processes:
            if proc.popen is not None and not proc.alive():
                raise NodeError(f"{proc.name} exited while waiting for {what}\n{node.log_tails(40)}")
        try:
            if check():
                return
        except (KubectlError, subprocess.TimeoutExpired, OSError):
            pass
        if time.monotonic() > deadline:
            raise NodeError(f"no {what} after {timeout:.0f} s\n{node.log_tails(40)}")
        time.sleep(0.5)


def _node_ready(kube: KubeCluster) -> bool:
    result = kube.kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=10)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _default_token_exists(kube: KubeCluster) -> bool:
    result = kube.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "json", check=False, timeout=10)
    return result.returncode == 0 and bool(json.loads(result.stdout).get("secrets"))


# --------------------------------------------------------------------------------------------------
# Teardown helpers


class _Kubectl(Protocol):
    """What the teardown needs of the apiserver: KubeCluster, or _KubectlAt for a detached node."""

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class _KubectlAt:
    """kubectl with a kubeconfig file (a detached node's teardown, run by another process than its start)."""

    kubeconfig: Path

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cache = self.kubeconfig.parent / "kubectl-cache"
        argv = [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={cache}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, argv, done.stdout, done.stderr)
        return done


def _node_pod_uids(kube: _Kubectl) -> set[str]:
    result = kube.kubectl(
        "get", "pods", "-A", f"--field-selector=spec.nodeName={NODE_NAME}", "-o", "json", check=False, timeout=20
    )
    if result.returncode != 0:
        return set()
    return {str(item["metadata"]["uid"]) for item in json.loads(result.stdout).get("items", [])}


def _delete_node_pods(kube: _Kubectl, timeout: float) -> None:
    """Deletes the node's pods (their controllers first, so nothing recreates them) and waits for the
    kubelet to have stopped them, so the CNI plugin releases their addresses and veths."""
    selector = f"--field-selector=spec.nodeName={NODE_NAME}"
    kube.kubectl("delete", "deployments,replicasets,statefulsets,daemonsets,jobs", "--all", "-A",
                 "--wait=false", check=False, timeout=30)  # fmt: skip
    kube.kubectl("delete", "pods", "-A", selector, "--grace-period=1", "--wait=false", check=False, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = kube.kubectl("get", "pods", "-A", selector, "-o", "name", check=False, timeout=10)
        if result.returncode == 0 and not result.stdout.strip():
            return
        time.sleep(0.5)
    kube.kubectl("delete", "pods", "-A", selector, "--grace-period=0", "--force", check=False, timeout=30)


def _remove_leftover_containers(socket: Path) -> None:
    """Kills and deletes whatever containers the kubelet left (e.g. after it crashed)."""
    tasks = _ctr_at(socket, "tasks", "list", "-q", check=False).stdout.split()
    for task in tasks:
        _ctr_at(socket, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    for task in tasks:
        while _ctr_at(socket, "tasks", "delete", task, check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    for container in _ctr_at(socket, "containers", "list", "-q", check=False).stdout.split():
        _ctr_at(socket, "containers", "delete", container, check=False)


def _unmount_under(root: Path) -> list[str]:
    """Unmounts every mount point at or under `root`, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    errors = []
    for _ in range(3):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(root):
                mounts.append(point)
        if not mounts:
            return []
        for point in sorted(set(mounts), key=len, reverse=True):
            if _run_quiet(["umount", point]).returncode != 0:
                _run_quiet(["umount", "-l", point])
    leftover = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    if leftover:
        errors.append(f"still mounted: {', '.join(leftover[:5])}")
    return errors


def _rmdir_tree(path: Path) -> bool:
    """Removes a cgroup directory and its children (cgroupfs: rmdir only, deepest first)."""
    if not path.is_dir():
        return True
    for child in sorted((c for c in path.iterdir() if c.is_dir()), reverse=True):
        _rmdir_tree(child)
    for _ in range(20):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _remove_cgroups(cgroup_root: str, before: dict[str, set[str]]) -> list[str]:
    """Removes the node's cgroup root, and the kubepods / k8s.io cgroups it made at the top level."""
    errors = []
    for hierarchy in _cgroup_hierarchies():
        existed = before.get(str(hierarchy), set())
        names = {cgroup_root.strip("/")} | {
            c.name
            for c in hierarchy.iterdir()
            if c.is_dir() and c.name not in existed and (c.name.startswith("kubepods") or c.name == "k8s.io")
        }
        for name in names:
            if not _rmdir_tree(hierarchy / name):
                errors.append(f"cgroup {hierarchy / name}")
    return errors


def _clean_fixed_paths(before: dict[str, set[str] | None], pod_uids: set[str], network: str) -> list[str]:
    """Removes what this node wrote to the fixed paths: its pods' logs, its CNI results, the kubelet's
    device-plugin socket, and every directory there that did not exist before and is empty now."""
    pods_dir, containers_dir = Path("/var/log/pods"), Path("/var/log/containers")
    if pods_dir.is_dir():
        # The node's pods: those it runs now, and every one whose log directory appeared while it ran
        # (the kubelet removes a deleted pod's directory only some time later).
        old_logs = before.get(str(pods_dir)) or set()
        for entry in pods_dir.iterdir():
            if entry.name.rsplit("_", 1)[-1] in pod_uids or entry.name not in old_logs:
                shutil.rmtree(entry, ignore_errors=True)
    if containers_dir.is_dir():
        for link in containers_dir.iterdir():
            if link.is_symlink() and not link.exists():  # its pod's log directory is gone
                link.unlink(missing_ok=True)
    # CNI results (of this network and of containerd's per-sandbox loopback) and shim sockets that
    # appeared while the node ran are its own: one node at a time runs on a machine.
    for directory in (Path("/var/lib/cni/results"), Path("/run/containerd/s")):
        existed_entries = before.get(str(directory)) or set()
        if directory.is_dir():
            for entry in directory.iterdir():
                if entry.name.startswith(f"{network}-") or entry.name not in existed_entries:
                    entry.unlink(missing_ok=True)
    for leftover in ("kubelet.sock", "DEPRECATION"):  # the device-plugin manager's files
        Path("/var/lib/kubelet/device-plugins", leftover).unlink(missing_ok=True)
    errors: list[str] = []
    for path in _watched_paths():
        existed = before.get(str(path))
        if not path.is_dir():
            continue
        if existed is None:
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
            if path.is_dir():
                errors.append(f"{path} (made by the node) still holds {sorted(os.listdir(path))[:5]}")
        else:
            new = sorted(set(os.listdir(path)) - existed - {p.name for p in _watched_paths()})
            if new:
                errors.append(f"{path} has new entries {new[:5]}")
    return errors
