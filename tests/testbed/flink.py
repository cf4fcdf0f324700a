"""A real Flink 2.3.0 session cluster on loopback: one JobManager and one TaskManager JVM.

Flink comes from the PyPI wheel `apache-flink-libraries` (its `pyflink/lib/*.jar` is a full Flink
runtime, without `bin/` scripts and `conf/`), unpacked once into the user's cache. The bed writes
its own `config.yaml` and `log4j.properties` and starts the JVMs itself, every port a free one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from testbed.procs import ManagedProcess, free_port, stop_pidfile, tail

FLINK_VERSION = "2.3.0"
_WHEEL_PROJECT = "apache-flink-libraries"

# The module flags Flink's own scripts pass on Java 17 (`env.java.default-opts.all`).
JAVA17_FLAGS: tuple[str, ...] = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    *(
        f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
        for pkg in (
            "java.lang",
            "java.net",
            "java.io",
            "java.nio",
            "sun.nio.ch",
            "java.lang.reflect",
            "java.text",
            "java.time",
            "java.util",
            "java.util.concurrent",
            "java.util.concurrent.atomic",
            "java.util.concurrent.locks",
        )
    ),
)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flinkop"


def _wheel_path() -> Path:
    wheels = cache_root() / "wheels"
    found = sorted(wheels.glob(f"apache_flink_libraries-{FLINK_VERSION}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        f"{_WHEEL_PROJECT}=={FLINK_VERSION}", "-d", str(wheels),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(f"apache_flink_libraries-{FLINK_VERSION}-*.whl"))
    if done.returncode != 0 or not found:
        raise RuntimeError(
            f"could not download {_WHEEL_PROJECT}=={FLINK_VERSION} into {wheels}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return found[0]


def ensure_flink_dist() -> Path:
    """A directory with Flink's `lib/*.jar` and `bash-java-utils.jar`, unpacked once from the wheel."""
    dist = cache_root() / f"flink-{FLINK_VERSION}"
    if (dist / "lib").is_dir() and (dist / "bash-java-utils.jar").is_file():
        return dist
    wheel = _wheel_path()
    dist.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".flink-{FLINK_VERSION}-", dir=dist.parent))
    try:
        tmp.chmod(0o755)
        (tmp / "lib").mkdir()
        with zipfile.ZipFile(wheel) as whl:
            for info in whl.infolist():
                name = info.filename
                if name.startswith("pyflink/lib/") and name.endswith(".jar"):
                    target = tmp / "lib" / Path(name).name
                elif name == "pyflink/bin/bash-java-utils.jar":
                    target = tmp / "bash-java-utils.jar"
                else:
                    continue
                with whl.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        try:
            tmp.rename(dist)
        except OSError:
            if not (dist / "lib").is_dir():  # not a concurrent unpack that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dist


# ---------------------------------------------------------------------------------------------
# The cluster

_LOG4J = """\
# Written by the flinkop test bed: everything to stdout, which the bed captures in the log file.
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss,SSS} %-5p %-40c{1.} - %m%n
logger.pekko.name = org.apache.pekko
logger.pekko.level = WARN
logger.netty.name = org.apache.flink.shaded.netty4
logger.netty.level = WARN
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = WARN
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
"""

# JVM flags that make short-lived JVMs on a small machine start faster and stay lean.
_LEAN_JVM: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k")


@dataclass
class FlinkCluster:
    rest_url: str
    workdir: Path
    savepoint_dir: Path | None
    checkpoint_dir: Path
    jobmanager: ManagedProcess
    taskmanager: ManagedProcess
    config_path: Path
    startup_seconds: float = 0.0
    processes: list[ManagedProcess] = field(default_factory=list)
    slots: int = 8

    def kill(self) -> None:
        """SIGKILL of the TaskManager and the JobManager, as when their machine dies."""
        for proc in (self.taskmanager, self.jobmanager):
            proc.kill()

    def restart(self, timeout: float = 120.0) -> None:
        """Starts the same JVMs again: the same ports, configuration and directories."""
        started = time.monotonic()
        self.jobmanager.start()
        self.taskmanager.start()
        _wait_ready(self, self.slots, started + timeout)

    def stop(self) -> None:
        """Stops the TaskManager, then the JobManager (SIGTERM, then SIGKILL)."""
        for proc in (self.taskmanager, self.jobmanager):
            proc.stop(timeout=15)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines)}" for p in (self.jobmanager, self.taskmanager)
        )


