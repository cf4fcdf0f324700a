"""The Kubernetes half of the test bed: a real kube-apiserver (v1.20.2, built from Debian's source
package and cached) on top of a real etcd (Debian's etcd-server), both on 127.0.0.1 and free ports.

By itself there is no controller-manager, scheduler or kubelet: no garbage collection, no pods. What
is real: the API machinery (CRDs with structural schemas, status and scale subresources, generation,
resourceVersion conflicts, watches), token authentication and RBAC authorization. The apiserver is
started ready for a node (testbed.node adds kubelet, containerd, controller-manager and scheduler):
Node,RBAC authorization, the kubelet reached by its hostname (`localhost`) with a client certificate
of its own, and token users for the node's components; none of that changes what the other users see.

Users, each with its own kubeconfig in the work directory:
  * `admin` (group system:masters)      -> `admin.kubeconfig`
  * `flinkop-operator` (no groups at all) -> `operator.kubeconfig`, for least-privilege RBAC tests.
  * the node's components (`system:node:localhost` in `system:nodes`, `system:kube-controller-manager`,
    `system:kube-scheduler`) -> `kubelet.kubeconfig`, `controller-manager.kubeconfig`,
    `scheduler.kubeconfig`, used only by testbed.node.

Nothing here reads or writes ~/.kube.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import procs

APISERVER_VERSION = "v1.20.2"
ADMIN_USER = "admin"
OPERATOR_USER = "flinkop-operator"
NODE_NAME = "localhost"  # the kubelet refuses a loopback node IP, so the node is reached by this name
# The node's components: kubeconfig name -> (user, group or "").
NODE_COMPONENT_USERS: dict[str, tuple[str, str]] = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "controller-manager": ("system:kube-controller-manager", ""),
    "scheduler": ("system:kube-scheduler", ""),
}
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "bed" / "scripts" / "build-kube-apiserver.sh"

_ETCD_TIMEOUT = 30.0
_APISERVER_TIMEOUT = 90.0


class KubeBedError(RuntimeError):
    """The bed could not be built or started; the message carries the relevant log tails."""


class KubectlError(subprocess.CalledProcessError):
    """A failed `kubectl` call, whose message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr or ''}".rstrip()


