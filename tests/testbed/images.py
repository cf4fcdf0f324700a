"""Container images for the bed's real node, built without Docker and without a registry.

An image is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`: gzipped tar layers,
a config, a manifest) written as one tar, whose index entry carries the annotation
`io.containerd.image.name`; `ctr -n k8s.io images import` loads it into the node's containerd, and
pods use it with `imagePullPolicy: Never`. Root filesystems come from `mmdebstrap` (Debian's
packages), Python packages from PyPI through pip, Flink's jars from the cached PyPI wheel
(testbed.flink.ensure_flink_dist), the pause binary from the Kubernetes source tree
(tests/bed/scripts/build-kube-node.sh).

Images:
  * PAUSE_IMAGE     the pod sandbox: `/pause` (build/pause/linux/pause.c, gcc -static)
  * BUSYBOX_IMAGE   Debian's busybox-static with its applets, for small test pods (sh, ip, wget, nc)
  * FLINK_IMAGE     Debian 12 + OpenJDK 17 (headless JRE) + Flink 2.3's jars under /opt/flink, with
                    an entry point equivalent to the official image's (`jobmanager`, `taskmanager`,
                    `standalone-job`: image_files/flink/docker-entrypoint.sh), user flink (9999)
  * a job image     FLINK_IMAGE plus a job's jar under /opt/flink/job/ (build_flink_job_image), what
                    an application-mode FlinkJob runs with `jar.uri: local:///opt/flink/job/<jar>`
  * OPERATOR_IMAGE  the recipe of the repository's Dockerfile: Debian 12's python3, a venv in /venv
                    with the package's dependencies and the package itself (pip), user 10001,
                    `python -m flinkop`

Every layer is cached in <cache>/images/layers/ under a key hashed from all of its inputs (package
lists, files, recipe version), and every image tar in <cache>/images/ under a key hashed from its
layers and config; a warm run finds both and builds nothing. Builds take a per-name file lock, so
concurrent sessions build once. Older tars of the same name are deleted when a new one is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "image_files"

# Bump when the way an image or layer is made changes, so cached ones are rebuilt.
_RECIPE_VERSION = "1"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PYTHON_VERSION = "3.11"  # Debian 12's python3

PAUSE_IMAGE = "localhost/pause:3.4.1-flinkop"
BUSYBOX_IMAGE = "localhost/busybox:bed"
FLINK_IMAGE = "localhost/flink:2.3.0-java17"
OPERATOR_IMAGE = "localhost/flinkop:0.1.0"

FLINK_UID = 9999
OPERATOR_UID = 10001

_LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
_CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
_MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
_GZIP_LEVEL = 1  # 3-4x faster than 6 for ~10 % more bytes (measured on the JRE base layer)


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step and carries its output's tail."""