def _config_yaml(
    workdir: Path,
    ports: dict[str, int],
    *,
    adaptive: bool,
    savepoints_dir: Path | None,
    slots: int,
    extra_config: Mapping[str, str] | None = None,
) -> str:
    conf: dict[str, str | int] = {
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": ports["jm_rpc"],
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        # Ports that nobody needs to know in advance: 0 lets each JVM bind a free one itself.
        "taskmanager.rpc.port": 0,
        "taskmanager.data.port": 0,
        "taskmanager.numberOfTaskSlots": slots,
        "taskmanager.memory.process.size": "1280m",
        # hashmap state lives on the heap: managed memory (RocksDB, batch) would sit unused.
        "taskmanager.memory.managed.size": "32m",
        "taskmanager.cpu.cores": 2,
        "blob.server.port": 0,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": ports["rest"],
        "metrics.internal.query-service.port": 0,
        "metrics.fetcher.update-interval": 500,
        "parallelism.default": 1,
        "state.backend.type": "hashmap",
        "execution.checkpointing.dir": (workdir / "checkpoints").as_uri(),
        "io.tmp.dirs": str(workdir / "tmp"),
        "web.tmpdir": str(workdir / "web"),
        "blob.storage.directory": str(workdir / "blob"),
        # The TaskManager starts alongside the JobManager: retry registering often, not with backoff.
        "cluster.registration.initial-timeout": "200ms",
        "cluster.registration.max-timeout": "2s",
        "cluster.registration.error-delay": "500ms",
        "cluster.registration.refused-registration-delay": "500ms",
        "cluster.io-pool.size": 4,
    }
    if savepoints_dir is not None:
        conf["state.savepoints.dir"] = savepoints_dir.as_uri()
    if adaptive:
        conf |= {
            "jobmanager.scheduler": "adaptive",
            "jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling": "1s",
            "jobmanager.adaptive-scheduler.executing.resource-stabilization-timeout": "1s",
        }
    conf |= dict(extra_config or {})  # last: a caller's setting wins over the bed's
    lines = ["# Written by the flinkop test bed (tests/testbed/flink.py)."]
    lines += [f"{key}: {_yaml_scalar(value)}" for key, value in conf.items()]
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tm_resource_params(dist: Path, conf_dir: Path, log_path: Path) -> tuple[list[str], list[str]]:
    """Runs BashJavaUtils as Flink's scripts do: (TaskManager JVM flags, `-D key=value` arguments)."""
    cmd = [
        "java", "-Xmx128m", *_LEAN_JVM, "-cp", f"{dist / 'bash-java-utils.jar'}:{dist / 'lib' / '*'}",
        "org.apache.flink.runtime.util.bash.BashJavaUtils", "GET_TM_RESOURCE_PARAMS",
        "--configDir", str(conf_dir),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    results = [
        line.removeprefix("BASH_JAVA_UTILS_EXEC_RESULT:")
        for line in done.stdout.splitlines()
        if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or len(results) < 2:
        raise RuntimeError(
            f"BashJavaUtils GET_TM_RESOURCE_PARAMS failed (exit {done.returncode}):\n{tail(log_path, 40)}"
        )
    return results[-2].split(), results[-1].split()


def _pid_path(workdir: Path, name: str) -> Path:
    return workdir / "pids" / f"{name}.pid"


def start_flink(
    workdir: Path,
    *,
    adaptive: bool = False,
    savepoints_dir: bool = True,
    slots: int = 8,
    detach: bool = False,
    timeout: float = 120.0,
    extra_config: Mapping[str, str] | None = None,
) -> FlinkCluster:
    """Starts a JobManager and a TaskManager on 127.0.0.1 and waits until the TaskManager's slots show.

    `extra_config` entries are written into Flink's config.yaml after (and over) the bed's own.
    """
    started = time.monotonic()
    dist = ensure_flink_dist()
    workdir = workdir.resolve()
    conf_dir = workdir / "conf"
    log_dir = workdir / "log"
    for d in (conf_dir, log_dir, workdir / "tmp", workdir / "web", workdir / "checkpoints"):
        d.mkdir(parents=True, exist_ok=True)
    savepoint_dir = workdir / "savepoints" if savepoints_dir else None
    if savepoint_dir is not None:
        savepoint_dir.mkdir(parents=True, exist_ok=True)

    names = ("jm_rpc", "rest")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: free_port() for name in names}
    config_path = conf_dir / "config.yaml"
    config_path.write_text(
        _config_yaml(
            workdir, ports, adaptive=adaptive, savepoints_dir=savepoint_dir, slots=slots, extra_config=extra_config
        )
    )
    (conf_dir / "log4j.properties").write_text(_LOG4J)
    log4j = conf_dir / "log4j.properties"

    classpath = str(dist / "lib" / "*")
    env = dict(os.environ, FLINK_CONF_DIR=str(conf_dir), FLINK_LIB_DIR=str(dist / "lib"))
    env.pop("JAVA_TOOL_OPTIONS", None)

    jm_log = log_dir / "jobmanager.log"
    jm_argv = [
        "java", *JAVA17_FLAGS, *_LEAN_JVM, "-Xms256m", "-Xmx512m", "-XX:MaxMetaspaceSize=256m",
        f"-Dlog.file={jm_log}", f"-Dlog4j.configurationFile=file:{log4j}",
        "-cp", classpath,
        "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
        "--configDir", str(conf_dir),
    ]  # fmt: skip
    jobmanager = ManagedProcess(
        "flink-jobmanager",
        jm_argv,
        jm_log,
        env=env,
        cwd=workdir,
        detach=detach,
        pid_path=_pid_path(workdir, "jobmanager") if detach else None,
    )
    jobmanager.start()
    tm_log = log_dir / "taskmanager.log"
    taskmanager = ManagedProcess(
        "flink-taskmanager",
        [],  # set below, once BashJavaUtils has computed the memory flags
        tm_log,
        env=env,
        cwd=workdir,
        detach=detach,
        pid_path=_pid_path(workdir, "taskmanager") if detach else None,
    )
    cluster = FlinkCluster(
        rest_url=f"http://127.0.0.1:{ports['rest']}",
        workdir=workdir,
        savepoint_dir=savepoint_dir,
        checkpoint_dir=workdir / "checkpoints",
        jobmanager=jobmanager,
        taskmanager=taskmanager,
        config_path=config_path,
        processes=[jobmanager, taskmanager],
        slots=slots,
    )
    try:
        jvm_flags, dynamic = _tm_resource_params(dist, conf_dir, log_dir / "bash-java-utils.log")
        taskmanager.argv = [
            "java", *JAVA17_FLAGS, *_LEAN_JVM, *jvm_flags,
            f"-Dlog.file={tm_log}", f"-Dlog4j.configurationFile=file:{log4j}",
            "-cp", classpath,
            "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
            "--configDir", str(conf_dir), *dynamic,
        ]  # fmt: skip
        taskmanager.start()
        _wait_ready(cluster, slots, started + timeout)
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - started
    return cluster


def kubernetes_ha_config(workdir: Path, kubeconfig: Path, cluster_id: str) -> dict[str, str]:
    """Flink's Kubernetes high-availability services against the bed's own kube-apiserver: leader
    and job metadata in ConfigMaps of namespace `default`, job graphs and checkpoints' pointers in
    `workdir/ha`. A JobManager restarted with it recovers its jobs under the same ids."""
    return {
        "high-availability.type": "kubernetes",
        "high-availability.storageDir": (workdir.resolve() / "ha").as_uri(),
        "kubernetes.cluster-id": cluster_id,
        "kubernetes.namespace": "default",
        "kubernetes.config.file": str(kubeconfig),
    }


def _wait_ready(cluster: FlinkCluster, slots: int, deadline: float) -> None:
    last = "no answer yet"
    while True:
        for proc in (cluster.jobmanager, cluster.taskmanager):
            if not proc.alive():
                raise RuntimeError(
                    f"Flink {proc.name} exited (code {proc.popen.returncode if proc.popen else None}) "
                    f"before the cluster was ready.\n{cluster.log_tails(60)}"
                )
        try:
            resp = requests.get(f"{cluster.rest_url}/overview", timeout=2)
            if resp.ok:
                overview = resp.json()
                last = f"/overview: {overview}"
                if overview.get("taskmanagers", 0) >= 1 and overview.get("slots-total", 0) >= slots:
                    return
            else:
                last = f"/overview: HTTP {resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            last = f"/overview: {type(exc).__name__}"
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Flink at {cluster.rest_url} did not show a TaskManager with {slots} slots in time; "
                f"last seen {last}.\n{cluster.log_tails(60)}"
            )
        time.sleep(0.25)


def stop_detached(workdir: Path) -> bool:
    """Stops the JVMs of a `start_flink(..., detach=True)` cluster from their pid files. True if any ran."""
    workdir = workdir.resolve()
    stopped = False
    for name in ("taskmanager", "jobmanager"):
        stopped = stop_pidfile(_pid_path(workdir, name), timeout=15) or stopped
    return stopped