def _say(message: str) -> None:
    print(f"[testbed.kube] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Binaries


def cache_dir() -> Path:
    """Where built binaries are cached: $FLINKOP_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/flinkop."""
    explicit = os.environ.get("FLINKOP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "flinkop"


def _binary_dir() -> Path:
    return cache_dir() / f"kube-apiserver-{APISERVER_VERSION}"


def _build() -> None:
    """Runs the build script (which builds kube-apiserver, and kubectl when none is on PATH)."""
    cache = cache_dir()
    started = time.monotonic()
    _say(f"building kube-apiserver {APISERVER_VERSION} into {_binary_dir()} (about 4-5 minutes, once)")
    # The script itself takes a lock, so concurrent sessions build only once.
    result = subprocess.run([str(BUILD_SCRIPT), str(cache)], check=False)
    if result.returncode != 0:
        raise KubeBedError(
            f"{BUILD_SCRIPT} failed with exit code {result.returncode}; "
            f"see its output above and {cache}/kube-build-{APISERVER_VERSION}/build.log"
        )
    _say(f"kube-apiserver built in {time.monotonic() - started:.0f} s")


def ensure_apiserver_binary() -> Path:
    """The cached kube-apiserver binary, built first when missing.

    $FLINKOP_KUBE_APISERVER, when set, names a binary to use instead.
    """
    explicit = os.environ.get("FLINKOP_KUBE_APISERVER")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise KubeBedError(f"FLINKOP_KUBE_APISERVER={explicit} is not an executable file")
        return path
    binary = _binary_dir() / "kube-apiserver"
    if not os.access(binary, os.X_OK):
        _build()
        if not os.access(binary, os.X_OK):
            raise KubeBedError(f"{BUILD_SCRIPT} succeeded but {binary} is missing")
    return binary


def kubectl_binary() -> str:
    """kubectl from PATH, else the one built next to the cached kube-apiserver (built when missing)."""
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    built = _binary_dir() / "kubectl"
    if not os.access(built, os.X_OK):
        _build()  # the build script builds kubectl too when none is on PATH
        if not os.access(built, os.X_OK):
            raise KubeBedError(f"no kubectl on PATH and {built} was not built")
    return str(built)


# --------------------------------------------------------------------------------------------------
# The cluster


@dataclass
class KubeCluster:
    server: str
    workdir: Path
    admin_kubeconfig: Path
    operator_kubeconfig: Path
    etcd: procs.ManagedProcess
    apiserver: procs.ManagedProcess
    admin_token: str
    operator_token: str
    ca_file: Path | None  # the apiserver's self-signed serving cert, or None if TLS is not verified
    startup_seconds: float = 0.0
    # For testbed.node: the key that signs service-account tokens, the CA the kubelet trusts for the
    # apiserver's client certificate, and a kubeconfig per node component (NODE_COMPONENT_USERS).
    service_account_key: Path | None = None
    kubelet_client_ca: Path | None = None
    component_kubeconfigs: dict[str, Path] = field(default_factory=dict)
    _kubectl: str = field(default="", repr=False)

    @property
    def processes(self) -> list[procs.ManagedProcess]:
        return [self.etcd, self.apiserver]

    def stop(self) -> None:
        """Stops kube-apiserver, then etcd. Safe to call twice."""
        self.apiserver.stop()
        self.etcd.stop()

    def log_tails(self, lines: int = 40) -> str:
        return _log_tails([self.etcd, self.apiserver], lines)

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl against this cluster (as admin unless another kubeconfig is given)."""
        if not self._kubectl:
            self._kubectl = kubectl_binary()
        argv = [
            self._kubectl,
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A kubernetes.client.ApiClient for this cluster (as admin unless another kubeconfig is given)."""
        from kubernetes import config as k8s_config

        new_client: Any = k8s_config.new_client_from_config  # the kubernetes package is untyped
        return new_client(config_file=str(kubeconfig or self.admin_kubeconfig))


def _log_tails(processes: list[procs.ManagedProcess], lines: int) -> str:
    return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines)}" for p in processes)


def _pid_dir(workdir: Path) -> Path:
    return workdir / "pids"


def _detached_running(workdir: Path) -> list[Path]:
    alive = []
    for pid_file in sorted(_pid_dir(workdir).glob("*.pid")):
        try:
            os.killpg(int(pid_file.read_text().strip()), 0)
        except (ValueError, ProcessLookupError, PermissionError):
            continue
        alive.append(pid_file)
    return alive


def stop_detached(workdir: Path) -> bool:
    """Stops a bed started with `start_kube(workdir, detach=True)` (apiserver, then etcd).

    True if anything was running.
    """
    pids = _pid_dir(workdir)
    stopped_apiserver = procs.stop_pidfile(pids / "kube-apiserver.pid")
    stopped_etcd = procs.stop_pidfile(pids / "etcd.pid")
    return stopped_apiserver or stopped_etcd


