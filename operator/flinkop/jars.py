"""Fetching and checking job jars: `file://`, `http://`, `https://`, digest and jar format.

A fetched jar is kept in a local cache named by its digest; on the cluster it is uploaded under
a name that carries the digest, so that an upload of the same content is found and reused.

A jar server is untrusted input: a download is capped in size (`max_bytes`) and in total time
(`deadline`), goes only to vetted addresses (`NetGuard`: never link-local or cloud metadata), and
redirects are followed by hand, each hop checked against the host allow-list and the guard before
it is requested. `file://` jars read the operator's own disk and are refused unless enabled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import requests

from flinkop.guarded_http import guarded_session, total_deadline
from flinkop.netguard import NetGuard, NetworkDenied

DOWNLOAD_TIMEOUT = 30.0  # per read
DEFAULT_DEADLINE = 300.0  # for the whole download
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
MAX_REDIRECTS = 5
_REMOTE_CACHE_SECONDS = 60.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class JarError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        # JarFetchFailed | JarDigestMismatch | NotAJar | JarTooLarge | JarHostNotAllowed | DeniedNetwork
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class LocalJar:
    path: Path
    sha256: str


def cluster_name(sha256: str, uri: str) -> str:
    """The file name a jar is uploaded under: its digest first, then its own name."""
    base = Path(unquote(urlparse(uri).path)).name or "job.jar"
    if not base.endswith(".jar"):
        base += ".jar"
    return f"flinkop-{sha256[:20]}-{base}"


def is_cluster_name_for(name: str, sha256: str) -> bool:
    return name.startswith(f"flinkop-{sha256[:20]}-")


def host_allowed(uri: str, allowed: tuple[str, ...]) -> bool:
    """Whether `uri` may be fetched under an allow-list of hosts (`repo.example.com`, `*.example.com`;
    `file` admits file:// paths on the operator's own disk). An empty list allows everything."""
    if not allowed:
        return True
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return "file" in allowed
    host = (parsed.hostname or "").lower()
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


class JarFetcher:
    def __init__(
        self,
        cache_dir: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        allowed_hosts: tuple[str, ...] = (),
        *,
        allow_file: bool = False,
        guard: NetGuard | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        from flinkop.settings import JAR_HOSTS_PLACEHOLDER

        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "flinkop-jars"
        self.max_bytes = max_bytes
        self.allowed_hosts = allowed_hosts
        # `file` in the allow-list is an explicit opt-in too (it names file:// as a source).
        self.allow_file = allow_file or "file" in allowed_hosts
        self.placeholder = JAR_HOSTS_PLACEHOLDER in allowed_hosts
        self.guard = guard or NetGuard()
        self.deadline = deadline
        self._session = guarded_session(self.guard, "jar fetch")
        self._file_digests: dict[tuple[str, int, int], str] = {}
        self._remote: dict[str, tuple[float, LocalJar]] = {}

    def fetch(self, uri: str, expected_sha256: str | None) -> LocalJar:
        parsed = urlparse(uri)
        if self.placeholder:
            raise JarError(
                "JarHostNotAllowed",
                f"jar {uri} was not fetched: the operator's FLINKOP_JAR_ALLOWED_HOSTS is still the placeholder of "
                "deploy/operator.yaml; whoever runs the operator must set it to the hosts jars may come from",
            )
        if parsed.scheme == "file" and not self.allow_file:
            raise JarError(
                "JarHostNotAllowed",
                f"jar {uri} was not read: file:// jars (the operator's own disk) are off; whoever runs the operator "
                "can enable them with FLINKOP_JAR_ALLOW_FILE=true",
            )
        self._check_host(uri)
        if parsed.scheme == "file":
            jar = self._local(Path(unquote(parsed.path)), uri)
        elif parsed.scheme in ("http", "https"):
            jar = self._remote_jar(uri)
        else:
            raise JarError("JarFetchFailed", f"jar {uri}: scheme {parsed.scheme!r} is not file, http or https")
        if expected_sha256 and jar.sha256 != expected_sha256.lower():
            raise JarError(
                "JarDigestMismatch",
                f"jar {uri} has sha256 {jar.sha256}, not the {expected_sha256.lower()} that spec.jar.sha256 "
                "requires; it was not submitted",
            )
        return jar

    def _local(self, path: Path, uri: str) -> LocalJar:
        try:
            st = path.stat()
        except OSError as exc:
            raise JarError("JarFetchFailed", f"jar {uri} cannot be read: {exc.strerror or exc}") from exc
        if st.st_size > self.max_bytes:
            raise JarError("JarTooLarge", f"jar {uri} is {st.st_size} bytes, over the limit of {self.max_bytes}")
        key = (str(path), st.st_mtime_ns, st.st_size)
        digest = self._file_digests.get(key)
        if digest is None:
            digest = _sha256_file(path)
            self._check_jar(path, uri)
            self._file_digests[key] = digest
        return LocalJar(path, digest)

    def _remote_jar(self, uri: str) -> LocalJar:
        cached = self._remote.get(uri)
        if cached and time.monotonic() - cached[0] < _REMOTE_CACHE_SECONDS and cached[1].path.exists():
            return cached[1]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, total_deadline(self.deadline) as scope:
                try:
                    self._download(uri, out, digest)
                except NetworkDenied as exc:
                    raise JarError("DeniedNetwork", f"jar {uri} was not fetched: {exc}") from None
                except requests.RequestException as exc:
                    if scope.expired:
                        raise JarError(
                            "JarFetchFailed",
                            f"jar {uri} could not be fetched: not complete within {self.deadline:g} s "
                            "(FLINKOP_JAR_FETCH_TIMEOUT)",
                        ) from None
                    raise JarError("JarFetchFailed", f"jar {uri} could not be fetched: {_short(exc)}") from None
                if scope.expired:  # a body without a length ends where the deadline cut it
                    raise JarError(
                        "JarFetchFailed",
                        f"jar {uri} could not be fetched: not complete within {self.deadline:g} s "
                        "(FLINKOP_JAR_FETCH_TIMEOUT)",
                    )
            self._check_jar(tmp, uri)
            final = self.cache_dir / f"{digest.hexdigest()}.jar"
            tmp.replace(final)
        finally:
            tmp.unlink(missing_ok=True)
        jar = LocalJar(final, digest.hexdigest())
        self._remote[uri] = (time.monotonic(), jar)
        return jar

    def _download(self, uri: str, out: Any, digest: Any) -> None:
        """Streams `uri` into `out`, following redirects by hand: each hop is checked before it is asked."""
        url = uri
        for _ in range(MAX_REDIRECTS + 1):
            with self._session.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT, allow_redirects=False) as resp:
                if resp.status_code in _REDIRECTS and resp.headers.get("Location"):
                    following = urljoin(url, resp.headers["Location"])
                    if urlparse(following).scheme not in ("http", "https"):
                        raise JarError("JarFetchFailed", f"jar {uri} redirects to {following!r}, not http(s)")
                    self._check_host(following, f" (redirected from {uri})")
                    url = following
                    continue
                if resp.status_code != 200:
                    raise JarError("JarFetchFailed", f"jar {uri} could not be fetched: HTTP {resp.status_code}")
                size = 0
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise JarError("JarTooLarge", f"jar {uri} is over the limit of {self.max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                return
        raise JarError("JarFetchFailed", f"jar {uri} redirects more than {MAX_REDIRECTS} times; not followed")

    def _check_host(self, uri: str, how: str = "") -> None:
        if not host_allowed(uri, self.allowed_hosts):
            where = urlparse(uri).hostname or urlparse(uri).scheme
            raise JarError(
                "JarHostNotAllowed",
                f"jar {uri}{how} is on {where}, which is not in the operator's FLINKOP_JAR_ALLOWED_HOSTS "
                f"({', '.join(self.allowed_hosts)}); it was not fetched",
            )

    @staticmethod
    def _check_jar(path: Path, uri: str) -> None:
        if not zipfile.is_zipfile(path):
            raise JarError("NotAJar", f"{uri} is not a jar (not a zip archive); it was not submitted")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text[:300]
