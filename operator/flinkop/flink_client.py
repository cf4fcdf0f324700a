"""The Flink REST client: every call the operator makes to a Flink session cluster.

Each method is one REST call with a timeout. Reads and idempotent writes are retried on
connection errors and 502/503/504; errors say which call on which cluster failed and why.

The endpoint is untrusted input (a FlinkJob's author chooses it): each attempt has a total deadline
(the timeout, however slowly the answer drips), the body read is capped (`max_response_bytes`),
redirects are not followed, connections go only to addresses the `NetGuard` vetted, an answer of the
wrong shape is an error naming the call, and the request's own credentials are cut out of any text
of the answer that reaches an error message.
"""

from __future__ import annotations

import functools
import json as jsonlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import requests

from flinkop.credentials import RestCredentials
from flinkop.guarded_http import BodyTooLarge, guarded_session, read_capped, total_deadline
from flinkop.netguard import NetGuard, NetworkDenied

SavepointStatus = Literal["IN_PROGRESS", "COMPLETED", "FAILED", "UNKNOWN"]
TERMINAL_JOB_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})
_RETRYABLE_HTTP = frozenset({502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
UPLOAD_BYTES_PER_SECOND = 1_000_000  # the slowest upload a jar's deadline allows for
_P = ParamSpec("_P")
_R = TypeVar("_R")


class FlinkError(Exception):
    """A Flink REST call failed. `status` is the HTTP status, None when Flink was not reached."""

    def __init__(self, call: str, url: str, detail: str, status: int | None = None) -> None:
        self.call = call
        self.url = url
        self.detail = detail
        self.status = status
        super().__init__(f"Flink REST {call} at {url} failed: {detail}")


class FlinkUnreachable(FlinkError):
    """Flink did not answer at all (connection refused, timeout, DNS)."""


class FlinkNotFound(FlinkError):
    """Flink answered 404: the job, jar or trigger does not exist there."""


class FlinkDenied(FlinkUnreachable):
    """The endpoint resolves into a denied network (`NetGuard`): nothing was sent."""


def _shaped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """An answer that is JSON but not of the shape Flink gives becomes a FlinkError naming the call."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            client = args[0]
            assert isinstance(client, FlinkClient)
            detail = client.scrub(f"the answer is not shaped as Flink's ({type(exc).__name__}: {str(exc)[:200]})")
            raise FlinkError(method.__name__.replace("_", " "), client.base_url, detail) from None

    return wrapper


@dataclass(frozen=True)
class VertexInfo:
    id: str
    name: str
    parallelism: int
    status: str


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    state: str
    vertices: tuple[VertexInfo, ...] = ()
    start_time_ms: int = 0
    # From /jobs/overview, which has task counts instead of vertices: (running, total).
    tasks: tuple[int, int] | None = None

    @property
    def all_vertices_running(self) -> bool:
        if self.state != "RUNNING":
            return False
        if self.tasks is not None:  # from the live overview: wins over vertices from cached details
            return self.tasks[1] > 0 and self.tasks[0] == self.tasks[1]
        return bool(self.vertices) and all(v.status == "RUNNING" for v in self.vertices)

    @property
    def parallelism(self) -> int:
        return max((v.parallelism for v in self.vertices), default=0)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


@dataclass(frozen=True)
class StartProgress:
    """A starting job's progress: checkpointing on or off, when its latest checkpoint completed
    (ms since the epoch), and each failure (a restart under its restart strategy) as (ms, cause)."""

    checkpointing: bool
    latest_checkpoint_ms: int | None = None
    failures: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class SavepointOperation:
    status: SavepointStatus
    location: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class JarFile:
    id: str
    name: str
    uploaded_ms: int = 0


@dataclass(frozen=True)
class LatestSavepoint:
    path: str
    trigger_timestamp_ms: int


@dataclass
class FlinkClient:
    base_url: str
    timeout: float = 10.0
    retries: int = 2
    retry_backoff: float = 0.5
    session: requests.Session = field(default_factory=lambda: guarded_session(NetGuard(), "Flink REST"))
    credentials: RestCredentials | None = field(default=None, repr=False)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._secrets = self.credentials.secret_texts() if self.credentials is not None else ()
        if self.credentials is not None:
            authorization = self.credentials.authorization()
            if isinstance(authorization, str):
                self.session.headers["Authorization"] = authorization
            elif authorization is not None:
                self.session.auth = authorization
            self.session.verify = self.credentials.verify()

    @property
    def identity(self) -> str:
        """The endpoint and the credentials used on it (their digest): what read caches are keyed by,
        so that FlinkJobs with different credentials never share what one of them read."""
        return f"{self.base_url}#{self.credentials.key}" if self.credentials is not None else self.base_url

    def scrub(self, text: str) -> str:
        """Text from the endpoint, with this client's credentials cut out (an endpoint may echo them)."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    # -- transport -------------------------------------------------------------------------

    def _request(
        self,
        call: str,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        retry: bool = True,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        attempts = 1 + (self.retries if retry else 0)
        last: FlinkError | None = None
        limit = timeout or self.timeout
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.retry_backoff * attempt)
            try:
                with total_deadline(limit) as scope:
                    status, reason, body, location = self._exchange(method, url, json, files, params, limit)
                if scope.expired:
                    raise requests.Timeout("cut off")
            except NetworkDenied as exc:
                raise FlinkDenied(call, url, str(exc)) from None
            except requests.exceptions.SSLError as exc:
                last = FlinkUnreachable(call, url, f"TLS handshake failed; check spec.tls ({_short(exc)})")
                continue
            except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if not scope.expired and not isinstance(exc, requests.Timeout):
                    last = FlinkUnreachable(call, url, f"the answer broke off ({_short(exc)})")
                else:
                    last = FlinkUnreachable(call, url, f"no complete answer within {limit:g} s")
                continue
            except requests.ConnectionError as exc:
                if scope.expired:
                    last = FlinkUnreachable(call, url, f"no complete answer within {limit:g} s")
                else:
                    last = FlinkUnreachable(call, url, f"cannot connect ({_short(exc)})")
                continue
            except BodyTooLarge as exc:
                raise FlinkError(call, url, f"{exc}; not read (FLINKOP_FLINK_MAX_RESPONSE_BYTES)") from None
            except requests.RequestException as exc:
                raise FlinkError(call, url, self.scrub(_short(exc))) from None
            if status in _RETRYABLE_HTTP:
                last = FlinkError(call, url, f"HTTP {status}: {self._errors(body, reason)}", status)
                continue
            if status in (401, 403):
                raise FlinkError(
                    call,
                    url,
                    f"HTTP {status}: the endpoint refused the request's credentials (spec.restAuthSecretRef)",
                    status,
                )
            if 300 <= status < 400:
                where = self.scrub(location or "nowhere")[:200]
                raise FlinkError(
                    call,
                    url,
                    f"HTTP {status}: a redirect to {where}; Flink does not redirect, and the operator does not follow",
                    status,
                )
            if status == 404:
                raise FlinkNotFound(call, url, f"HTTP 404: {self._errors(body, reason)}", 404)
            if status >= 400:
                raise FlinkError(call, url, f"HTTP {status}: {self._errors(body, reason)}", status)
            if not body:
                return {}
            try:
                return jsonlib.loads(body)
            except ValueError:
                text = self.scrub(body[:4096].decode("utf-8", "replace"))[:200]
                raise FlinkError(call, url, f"answer is not JSON: {text!r}") from None
        assert last is not None
        raise last

    def _exchange(
        self,
        method: str,
        url: str,
        json: dict[str, Any] | None,
        files: dict[str, Any] | None,
        params: dict[str, str] | None,
        timeout: float,
    ) -> tuple[int, str, bytes, str | None]:
        """One request: (status, reason, body read up to the cap, Location header)."""
        with self.session.request(
            method,
            url,
            json=json,
            files=files,
            params=params,
            timeout=timeout,
            # Given per request: requests lets REQUESTS_CA_BUNDLE override the session's own setting.
            verify=self.session.verify,
            stream=True,
            allow_redirects=False,
        ) as resp:
            return (
                resp.status_code,
                resp.reason or "",
                read_capped(resp, self.max_response_bytes),
                resp.headers.get("Location"),
            )

    def _errors(self, body: bytes, reason: str) -> str:
        try:
            parsed = jsonlib.loads(body)
        except ValueError:
            return self.scrub(body[:4096].decode("utf-8", "replace") or reason[:200])[:300]
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        if isinstance(errors, list) and errors:
            return summarize_exception(self.scrub("\n".join(str(e) for e in errors)))
        return self.scrub(str(parsed)[:4096])[:300]

    # -- cluster ---------------------------------------------------------------------------

    @_shaped
    def config(self) -> dict[str, str]:
        """The JobManager's configuration (`GET /jobmanager/config`) as a key -> value map."""
        entries = self._request("read cluster configuration", "GET", "/jobmanager/config")
        return {str(e["key"]): str(e["value"]) for e in entries}

    @_shaped
    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("read cluster overview", "GET", "/overview")
        return result

    @_shaped
    def jobs_overview(self) -> dict[str, JobInfo]:
        """Every job the cluster knows, in one call (`GET /jobs/overview`, answered live), by id.
        Its entries have task counts, not vertices."""
        body = self._request("list jobs", "GET", "/jobs/overview")
        jobs: dict[str, JobInfo] = {}
        for j in body.get("jobs", []):
            tasks = j.get("tasks") or {}
            jobs[str(j["jid"])] = JobInfo(
                id=str(j["jid"]),
                name=str(j.get("name", "")),
                state=str(j.get("state", "")),
                start_time_ms=int(j.get("start-time", 0) or 0),
                tasks=(int(tasks.get("running", 0)), int(tasks.get("total", 0))),
            )
        return jobs

    # -- jars ------------------------------------------------------------------------------

    @_shaped
    def list_jars(self) -> list[JarFile]:
        body = self._request("list jars", "GET", "/jars")
        return [
            JarFile(id=str(f["id"]), name=str(f["name"]), uploaded_ms=int(f.get("uploaded", 0)))
            for f in body.get("files", [])
        ]

    @_shaped
    def upload_jar(self, path: Path, name: str) -> str:
        """Uploads a jar under `name`; returns its jar id. Not retried: an upload is not idempotent."""
        with open(path, "rb") as fh:
            body = self._request(
                f"upload jar {name}",
                "POST",
                "/jars/upload",
                files={"jarfile": (name, fh, "application/x-java-archive")},
                retry=False,
                # The whole upload's deadline: 120 s, or more for a jar too large to send at 1 MB/s by then.
                timeout=max(self.timeout, 120.0, path.stat().st_size / UPLOAD_BYTES_PER_SECOND),
            )
        filename = str(body.get("filename", ""))
        if not filename:
            raise FlinkError(
                f"upload jar {name}", f"{self.base_url}/jars/upload", self.scrub(f"no filename in {body!r}")[:300]
            )
        return filename.rsplit("/", 1)[-1]

    def delete_jar(self, jar_id: str) -> None:
        """Deletes an uploaded jar; one that is already gone is fine (Flink answers that with HTTP 400
        "File ... does not exist", e.g. when another FlinkJob using the same jar deleted it first)."""
        try:
            self._request(f"delete jar {jar_id}", "DELETE", f"/jars/{jar_id}")
        except FlinkNotFound:
            pass
        except FlinkError as exc:
            if not (exc.status == 400 and "does not exist" in exc.detail):
                raise

    @_shaped
    def run_jar(
        self,
        jar_id: str,
        *,
        job_id: str,
        parallelism: int,
        entry_class: str | None,
        args: list[str],
        savepoint_path: str | None,
        allow_non_restored_state: bool,
    ) -> str:
        """`flink run [-s savepoint] [-n]`: starts the jar as job `job_id`. Returns the job id."""
        body: dict[str, Any] = {
            "jobId": job_id,
            "parallelism": parallelism,
            "programArgsList": list(args),
            "allowNonRestoredState": allow_non_restored_state,
        }
        if entry_class:
            body["entryClass"] = entry_class
        if savepoint_path:
            body["savepointPath"] = savepoint_path
        # Not retried here: a resubmission is decided by the planner, which first checks
        # whether job `job_id` exists.
        answer = self._request(
            f"run jar {jar_id} as job {job_id}",
            "POST",
            f"/jars/{jar_id}/run",
            json=body,
            retry=False,
            timeout=max(self.timeout, 120.0),
        )
        return str(answer.get("jobid", job_id))

    # -- jobs ------------------------------------------------------------------------------

    @_shaped
    def job(self, job_id: str) -> JobInfo:
        body = self._request(f"read job {job_id}", "GET", f"/jobs/{job_id}")
        if not isinstance(body.get("state"), str) or not isinstance(body.get("jid", job_id), str):
            raise ValueError("a job without a state or with a jid that is not a string")
        vertices = tuple(
            VertexInfo(
                id=str(v.get("id", "")),
                name=str(v.get("name", "")),
                parallelism=int(v.get("parallelism", 0)),
                status=str(v.get("status", "")),
            )
            for v in body.get("vertices", [])
        )
        return JobInfo(
            id=str(body.get("jid", job_id)),
            name=str(body.get("name", "")),
            state=str(body.get("state", "")),
            vertices=vertices,
            start_time_ms=int(body.get("start-time", 0) or 0),
        )

    @_shaped
    def job_state(self, job_id: str) -> str:
        """The job's state as the dispatcher knows it now (`/jobs/<id>` is cached for
        web.refresh-interval, 3 s by default; `/jobs/<id>/status` is not)."""
        body = self._request(f"read state of job {job_id}", "GET", f"/jobs/{job_id}/status")
        return str(body.get("status", ""))

    @_shaped
    def job_root_exception(self, job_id: str) -> str | None:
        """The first line-ish of the job's root exception, with the deepest cause Flink gives."""
        body = self._request(f"read exceptions of job {job_id}", "GET", f"/jobs/{job_id}/exceptions")
        history = body.get("exceptionHistory", {}).get("entries", [])
        text = body.get("root-exception") or (history[0].get("stacktrace") if history else None)
        if not text:
            return None
        return summarize_exception(self.scrub(str(text)))

    def cancel_job(self, job_id: str) -> None:
        self._request(f"cancel job {job_id}", "PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

    @_shaped
    def stop_with_savepoint(self, job_id: str, *, trigger_id: str, target_directory: str, drain: bool) -> str:
        """`flink stop`: triggers stop-with-savepoint with our own trigger id (idempotent)."""
        body = {"targetDirectory": target_directory, "drain": drain, "triggerId": trigger_id}
        answer = self._request(f"stop job {job_id} with a savepoint", "POST", f"/jobs/{job_id}/stop", json=body)
        return str(answer.get("request-id", trigger_id))

    @_shaped
    def trigger_savepoint(self, job_id: str, *, trigger_id: str, target_directory: str, cancel_job: bool) -> str:
        """`flink savepoint` (cancel_job=False) or `flink cancel -s` (cancel_job=True)."""
        body = {"target-directory": target_directory, "cancel-job": cancel_job, "triggerId": trigger_id}
        what = "cancel job {0} with a savepoint" if cancel_job else "take a savepoint of job {0}"
        answer = self._request(what.format(job_id), "POST", f"/jobs/{job_id}/savepoints", json=body)
        return str(answer.get("request-id", trigger_id))

    @_shaped
    def savepoint_status(self, job_id: str, trigger_id: str) -> SavepointOperation:
        try:
            body = self._request(
                f"read savepoint {trigger_id} of job {job_id}",
                "GET",
                f"/jobs/{job_id}/savepoints/{trigger_id}",
            )
        except FlinkNotFound:
            return SavepointOperation("UNKNOWN")
        except FlinkError as exc:
            # Flink answers 500 "Unknown trigger id" / "Unknown job" for triggers it never saw.
            if exc.status is not None and "nknown" in exc.detail:
                return SavepointOperation("UNKNOWN")
            raise
        state = str(body.get("status", {}).get("id", ""))
        if state == "IN_PROGRESS":
            return SavepointOperation("IN_PROGRESS")
        failure = self._operation_failure(body)
        if failure is not None:
            return SavepointOperation("FAILED", failure=failure)
        location = (body.get("operation") or {}).get("location")
        if location:
            return SavepointOperation("COMPLETED", location=str(location))
        return SavepointOperation(
            "FAILED", failure=self.scrub(f"savepoint finished without a location: {body!r}")[:400]
        )

    @_shaped
    def resource_requirements(self, job_id: str) -> dict[str, int]:
        """The adaptive scheduler's per-vertex parallelism upper bounds."""
        body = self._request(
            f"read resource requirements of job {job_id}", "GET", f"/jobs/{job_id}/resource-requirements"
        )
        return {str(v): int(r["parallelism"]["upperBound"]) for v, r in body.items()}

    def set_resource_requirements(self, job_id: str, upper_bounds: dict[str, int]) -> None:
        """Rescales a job in place (adaptive scheduler): every vertex between 1 and its upper bound."""
        body = {v: {"parallelism": {"lowerBound": 1, "upperBound": n}} for v, n in upper_bounds.items()}
        self._request(
            f"set resource requirements of job {job_id}", "PUT", f"/jobs/{job_id}/resource-requirements", json=body
        )

    @_shaped
    def dispose_savepoint(self, path: str) -> str:
        """`flink savepoint -d PATH`: starts disposing of a savepoint (no job needed); the trigger id."""
        answer = self._request(
            f"dispose of savepoint {path}", "POST", "/savepoint-disposal", json={"savepoint-path": path}, retry=False
        )
        return str(answer["request-id"])

    @_shaped
    def disposal_status(self, trigger_id: str) -> SavepointOperation:
        """COMPLETED (location None) when the savepoint is gone, FAILED with the cause otherwise."""
        try:
            body = self._request(f"read savepoint disposal {trigger_id}", "GET", f"/savepoint-disposal/{trigger_id}")
        except FlinkNotFound:
            return SavepointOperation("UNKNOWN")
        if str(body.get("status", {}).get("id", "")) == "IN_PROGRESS":
            return SavepointOperation("IN_PROGRESS")
        failure = self._operation_failure(body)
        if failure is not None:
            return SavepointOperation("FAILED", failure=failure)
        return SavepointOperation("COMPLETED")

    def _operation_failure(self, body: dict[str, Any]) -> str | None:
        """The cause of a finished asynchronous operation (savepoint, disposal) that failed, if it did."""
        cause = (body.get("operation") or {}).get("failure-cause")
        if not cause:
            return None
        return summarize_exception(self.scrub(str(cause.get("stack-trace") or cause.get("class") or cause)))

    @_shaped
    def latest_savepoint(self, job_id: str) -> LatestSavepoint | None:
        """The job's latest completed savepoint, from its checkpoint statistics."""
        body = self._request(f"read checkpoints of job {job_id}", "GET", f"/jobs/{job_id}/checkpoints")
        latest = (body.get("latest") or {}).get("savepoint") or {}
        path = latest.get("external_path")
        if not path:
            return None
        return LatestSavepoint(path=str(path), trigger_timestamp_ms=int(latest.get("trigger_timestamp", 0)))

    def start_progress(self, job_id: str) -> StartProgress:
        """What tells whether a job that just started is stable: whether it checkpoints, when its
        latest checkpoint completed, and the failures (each one a restart) since it started. All
        three are views Flink caches for web.refresh-interval: they lag, never lead."""
        try:
            config = self._request(
                f"read checkpoint config of job {job_id}", "GET", f"/jobs/{job_id}/checkpoints/config"
            )
            interval = int(config.get("interval", 0) or 0)
            checkpointing = 0 < interval < 2**62
        except FlinkNotFound:  # Flink answers 404 for a job without checkpointing
            checkpointing = False
        latest_ms = None
        if checkpointing:
            stats = self._request(f"read checkpoints of job {job_id}", "GET", f"/jobs/{job_id}/checkpoints")
            completed = (stats.get("latest") or {}).get("completed") or {}
            if completed:
                latest_ms = int(completed.get("latest_ack_timestamp", 0) or 0) or None
        body = self._request(f"read exceptions of job {job_id}", "GET", f"/jobs/{job_id}/exceptions")
        entries = (body.get("exceptionHistory") or {}).get("entries") or []
        failures = sorted(
            (int(e.get("timestamp", 0) or 0), summarize_exception(str(e.get("stacktrace") or e.get("exceptionName"))))
            for e in entries
            if isinstance(e, dict)
        )
        return StartProgress(checkpointing, latest_ms, tuple(failures))


def summarize_exception(text: str, limit: int = 1000) -> str:
    """Flink's stack traces, cut to what a person needs: the deepest 'Caused by' message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    causes = [ln for ln in lines if ln.startswith("Caused by:")]
    chosen = causes[-1][len("Caused by:") :].strip() if causes else lines[0]
    for ln in lines:
        if "Cannot map checkpoint/savepoint state" in ln:
            chosen = ln.removeprefix("Caused by:").strip()
            break
    return chosen if len(chosen) <= limit else chosen[: limit - 1] + "…"


def _short(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text[:200]