def start_kube(workdir: Path, detach: bool = False) -> KubeCluster:
    """Starts etcd and kube-apiserver with fresh state under `workdir` and waits until they serve.

    `detach=True` lets both outlive this Python process (pid files in workdir/pids/; stop them with
    `stop_detached(workdir)`). Raises KubeBedError, with log tails, if they do not come up.
    """
    started = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if running := _detached_running(workdir):
        raise KubeBedError(
            f"a bed is still running in {workdir} ({', '.join(p.name for p in running)}); "
            "stop it first (testbed down / stop_detached)"
        )
    apiserver_bin = ensure_apiserver_binary()
    etcd_bin = shutil.which("etcd")
    if etcd_bin is None:
        raise KubeBedError("etcd not found on PATH; run tests/bed/scripts/install-system-deps.sh")

    # Fresh state every time: an old etcd member or serving cert would only confuse.
    for sub in ("etcd-data", "certs", "logs", "kubectl-cache"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    etcd_data, certs, logs = workdir / "etcd-data", workdir / "certs", workdir / "logs"
    certs.mkdir(mode=0o700)
    logs.mkdir()

    sa_key = certs / "service-account.key"
    _run(["openssl", "genrsa", "-out", str(sa_key), "2048"])
    sa_key.chmod(0o600)

    admin_token, operator_token = secrets.token_hex(24), secrets.token_hex(24)
    component_tokens = {name: secrets.token_hex(24) for name in NODE_COMPONENT_USERS}
    tokens = certs / "tokens.csv"
    lines = [
        f'{admin_token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"',
        f"{operator_token},{OPERATOR_USER},{OPERATOR_USER}-uid",
    ]
    for name, (user, group) in NODE_COMPONENT_USERS.items():
        lines.append(f"{component_tokens[name]},{user},{name}-uid" + (f',"{group}"' if group else ""))
    tokens.write_text("\n".join(lines) + "\n")
    tokens.chmod(0o600)

    # The apiserver's identity towards the kubelet (logs, exec): a client certificate whose group,
    # system:masters, the kubelet's webhook authorization then allows.
    from testbed.certs import issue_client_cert, make_ca

    kubelet_client_ca = make_ca(certs, "kubelet-client-ca")
    kubelet_client_cert, kubelet_client_key = issue_client_cert(
        kubelet_client_ca, certs, "flinkop-bed-apiserver", organization="system:masters"
    )

    client_port, peer_port, secure_port = procs.free_port(), procs.free_port(), procs.free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    pids = _pid_dir(workdir)
    etcd = procs.ManagedProcess(
        "etcd",
        [
            etcd_bin,
            "--name=flinkop-bed",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=flinkop-bed={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ],
        logs / "etcd.log",
        detach=detach,
        pid_path=pids / "etcd.pid" if detach else None,
    )
    server = f"https://127.0.0.1:{secure_port}"
    apiserver = procs.ManagedProcess(
        "kube-apiserver",
        [
            str(apiserver_bin),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={secure_port}",
            "--insecure-port=0",
            f"--cert-dir={certs}",
            f"--token-auth-file={tokens}",
            # Node: the kubelet may read exactly its own pods' secrets and configmaps.
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={kubelet_client_cert}",
            f"--kubelet-client-key={kubelet_client_key}",
            "--kubelet-preferred-address-types=Hostname",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--profiling=false",
            # No endpoints for the `kubernetes` Service: 127.0.0.1 is refused there (loopback), and
            # the reconciler would log that error every 10 s.
            "--endpoint-reconciler-type=none",
        ],
        logs / "kube-apiserver.log",
        detach=detach,
        pid_path=pids / "kube-apiserver.pid" if detach else None,
    )

    try:
        etcd.start()
        _wait_for_etcd(etcd, f"{etcd_url}/health")
        apiserver.start()
        _wait_for_apiserver(apiserver, etcd, server, admin_token)
        ca_file: Path | None = certs / "apiserver.crt"
        assert ca_file is not None
        if not _tls_verifies(server, ca_file):
            _say(f"warning: cannot verify {server} with {ca_file}; kubeconfigs skip TLS verification")
            ca_file = None
        admin_kubeconfig = workdir / "admin.kubeconfig"
        operator_kubeconfig = workdir / "operator.kubeconfig"
        _write_kubeconfig(admin_kubeconfig, server, ca_file, ADMIN_USER, admin_token)
        _write_kubeconfig(operator_kubeconfig, server, ca_file, OPERATOR_USER, operator_token)
        component_kubeconfigs = {}
        for name, (user, _group) in NODE_COMPONENT_USERS.items():
            component_kubeconfigs[name] = workdir / f"{name}.kubeconfig"
            _write_kubeconfig(component_kubeconfigs[name], server, ca_file, user, component_tokens[name])
    except BaseException:
        apiserver.stop(timeout=5)
        etcd.stop(timeout=5)
        raise

    cluster = KubeCluster(
        server=server,
        workdir=workdir,
        admin_kubeconfig=admin_kubeconfig,
        operator_kubeconfig=operator_kubeconfig,
        etcd=etcd,
        apiserver=apiserver,
        admin_token=admin_token,
        operator_token=operator_token,
        ca_file=ca_file,
        startup_seconds=time.monotonic() - started,
        service_account_key=sa_key,
        kubelet_client_ca=kubelet_client_ca.cert,
        component_kubeconfigs=component_kubeconfigs,
    )
    (workdir / "cluster.json").write_text(
        json.dumps(
            {
                "server": server,
                "etcd": etcd_url,
                "admin_kubeconfig": str(admin_kubeconfig),
                "operator_kubeconfig": str(operator_kubeconfig),
                "detached": detach,
                "pids": {"etcd": etcd.pid, "kube-apiserver": apiserver.pid},
            },
            indent=2,
        )
        + "\n"
    )
    _say(f"kube-apiserver {APISERVER_VERSION} ready at {server} in {cluster.startup_seconds:.1f} s")
    return cluster


# --------------------------------------------------------------------------------------------------
# Helpers


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KubeBedError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


def _wait_for_etcd(etcd: procs.ManagedProcess, health_url: str) -> None:
    deadline = time.monotonic() + _ETCD_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not etcd.alive():
            raise KubeBedError(f"etcd exited during start-up\n{_log_tails([etcd], 40)}")
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                body = response.read().decode(errors="replace")
                if json.loads(body).get("health") == "true":
                    return
                last = body
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.1)
    raise KubeBedError(
        f"etcd not healthy at {health_url} after {_ETCD_TIMEOUT:.0f} s ({last})\n{_log_tails([etcd], 40)}"
    )


def _get(url: str, token: str, context: ssl.SSLContext) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


def _wait_for_apiserver(
    apiserver: procs.ManagedProcess, etcd: procs.ManagedProcess, server: str, token: str
) -> None:
    """Waits for /readyz, then for the `default` namespace (made by a post-start hook, a bit later)."""
    # Polling only: the serving cert is generated by the apiserver at start-up and checked afterwards.
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + _APISERVER_TIMEOUT
    last = "no answer yet"
    for path in ("/readyz", "/api/v1/namespaces/default"):
        while True:
            for proc in (etcd, apiserver):
                if not proc.alive():
                    raise KubeBedError(
                        f"{proc.name} exited during start-up\n{_log_tails([etcd, apiserver], 40)}"
                    )
            try:
                status, body = _get(server + path, token, insecure)
                if status == 200:
                    break
                last = f"HTTP {status}: {body.strip()[:500]}"
            except OSError as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise KubeBedError(
                    f"kube-apiserver at {server} not ready after {_APISERVER_TIMEOUT:.0f} s "
                    f"(GET {path}: {last})\n{_log_tails([etcd, apiserver], 40)}"
                )
            time.sleep(0.2)


def _tls_verifies(server: str, ca_file: Path) -> bool:
    if not ca_file.is_file():
        return False
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        _get(server + "/healthz", "", context)
    except (OSError, ssl.SSLError):
        return False
    return True


def _write_kubeconfig(path: Path, server: str, ca_file: Path | None, user: str, token: str) -> None:
    cluster: dict[str, object] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority-data"] = b64encode(ca_file.read_bytes()).decode()
    else:
        cluster["insecure-skip-tls-verify"] = True
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flinkop-bed", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "flinkop-bed", "user": user}}],
        "current-context": user,
        "preferences": {},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
