"""Test-side helpers for Flink's REST API (on `requests`), independent of the operator's own client.

Every wait has a timeout, and its error says what was awaited and what was last seen.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")

TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})

# The test job's counter (tests/jobs/src/io/flinkop/testjob/CounterJob.java) registers its gauges
# under the operator name "counter"; Flink's REST API names them "<operator>.<gauge>".
COUNTER_OPERATOR = "counter"


class FlinkRestError(RuntimeError):
    """A REST call answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:4000]}")
        self.status = status
        self.body = body


class FlinkRest:
    """A Flink REST endpoint, e.g. `FlinkRest(cluster.rest_url)`."""

    def __init__(self, base_url: str, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.session = requests.Session()

    # -- plumbing --------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.request_timeout)
        resp = self.session.request(method, self.base_url + path, **kwargs)
        if not resp.ok:
            raise FlinkRestError(method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    @staticmethod
    def wait_for(
        what: str,
        probe: Callable[[], tuple[bool, T]],
        timeout: float,
        interval: float = 0.25,
    ) -> T:
        """Calls `probe` until it answers (True, value); returns that value.

        On timeout raises TimeoutError naming `what` and the last value (or error) seen.
        """
        deadline = time.monotonic() + timeout
        last: object = "nothing yet"
        while True:
            try:
                done, value = probe()
                if done:
                    return value
                last = value
            except (requests.RequestException, FlinkRestError, LookupError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}")
            time.sleep(interval)

    # -- jars ------------------------------------------------------------------------------------

    def upload_jar(self, jar: Path) -> str:
        """Uploads a jar; returns its jar id (the basename of the stored file)."""
        with open(jar, "rb") as f:
            answer = self.request(
                "POST", "/jars/upload", files={"jarfile": (jar.name, f, "application/x-java-archive")}
            )
        return str(answer["filename"]).rsplit("/", 1)[-1]

    def run_jar(
        self,
        jar_id: str,
        parallelism: int,
        entry_class: str | None = None,
        args: Sequence[str] = (),
        savepoint_path: str | None = None,
        allow_non_restored_state: bool = False,
    ) -> str:
        """`flink run [-s savepoint_path] [-n]`: returns the job id. Raises FlinkRestError when refused."""
        body: dict[str, Any] = {
            "parallelism": parallelism,
            "programArgsList": list(args),
            "allowNonRestoredState": allow_non_restored_state,
        }
        if entry_class is not None:
            body["entryClass"] = entry_class
        if savepoint_path is not None:
            body["savepointPath"] = savepoint_path
        return str(self.post(f"/jars/{jar_id}/run", body)["jobid"])

    # -- jobs ------------------------------------------------------------------------------------

    def jobs_overview(self) -> list[dict[str, Any]]:
        """All jobs the cluster knows, newest first (`GET /jobs/overview`)."""
        jobs: list[dict[str, Any]] = self.get("/jobs/overview")["jobs"]
        return sorted(jobs, key=lambda j: int(j.get("start-time", 0)), reverse=True)

    def running_jobs(self) -> list[str]:
        """Ids of the jobs that are not in a terminal state (RUNNING, CREATED, RESTARTING, ...)."""
        return [j["jid"] for j in self.jobs_overview() if j["state"] not in TERMINAL_STATES]

    def job(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get(f"/jobs/{job_id}")
        return answer

    def job_state(self, job_id: str) -> str:
        """The state the dispatcher knows now: `/jobs/<id>` is cached by Flink for
        web.refresh-interval (3 s by default) and can still say RUNNING after a job ended."""
        answer: dict[str, Any] = self.get(f"/jobs/{job_id}/status")
        return str(answer["status"])

    def job_parallelism(self, job_id: str) -> int:
        """The largest parallelism among the job's vertices (all of them, for the test job)."""
        return max(int(v["parallelism"]) for v in self.job(job_id)["vertices"])

    def vertex_parallelism(self, job_id: str) -> dict[str, int]:
        return {str(v["name"]): int(v["parallelism"]) for v in self.job(job_id)["vertices"]}

    def job_exceptions(self, job_id: str) -> str:
        """The stack traces of the job's exception history, concurrent failures included
        (`GET /jobs/<id>/exceptions`; Flink 2.x has no `root-exception` any more, 1.x had)."""
        answer = self.get(f"/jobs/{job_id}/exceptions")
        parts = [str(answer.get("root-exception") or "")]
        for entry in (answer.get("exceptionHistory") or {}).get("entries", []):
            for failure in [entry, *(entry.get("concurrentExceptions") or [])]:
                parts.append(str(failure.get("stacktrace") or failure.get("exceptionName") or ""))
        return "\n".join(p for p in parts if p)

    def cancel_job(self, job_id: str) -> None:
        """Cancels without a savepoint (`PATCH /jobs/<id>?mode=cancel`); does not wait."""
        self.request("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

    def cancel_running_jobs(self, timeout: float = 30.0) -> None:
        """Cancels every job that is not in a terminal state and waits until they are."""
        for job_id in self.running_jobs():
            with contextlib.suppress(FlinkRestError):  # it may have ended meanwhile
                self.cancel_job(job_id)
        self.wait_for(
            "every job to reach a terminal state",
            lambda: (not (ids := self.running_jobs()), ids),
            timeout,
        )

    def wait_job_state(self, job_id: str, state: str | Collection[str], timeout: float = 60.0) -> str:
        """Waits until the job is in `state` (or one of them); returns the state.

        Fails early when the job reaches another terminal state.
        """
        wanted = {state} if isinstance(state, str) else set(state)

        def probe() -> tuple[bool, str]:
            current = self.job_state(job_id)
            if current not in wanted and current in TERMINAL_STATES:
                raise AssertionError(
                    f"job {job_id} reached {current} while waiting for {sorted(wanted)}; "
                    f"exceptions: {self.job_exceptions(job_id)[:3000]}"
                )
            return current in wanted, current

        return self.wait_for(f"job {job_id} to be {'/'.join(sorted(wanted))}", probe, timeout)

    def wait_job_running(self, job_id: str, timeout: float = 60.0) -> None:
        """Waits until the job is RUNNING with every subtask of every vertex RUNNING."""

        def probe() -> tuple[bool, str]:
            job = self.job(job_id)
            state = job["state"]
            if state in TERMINAL_STATES:
                raise AssertionError(
                    f"job {job_id} reached {state} while waiting for it to run; "
                    f"exceptions: {self.job_exceptions(job_id)[:3000]}"
                )
            seen = [f"{v['name']}: {v['tasks'].get('RUNNING', 0)}/{v['parallelism']} running" for v in job["vertices"]]
            ok = state == "RUNNING" and all(
                int(v["tasks"].get("RUNNING", 0)) == int(v["parallelism"]) for v in job["vertices"]
            )
            return ok, f"{state}; " + ", ".join(seen)

        self.wait_for(f"every subtask of job {job_id} to be RUNNING", probe, timeout)

    # -- savepoints and checkpoints --------------------------------------------------------------

    def _await_savepoint(self, job_id: str, request_id: str, what: str, timeout: float, interval: float = 0.25) -> str:
        def probe() -> tuple[bool, str]:
            answer = self.get(f"/jobs/{job_id}/savepoints/{request_id}")
            status = answer["status"]["id"]
            if status != "COMPLETED":
                return False, status
            operation = answer.get("operation") or {}
            if operation.get("failure-cause"):
                cause = operation["failure-cause"]
                raise SavepointFailed(job_id, str(cause.get("stack-trace") or cause))
            return True, str(operation["location"])

        return self.wait_for(f"{what} of job {job_id} (request {request_id})", probe, timeout, interval)

    def stop_with_savepoint(
        self,
        job_id: str,
        target_dir: str | None = None,
        drain: bool = False,
        timeout: float = 60.0,
        poll_interval: float = 0.25,
    ) -> str:
        """Stop-with-savepoint (`POST /jobs/<id>/stop`); returns the savepoint path once completed
        (polled every `poll_interval` seconds).

        Raises SavepointFailed when Flink reports a failure cause (the job then keeps running).
        """
        body: dict[str, Any] = {"drain": drain}
        if target_dir is not None:
            body["targetDirectory"] = target_dir
        request_id = str(self.post(f"/jobs/{job_id}/stop", body)["request-id"])
        return self._await_savepoint(job_id, request_id, "stop-with-savepoint", timeout, poll_interval)

    def trigger_savepoint(
        self, job_id: str, target_dir: str | None = None, cancel_job: bool = False, timeout: float = 60.0
    ) -> str:
        """`POST /jobs/<id>/savepoints` (`flink savepoint`, or `flink cancel -s` with cancel_job)."""
        body: dict[str, Any] = {"cancel-job": cancel_job}
        if target_dir is not None:
            body["target-directory"] = target_dir
        request_id = str(self.post(f"/jobs/{job_id}/savepoints", body)["request-id"])
        return self._await_savepoint(job_id, request_id, "savepoint", timeout)

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get(f"/jobs/{job_id}/checkpoints")
        return answer

    def restored_from(self, job_id: str) -> str | None:
        """`latest.restored.external_path`: the savepoint/checkpoint the job started from, if any."""
        restored = (self.checkpoints(job_id).get("latest") or {}).get("restored")
        return str(restored["external_path"]) if restored else None

    def wait_checkpoint_completed(self, job_id: str, timeout: float = 60.0) -> int:
        """Waits until the job has completed at least one checkpoint; returns the completed count."""

        def probe() -> tuple[bool, int]:
            completed = int(self.checkpoints(job_id)["counts"]["completed"])
            return completed > 0, completed

        return self.wait_for(f"a completed checkpoint of job {job_id}", probe, timeout)

    # -- the test job's state counter ------------------------------------------------------------

    def operator_metric(self, job_id: str, metric: str, agg: str = "max") -> float:
        """An operator metric aggregated over the subtasks of the vertex that has it.

        `metric` as Flink names it, e.g. "counter.maxCount"; `agg` one of min, max, sum, avg.
        Raises LookupError when no vertex reports it (yet).
        """
        for vertex in self.job(job_id)["vertices"]:
            path = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            answer = self.get(path, get=metric, agg=agg)
            for item in answer or []:
                if item.get("id") == metric and agg in item:
                    return float(item[agg])
        raise LookupError(f"no vertex of job {job_id} reports metric {metric!r} yet")

    def state_counter(self, job_id: str) -> int:
        """The test job's `maxCount` gauge: the largest per-key count, max across subtasks."""
        return int(self.operator_metric(job_id, f"{COUNTER_OPERATOR}.maxCount", "max"))

    def restored_keys(self, job_id: str) -> int:
        """The test job's `restoredKeys` gauge summed across subtasks: keys that came with a count."""
        return int(self.operator_metric(job_id, f"{COUNTER_OPERATOR}.restoredKeys", "sum"))

    def wait_state_counter_at_least(self, job_id: str, n: int, timeout: float = 60.0) -> int:
        """Waits until the job's state counter reaches `n`; returns the value read."""

        def probe() -> tuple[bool, int]:
            value = self.state_counter(job_id)
            return value >= n, value

        return self.wait_for(f"state counter of job {job_id} >= {n}", probe, timeout)


class SavepointFailed(RuntimeError):
    def __init__(self, job_id: str, cause: str) -> None:
        super().__init__(f"savepoint of job {job_id} failed: {cause[:4000]}")
        self.job_id = job_id
        self.cause = cause
