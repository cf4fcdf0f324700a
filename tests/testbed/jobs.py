"""The test job (tests/jobs/src), compiled with javac against Flink's lib jars into a runnable jar.

The jar is cached under ${XDG_CACHE_HOME:-~/.cache}/flinkop/jobs/<hash>/, the hash covering the
Java sources, the Flink version and the JDK; nothing compiled is committed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from testbed.flink import FLINK_VERSION, cache_root, ensure_flink_dist

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"
SRC_DIR = JOBS_DIR / "src"
MAIN_CLASS = "io.flinkop.testjob.CounterJob"
JAR_NAME = "flinkop-testjob.jar"


def _sources() -> list[Path]:
    return sorted(SRC_DIR.rglob("*.java"))


def _javac_version() -> str:
    done = subprocess.run(["javac", "-version"], capture_output=True, text=True, check=True)
    return (done.stdout + done.stderr).strip()


def source_hash() -> str:
    h = hashlib.sha256()
    h.update(f"flink {FLINK_VERSION}\n{_javac_version()}\n{MAIN_CLASS}\n".encode())
    for src in _sources():
        h.update(str(src.relative_to(SRC_DIR)).encode() + b"\0")
        h.update(src.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _compile(jar: Path) -> None:
    dist = ensure_flink_dist()
    classpath = str(dist / "lib" / "*")
    with tempfile.TemporaryDirectory(prefix="flinkop-testjob-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        javac = [
            "javac", "--release", "17", "-nowarn", "-encoding", "UTF-8",
            "-cp", classpath, "-d", str(classes), *map(str, _sources()),
        ]  # fmt: skip
        done = subprocess.run(javac, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"javac failed for the test job:\n{done.stdout}\n{done.stderr}")
        tmp_jar = Path(tmp) / JAR_NAME
        done = subprocess.run(
            ["jar", "--create", "--file", str(tmp_jar), "--main-class", MAIN_CLASS, "-C", str(classes), "."],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"jar failed for the test job:\n{done.stdout}\n{done.stderr}")
        jar.parent.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(".jar.partial")
        shutil.copyfile(tmp_jar, partial)
        partial.replace(jar)  # atomic: a cached jar is always complete


def build_test_job(out_dir: Path) -> Path:
    """The test job's jar (Main-Class in its manifest) in `out_dir`, compiled only when its sources changed."""
    cached = cache_root() / "jobs" / source_hash() / JAR_NAME
    if not cached.is_file():
        _compile(cached)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / JAR_NAME
    shutil.copyfile(cached, target)
    return target