def _say(message: str) -> None:
    print(f"[testbed.images] {message}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    from testbed.kube import cache_dir

    return cache_dir() / "images"


# --------------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Layer:
    """A gzipped tar layer in the cache: `digest` of the gzip, `diff_id` of the tar inside it."""

    path: Path
    digest: str
    diff_id: str
    size: int


class _HashingWriter(io.RawIOBase):
    """Writes through to `target`, hashing and counting the bytes."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha.update(chunk)
        self.count += len(chunk)
        self.target.write(chunk)
        return len(chunk)


def _write_layer(path: Path, build: Callable[[IO[bytes]], None]) -> Layer:
    """Runs `build(stream)`, which writes a tar to `stream`, gzipping it into `path` (atomically)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            compressed = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as gz:
                uncompressed = _HashingWriter(gz)
                build(uncompressed)  # type: ignore[arg-type]
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    layer = Layer(
        path, "sha256:" + compressed.sha.hexdigest(), "sha256:" + uncompressed.sha.hexdigest(), compressed.count
    )
    path.with_suffix(".json").write_text(
        json.dumps({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}) + "\n"
    )
    return layer


def _cached_layer(path: Path) -> Layer | None:
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        data = json.loads(meta.read_text())
        return Layer(path, str(data["digest"]), str(data["diff_id"]), int(data["size"]))
    except (ValueError, KeyError):
        return None


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([_RECIPE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _tree_digest(root: Path, skip: tuple[str, ...] = ("__pycache__",)) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if any(part in skip for part in path.parts) or not path.is_file():
            continue
        sha.update(str(path.relative_to(root)).encode() + b"\0" + _file_digest(path).encode() + b"\0")
    return sha.hexdigest()


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    lock_dir = images_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"another process is building {name}; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _layer(name: str, key: str, build: Callable[[IO[bytes]], None]) -> Layer:
    """The cached layer `name` for `key`, built with `build(stream)` (which writes a tar) if missing."""
    layers = images_dir() / "layers"
    layers.mkdir(parents=True, exist_ok=True)
    path = layers / f"{name}-{key}.tar.gz"
    if (found := _cached_layer(path)) is not None:
        return found
    with _lock(f"layer-{name}"):
        if (found := _cached_layer(path)) is not None:
            return found
        started = time.monotonic()
        _say(f"building layer {name} ({path.name})")
        layer = _write_layer(path, build)
        for old in layers.glob(f"{name}-*.tar.gz"):
            if old != path:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
        _say(f"layer {name}: {layer.size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
        return layer


# --------------------------------------------------------------------------------------------------
# Tar entries


def _add_dir(tar: tarfile.TarFile, name: str, uid: int = 0, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = uid
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, uid: int = 0, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.uid = info.gid = uid
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, source: Path, uid: int = 0, mode: int | None = None) -> None:
    info = tar.gettarinfo(str(source), arcname=name)
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    if mode is not None:
        info.mode = mode
    with open(source, "rb") as f:
        tar.addfile(info, f)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    tar.addfile(info)


def _add_tree(tar: tarfile.TarFile, name: str, source: Path, uid: int = 0) -> None:
    """`source`'s files, directories and symlinks under `name`, owned by `uid`."""
    for path in sorted([source, *source.rglob("*")]):
        arcname = name if path == source else f"{name}/{path.relative_to(source)}"
        if path.is_symlink():
            _add_symlink(tar, arcname, os.readlink(path))
        elif path.is_dir():
            _add_dir(tar, arcname, uid)
        else:
            _add_file(tar, arcname, path, uid)


# --------------------------------------------------------------------------------------------------
# Root filesystems from Debian's packages


def _mmdebstrap_layer(
    name: str, packages: tuple[str, ...], customize: tuple[str, ...] = (), essential: tuple[str, ...] = ()
) -> Layer:
    """A Debian root filesystem (`essential` variant plus `packages`) as a layer, via mmdebstrap."""
    key = _key("mmdebstrap", DEBIAN_SUITE, DEBIAN_MIRROR, packages, customize, essential)

    def build(stream: IO[bytes]) -> None:
        if shutil.which("mmdebstrap") is None:
            raise ImageBuildError("mmdebstrap not found; run tests/bed/scripts/install-system-deps.sh")
        if os.geteuid() != 0:
            raise ImageBuildError("building root filesystems needs root (mmdebstrap --mode=root)")
        with tempfile.TemporaryDirectory(prefix=f"flinkop-{name}-", dir=images_dir()) as tmp:
            out = Path(tmp) / "rootfs.tar"
            log = Path(tmp) / "mmdebstrap.log"
            argv = [
                "mmdebstrap", "--mode=root", "--variant=essential", f"--include={','.join(packages)}",
                # No documentation, manual pages or translations: a smaller image.
                "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
                # update-alternatives (openjdk's postinst) links into man1 even when the pages are excluded.
                '--essential-hook=mkdir -p "$1/usr/share/man/man1"',
                *(f"--essential-hook={hook}" for hook in essential),
                *(f"--customize-hook={hook}" for hook in customize),
                '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/man '
                '"$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache',
                DEBIAN_SUITE, str(out), DEBIAN_MIRROR,
            ]  # fmt: skip
            with open(log, "wb") as log_file:
                done = subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise ImageBuildError(f"mmdebstrap for {name} failed ({done.returncode}):\n{tail}")
            with open(out, "rb") as f:
                shutil.copyfileobj(f, stream, 1 << 20)

    return _layer(name, key, build)


# --------------------------------------------------------------------------------------------------
# Image tars


@dataclass(frozen=True)
class ImageTar:
    """A built image: its reference (`localhost/...:tag`), its OCI layout tar, and what it cost."""

    ref: str
    path: Path
    size: int
    build_seconds: float
    cached: bool
    manifest_digest: str = ""  # what `ctr images ls` shows as the image's DIGEST once imported


def _image(ref: str, layers: list[Layer], config: dict[str, Any], started: float) -> ImageTar:
    """Assembles (or finds in the cache) the OCI layout tar of `layers` with image `config`."""
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": "flinkop tests/testbed/images.py"} for _ in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": _MANIFEST_MEDIA,
        "config": {"mediaType": _CONFIG_MEDIA, "digest": _sha(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": _LAYER_MEDIA, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": _MANIFEST_MEDIA,
                "digest": _sha(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    safe = ref.removeprefix("localhost/").replace("/", "_").replace(":", "_")
    out_dir = images_dir()
    path = out_dir / f"{safe}-{_sha(manifest_bytes).removeprefix('sha256:')[:16]}.tar"
    if path.is_file():
        return ImageTar(
            ref,
            path,
            path.stat().st_size,
            time.monotonic() - started,
            cached=True,
            manifest_digest=_sha(manifest_bytes),
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
            for data in (config_bytes, manifest_bytes):
                _add_bytes(tar, f"blobs/sha256/{_sha(data).removeprefix('sha256:')}", data)
            for layer in layers:
                _add_file(tar, f"blobs/sha256/{layer.digest.removeprefix('sha256:')}", layer.path, mode=0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    for old in out_dir.glob(f"{safe}-*.tar"):
        if old != path:
            old.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    _say(f"image {ref}: {path.stat().st_size / 1e6:.0f} MB ({path.name}) in {seconds:.0f} s")
    return ImageTar(ref, path, path.stat().st_size, seconds, cached=False, manifest_digest=_sha(manifest_bytes))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_layer(name: str, key: str, fill: Callable[[tarfile.TarFile], None]) -> Layer:
    def build(stream: IO[bytes]) -> None:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            fill(tar)

    return _layer(name, key, build)


# --------------------------------------------------------------------------------------------------
# The images


def build_pause_image() -> ImageTar:
    from testbed.node import ensure_node_binaries

    started = time.monotonic()
    pause = ensure_node_binaries().pause
    layer = _tar_layer(
        "pause", _key("pause", _file_digest(pause)), lambda tar: _add_file(tar, "pause", pause, mode=0o755)
    )
    return _image(PAUSE_IMAGE, [layer], {"Entrypoint": ["/pause"], "User": "65535:65535"}, started)


def build_busybox_image() -> ImageTar:
    started = time.monotonic()
    busybox = Path("/bin/busybox")
    if not os.access(busybox, os.X_OK):
        raise ImageBuildError("/bin/busybox not found; run tests/bed/scripts/install-system-deps.sh (busybox-static)")
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()

    def fill(tar: tarfile.TarFile) -> None:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            _add_dir(tar, d, mode=0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "bin/busybox", busybox, mode=0o755)
        for applet in sorted(set(listed) - {"busybox"}):
            _add_symlink(tar, f"bin/{applet}", "busybox")
        _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
        _add_bytes(tar, "etc/group", b"root:x:0:\nnobody:x:65534:\n")

    layer = _tar_layer("busybox", _key("busybox", _file_digest(busybox)), fill)
    return _image(BUSYBOX_IMAGE, [layer], {"Cmd": ["sh"], "Env": ["PATH=/bin"]}, started)


def build_flink_image() -> ImageTar:
    """Debian 12 with OpenJDK 17 (layer 1) and Flink 2.3 in /opt/flink (layer 2)."""
    started = time.monotonic()
    layers, config = _flink_layers()
    return _image(FLINK_IMAGE, layers, config, started)


JOB_DIR = "/opt/flink/job"


def build_flink_job_image(jar: Path, ref: str) -> ImageTar:
    """FLINK_IMAGE with `jar` added as JOB_DIR/<its name> (a third layer): an application cluster's image."""
    started = time.monotonic()
    layers, config = _flink_layers()

    def fill(tar: tarfile.TarFile) -> None:
        _add_dir(tar, "opt/flink/job", FLINK_UID)
        _add_file(tar, f"opt/flink/job/{jar.name}", jar, FLINK_UID, mode=0o644)

    job = _tar_layer(f"job-{jar.stem}", _key("job", jar.name, _file_digest(jar)), fill)
    return _image(ref, [*layers, job], config, started)


def _flink_layers() -> tuple[list[Layer], dict[str, Any]]:
    from testbed.flink import FLINK_VERSION, ensure_flink_dist

    passwd = f"flink:x:{FLINK_UID}:{FLINK_UID}:flink:/opt/flink:/bin/bash"
    base = _mmdebstrap_layer(
        "flink-base",
        ("openjdk-17-jre-headless", "gettext-base"),
        customize=(
            f'echo "{passwd}" >> "$1/etc/passwd"',
            f'echo "flink:x:{FLINK_UID}:" >> "$1/etc/group"',
        ),
    )
    dist = ensure_flink_dist()
    jars = sorted((dist / "lib").glob("*.jar"))
    files = FILES / "flink"
    key = _key("flink", FLINK_VERSION, [(j.name, j.stat().st_size) for j in jars], _tree_digest(files))

    def fill(tar: tarfile.TarFile) -> None:
        _add_dir(tar, "opt")
        _add_dir(tar, "opt/flink", FLINK_UID)
        for sub in ("bin", "conf", "lib", "log", "plugins", "usrlib"):
            _add_dir(tar, f"opt/flink/{sub}", FLINK_UID)
        for jar in jars:
            _add_file(tar, f"opt/flink/lib/{jar.name}", jar, FLINK_UID, mode=0o644)
        _add_file(tar, "opt/flink/bin/bash-java-utils.jar", dist / "bash-java-utils.jar", FLINK_UID, mode=0o644)
        _add_file(tar, "opt/flink/bin/docker-entrypoint.sh", files / "docker-entrypoint.sh", FLINK_UID, mode=0o755)
        for conf in ("config.yaml", "log4j-console.properties"):
            _add_file(tar, f"opt/flink/conf/{conf}", files / conf, FLINK_UID, mode=0o644)
        _add_symlink(tar, "docker-entrypoint.sh", "opt/flink/bin/docker-entrypoint.sh")

    app = _tar_layer("flink-app", key, fill)
    config = {
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["help"],
        "Env": [
            "PATH=/opt/flink/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64",
            "FLINK_HOME=/opt/flink",
        ],
        "WorkingDir": "/opt/flink",
        "User": f"{FLINK_UID}:{FLINK_UID}",
        "ExposedPorts": {"6123/tcp": {}, "8081/tcp": {}},
    }
    return [base, app], config


def _pip_target(target: Path, requirements: list[str], *, deps: bool, log: Path) -> None:
    """`pip install --target` for Debian 12's CPython on x86_64 (binary wheels only), on the host."""
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--abi", f"cp{PYTHON_VERSION.replace('.', '')}",
    ]  # fmt: skip
    # Debian 12 has glibc 2.36: every manylinux tag up to that (pip does not expand one into older ones).
    for minor in range(36, 4, -1):
        argv += ["--platform", f"manylinux_2_{minor}_x86_64"]
    argv += [
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux2010_x86_64",
        "--platform",
        "manylinux1_x86_64",
    ]
    argv += ["--only-binary=:all:"] if deps else ["--no-deps"]
    done = subprocess.run([*argv, *requirements], capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ImageBuildError(f"pip install --target {target} {' '.join(requirements)} failed:\n{done.stderr[-3000:]}")


def build_operator_image() -> ImageTar:
    """The Dockerfile's recipe: python3 + /venv (layer 1), its dependencies (layer 2), flinkop (layer 3)."""
    started = time.monotonic()
    site = f"venv/lib/python{PYTHON_VERSION}/site-packages"
    base = _mmdebstrap_layer(
        "operator-base",
        ("python3",),
        customize=(
            'chroot "$1" python3 -m venv --without-pip /venv',
            f'test -d "$1/{site}"',
            f'echo "flinkop:x:{OPERATOR_UID}:{OPERATOR_UID}::/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"',
            f'echo "flinkop:x:{OPERATOR_UID}:" >> "$1/etc/group"',
        ),
    )
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = [str(r) for r in pyproject["project"]["dependencies"]]

    def pip_layer(name: str, key: str, requirements: list[str], deps: bool) -> Layer:
        def fill(tar: tarfile.TarFile) -> None:
            with tempfile.TemporaryDirectory(prefix=f"flinkop-{name}-", dir=images_dir()) as tmp:
                target = Path(tmp) / "site-packages"
                _pip_target(target, requirements, deps=deps, log=Path(tmp) / "pip.log")
                for entry in sorted(target.iterdir()):
                    if entry.name == "bin":  # console scripts written for the host's python
                        continue
                    _add_tree(tar, f"{site}/{entry.name}", entry)

        return _tar_layer(name, key, fill)

    deps = pip_layer("operator-deps", _key("deps", requirements, PYTHON_VERSION), requirements, True)
    source_key = _key(
        "flinkop",
        _tree_digest(REPO / "operator" / "flinkop"),
        _file_digest(REPO / "pyproject.toml"),
        _file_digest(REPO / "README.md"),
    )
    with tempfile.TemporaryDirectory(prefix="flinkop-source-", dir=images_dir()) as source:
        # What the Dockerfile COPYs, so that pip's build leaves nothing in the work tree.
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, Path(source) / name)
        shutil.copytree(
            REPO / "operator", Path(source) / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
        app = pip_layer("operator-app", source_key, [source], False)
    config = {
        "Entrypoint": ["python", "-m", "flinkop"],
        "Env": ["PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1"],
        "User": f"{OPERATOR_UID}:{OPERATOR_UID}",
    }
    return _image(OPERATOR_IMAGE, [base, deps, app], config, started)


BUILDERS: dict[str, Callable[[], ImageTar]] = {
    PAUSE_IMAGE: build_pause_image,
    BUSYBOX_IMAGE: build_busybox_image,
    FLINK_IMAGE: build_flink_image,
    OPERATOR_IMAGE: build_operator_image,
}


def build_all(refs: tuple[str, ...] = tuple(BUILDERS)) -> list[ImageTar]:
    """Builds (or finds cached) the images named by `refs`, in that order."""
    unknown = [r for r in refs if r not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown image(s) {unknown}; known: {sorted(BUILDERS)}")
    return [BUILDERS[ref]() for ref in refs]


def main() -> None:
    """`python -m testbed.images`: builds every image, printing each one's size and time."""
    for image in build_all():
        state = "cached" if image.cached else "built"
        print(f"{image.ref}: {state}, {image.size / 1e6:.0f} MB, {image.build_seconds:.1f} s, {image.path}")


if __name__ == "__main__":
    main()
