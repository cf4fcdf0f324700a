"""A simulated Flink 2.3 REST API standing in for many session clusters with many jobs (bench B3).

No machine here runs 10,000 Flink jobs, so for the scale benchmark (and only there) this process
answers every REST call the operator makes (operator/flinkop/flink_client.py) with the JSON shapes
Flink 2.3 gives, from an in-memory model of clusters, jars, jobs, savepoints and disposals.

One port serves many clusters: the first path segment `cN` names the cluster, so
`http://127.0.0.1:PORT/c17` is a `flinkRestUrl` (the client joins base URL and path). A path with no
such prefix is cluster `c0`.

The model is a function of time, with no timers: a submitted job is INITIALIZING for half of
`--start-delay`, then RUNNING with its vertices DEPLOYING, then RUNNING with every vertex RUNNING; a
savepoint (stop, cancel or keep-running) is IN_PROGRESS for `--savepoint-delay`, then COMPLETED,
and a stopped job is FINISHED (CANCELED) from that moment. Like Flink: a job started from a
savepoint path the cluster never wrote FAILS at start (`FileNotFoundException`); a stop of a job
whose vertices are not all running fails; deleting or running a jar that is not there is a 400;
finished jobs stay listed in /jobs/overview; the same triggerId posted twice is one operation.

Counters (requests by endpoint kind, by cluster, by job; answers by HTTP status) and records (each
stop/savepoint trigger with its time, each submission with the savepoint it restored and the job
that savepoint came from) are served at `GET /_sim/stats` (`?jobs=1` adds per-job request counts).

    python bench/flink_sim.py --port 8081 --savepoint-delay 0.3 --start-delay 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

FLINK_VERSION = "2.3.0"
TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})
_CLUSTER = re.compile(r"^c\d+$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class SimConfig:
    savepoint_delay: float = 0.3  # trigger to COMPLETED
    start_delay: float = 0.5  # submission to every vertex RUNNING
    cancel_delay: float = 0.1  # cancel to CANCELED
    run_latency: float = 0.05  # /jars/<id>/run answers after this (Flink runs the program's main() first)
    dispose_delay: float = 0.1
    scheduler: str = "default"  # jobmanager.scheduler; "adaptive" for in-place rescales
    slots: int = 1_000_000  # per cluster: no slot shortage unless asked for


def _ms(t: float) -> int:
    return int(t * 1000)


def _error(status: int, *messages: str) -> web.Response:
    return web.json_response({"errors": list(messages)}, status=status)


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Jar:
    id: str
    name: str
    uploaded_ms: int
    size: int


@dataclass(slots=True)
class Trigger:
    job_id: str
    trigger_id: str
    kind: str  # stop | cancel | savepoint
    done_at: float
    location: str | None
    failure: str | None


@dataclass(slots=True)
class Job:
    jid: str
    name: str
    cluster: str
    jar_id: str
    parallelism: int
    submitted: float
    start_delay: float
    restored_from: str | None
    end_at: float | None = None  # when the job is (or will be) terminal
    end_state: str | None = None
    cancel_at: float | None = None  # when a cancel was asked for: CANCELLING until end_at
    failure: str | None = None  # why it FAILED (a restore from a savepoint that does not exist)
    stopping: str | None = None  # the trigger id of a stop/cancel with savepoint under way
    rescale_at: float | None = None  # an in-place rescale restarts the vertices until this moment
    savepoints: list[tuple[str, int, float]] = field(default_factory=list)  # (path, trigger ms, done at)

    def state(self, t: float) -> str:
        if self.end_at is not None and t >= self.end_at:
            return self.end_state or "FINISHED"
        if self.cancel_at is not None:
            return "CANCELLING"
        if t < self.submitted + self.start_delay / 2:
            return "INITIALIZING"
        return "RUNNING"

    def running_at(self) -> float:
        return max(self.submitted + self.start_delay, self.rescale_at or 0.0)

    def vertex_status(self, t: float) -> str:
        state = self.state(t)
        if state == "RUNNING":
            return "RUNNING" if t >= self.running_at() else "DEPLOYING"
        return {
            "INITIALIZING": "CREATED",
            "CANCELLING": "CANCELING",
            "FINISHED": "FINISHED",
            "CANCELED": "CANCELED",
            "FAILED": "FAILED",
        }.get(state, "CREATED")

    def vertex_ids(self) -> tuple[str, str]:
        digest = hashlib.md5(self.jid.encode()).hexdigest()
        return digest, hashlib.md5(digest.encode()).hexdigest()

    def end_ms(self, t: float) -> int:
        return _ms(self.end_at) if self.end_at is not None and t >= self.end_at else -1


@dataclass
class Cluster:
    name: str
    jars: dict[str, Jar] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    triggers: dict[tuple[str, str], Trigger] = field(default_factory=dict)
    savepoints: dict[str, tuple[str, float]] = field(default_factory=dict)  # path -> (job id, done at)
    disposals: dict[str, tuple[float, str | None]] = field(default_factory=dict)  # trigger -> (done at, failure)

    @property
    def savepoint_dir(self) -> str:
        return f"file:/sim/{self.name}/savepoints"


class FlinkSim:
    """The simulated clusters and their counters; `app()` serves them."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.clusters: dict[str, Cluster] = {}
        self.started = time.time()
        self.requests_by_kind: Counter[str] = Counter()
        self.requests_by_cluster: Counter[str] = Counter()
        self.requests_by_job: Counter[str] = Counter()
        self.answers_by_status: Counter[str] = Counter()  # "kind -> status" for answers >= 400
        self.triggers: list[dict[str, Any]] = []  # every stop/savepoint/cancel-with-savepoint accepted
        self.runs: list[dict[str, Any]] = []  # every submission
        self.uploads: Counter[str] = Counter()  # by cluster
        self.cancels: list[dict[str, Any]] = []
        self.deletes: Counter[str] = Counter()  # "ok" | "missing"
        self.in_flight = 0
        self.max_in_flight = 0

    # -- plumbing ------------------------------------------------------------------------------

    def cluster(self, name: str) -> Cluster:
        found = self.clusters.get(name)
        if found is None:
            found = self.clusters[name] = Cluster(name)
        return found

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self._sim_endpoint(request, parts[1:])
        cluster_name = "c0"
        if parts and _CLUSTER.match(parts[0]):
            cluster_name = parts.pop(0)
        if parts[:1] == ["v1"]:
            parts.pop(0)
        cluster = self.cluster(cluster_name)
        kind, job_id = _kind(request.method, parts)
        self.requests_by_kind[kind] += 1
        self.requests_by_cluster[cluster_name] += 1
        if job_id is not None:
            self.requests_by_job[job_id] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._route(request, cluster, kind, parts)
        except _HttpError as exc:
            response = _error(exc.status, exc.message)
        except Exception as exc:  # a bug in the simulator: answered like Flink's own internal errors
            response = _error(500, f"Internal server error: {type(exc).__name__}: {exc}")
        finally:
            self.in_flight -= 1
        if response.status >= 400:
            self.answers_by_status[f"{kind} -> {response.status}"] += 1
        return response

    async def _route(self, request: web.Request, c: Cluster, kind: str, parts: list[str]) -> web.StreamResponse:
        t = time.time()
        m = request.method
        if kind == "GET /config":
            return web.json_response(self._dashboard_config())
        if kind == "GET /overview":
            return web.json_response(self._overview(c, t))
        if kind == "GET /jobmanager/config":
            return web.json_response(self._jobmanager_config(c))
        if kind == "GET /jobs":
            return web.json_response({"jobs": [{"id": j.jid, "status": j.state(t)} for j in c.jobs.values()]})
        if kind == "GET /jobs/overview":
            return web.json_response({"jobs": [self._job_overview(j, t) for j in c.jobs.values()]})
        if kind == "GET /jars":
            return web.json_response(self._jars(c, request))
        if kind == "POST /jars/upload":
            return await self._upload(c, request, t)
        if kind == "DELETE /jars/:jarid":
            return self._delete_jar(c, parts[1])
        if kind == "POST /jars/:jarid/run":
            return await self._run(c, parts[1], request)
        if kind == "POST /savepoint-disposal":
            return await self._dispose(c, request, t)
        if kind == "GET /savepoint-disposal/:triggerid":
            return self._disposal_status(c, parts[1], t)
        if kind.startswith(("GET /jobs/:jobid", "POST /jobs/:jobid", "PATCH /jobs/:jobid", "PUT /jobs/:jobid")):
            job = self._job(c, parts[1])
            if kind == "GET /jobs/:jobid":
                return web.json_response(self._job_details(job, t))
            if kind == "GET /jobs/:jobid/status":
                return web.json_response({"status": job.state(t)})
            if kind == "GET /jobs/:jobid/exceptions":
                return web.json_response(self._exceptions(job, t))
            if kind == "PATCH /jobs/:jobid":
                return self._cancel(job, request, t)
            if kind == "POST /jobs/:jobid/stop":
                body = await _json_body(request)
                return self._trigger(c, job, body, "stop", t)
            if kind == "POST /jobs/:jobid/savepoints":
                body = await _json_body(request)
                return self._trigger(c, job, body, "cancel" if body.get("cancel-job") else "savepoint", t)
            if kind == "GET /jobs/:jobid/savepoints/:triggerid":
                return self._savepoint_status(c, job, parts[3], t)
            if kind == "GET /jobs/:jobid/checkpoints":
                return web.json_response(self._checkpoints(job, t))
            if kind == "GET /jobs/:jobid/resource-requirements":
                return web.json_response(self._requirements(job))
            if kind == "PUT /jobs/:jobid/resource-requirements":
                return await self._set_requirements(job, request, t)
        return _error(404, f"Not found: {m} {request.path}")

    # -- cluster ---------------------------------------------------------------------------------

    def _dashboard_config(self) -> dict[str, Any]:
        return {
            "refresh-interval": 3000,
            "timezone-name": "Coordinated Universal Time",
            "timezone-offset": 0,
            "flink-version": FLINK_VERSION,
            "flink-revision": "flinkop-bench-sim",
            "features": {"web-submit": True, "web-cancel": True, "web-rescale": False, "web-history": False},
        }

    def _jobmanager_config(self, c: Cluster) -> list[dict[str, str]]:
        conf = {
            "execution.checkpointing.savepoint-dir": c.savepoint_dir,
            "execution.checkpointing.dir": f"file:/sim/{c.name}/checkpoints",
            "jobmanager.scheduler": self.config.scheduler,
            "rest.address": "127.0.0.1",
            "web.refresh-interval": "3000",
            "state.backend.type": "hashmap",
        }
        return [{"key": k, "value": v} for k, v in conf.items()]

    def _overview(self, c: Cluster, t: float) -> dict[str, Any]:
        states = Counter(j.state(t) for j in c.jobs.values())
        used = sum(j.parallelism for j in c.jobs.values() if j.state(t) not in TERMINAL)
        return {
            "taskmanagers": 1,
            "slots-total": self.config.slots,
            "slots-available": max(self.config.slots - used, 0),
            "jobs-running": states["RUNNING"] + states["INITIALIZING"] + states["CANCELLING"],
            "jobs-finished": states["FINISHED"],
            "jobs-cancelled": states["CANCELED"],
            "jobs-failed": states["FAILED"],
            "flink-version": FLINK_VERSION,
            "flink-commit": "flinkop-bench-sim",
        }

    # -- jars ------------------------------------------------------------------------------------

    def _jars(self, c: Cluster, request: web.Request) -> dict[str, Any]:
        return {
            "address": f"http://{request.host}",
            "files": [
                {
                    "id": jar.id,
                    "name": jar.name,
                    "uploaded": jar.uploaded_ms,
                    "entry": [{"name": "io.flinkop.bench.SimJob", "description": None}],
                }
                for jar in c.jars.values()
            ],
        }

    async def _upload(self, c: Cluster, request: web.Request, t: float) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Request is not a multipart/form-data request.")
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.filename:
                data = await part.read()
                if not part.filename.endswith(".jar"):
                    return _error(400, "Only Jar files are allowed.")
                jar_id = f"{uuid.uuid4()}_{part.filename}"
                c.jars[jar_id] = Jar(jar_id, part.filename, _ms(t), len(data))
                self.uploads[c.name] += 1
                return web.json_response(
                    {"filename": f"/tmp/flink-web-sim/flink-web-upload/{jar_id}", "status": "success"}
                )
        return _error(400, "Exactly 1 file must be sent, received 0.")

    def _delete_jar(self, c: Cluster, jar_id: str) -> web.Response:
        if c.jars.pop(jar_id, None) is None:
            self.deletes["missing"] += 1
            return _error(400, f"File {jar_id} does not exist in /tmp/flink-web-sim/flink-web-upload.")
        self.deletes["ok"] += 1
        return web.json_response({})

    async def _run(self, c: Cluster, jar_id: str, request: web.Request) -> web.Response:
        body = await _json_body(request)
        await asyncio.sleep(self.config.run_latency)
        t = time.time()
        if jar_id not in c.jars:  # looked up after the program ran: a delete meanwhile is seen
            return _error(400, f"Jar file /tmp/flink-web-sim/flink-web-upload/{jar_id} does not exist")
        jid = str(body.get("jobId") or uuid.uuid4().hex)
        if not _JOB_ID.match(jid):
            return _error(400, f"Invalid JobID string '{jid}'")
        if jid in c.jobs:
            return _error(
                409,
                f"org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job {jid} "
                "has already been submitted.",
            )
        savepoint = body.get("savepointPath") or None
        parallelism = int(body.get("parallelism") or 1)
        if parallelism < 1:
            return _error(400, "Parallelism must be a positive number.")
        job = Job(
            jid=jid,
            name=f"sim-job {' '.join(str(a) for a in body.get('programArgsList') or [])}".strip(),
            cluster=c.name,
            jar_id=jar_id,
            parallelism=parallelism,
            submitted=t,
            start_delay=self.config.start_delay,
            restored_from=savepoint,
        )
        source_job = None
        if savepoint is not None:
            known = c.savepoints.get(savepoint)
            if known is None or known[1] > t:
                job.failure = (
                    "org.apache.flink.runtime.client.JobInitializationException: Could not start the JobMaster.\n"
                    f"Caused by: java.io.FileNotFoundException: Cannot find checkpoint or savepoint "
                    f"file/directory '{savepoint}' on file system 'file'."
                )
                job.end_at, job.end_state = t + self.config.start_delay / 2, "FAILED"
            else:
                source_job = known[0]
        c.jobs[jid] = job
        self.runs.append(
            {
                "cluster": c.name,
                "job": jid,
                "t": t,
                "jar": jar_id,
                "savepoint": savepoint,
                "from_job": source_job,
                "running_at": None if job.failure else job.running_at(),
                "failed": job.failure is not None,
            }
        )
        return web.json_response({"jobid": jid})

    # -- jobs ------------------------------------------------------------------------------------

    def _job(self, c: Cluster, jid: str) -> Job:
        job = c.jobs.get(jid)
        if job is None:
            if not _JOB_ID.match(jid):
                raise _HttpError(400, f"Invalid JobID string '{jid}'")
            raise _HttpError(404, f"org.apache.flink.runtime.rest.NotFoundException: Job {jid} not found")
        return job

    def _tasks(self, job: Job, t: float) -> dict[str, int]:
        total = 2 * job.parallelism
        counts = dict.fromkeys(
            (
                "running",
                "canceling",
                "canceled",
                "total",
                "created",
                "scheduled",
                "deploying",
                "reconciling",
                "finished",
                "initializing",
                "failed",
                "pending",
            ),
            0,
        )
        counts["total"] = total
        status = job.vertex_status(t)
        key = {"CANCELING": "canceling"}.get(status, status.lower())
        counts[key if key in counts else "created"] += total
        return counts

    def _job_overview(self, job: Job, t: float) -> dict[str, Any]:
        end = job.end_ms(t)
        start = _ms(job.submitted)
        return {
            "jid": job.jid,
            "name": job.name,
            "start-time": start,
            "end-time": end,
            "duration": (end if end > 0 else _ms(t)) - start,
            "state": job.state(t),
            "last-modification": _ms(t),
            "tasks": self._tasks(job, t),
            "pending-operators": 0,
        }

    def _job_details(self, job: Job, t: float) -> dict[str, Any]:
        end = job.end_ms(t)
        start = _ms(job.submitted)
        state = job.state(t)
        vertices = []
        if state != "INITIALIZING":
            status = job.vertex_status(t)
            for vid, name in zip(job.vertex_ids(), ("Source: sim", "Sink: sim"), strict=True):
                tasks = dict.fromkeys(
                    (
                        "CREATED",
                        "SCHEDULED",
                        "DEPLOYING",
                        "RUNNING",
                        "FINISHED",
                        "CANCELING",
                        "CANCELED",
                        "FAILED",
                        "RECONCILING",
                        "INITIALIZING",
                    ),
                    0,
                )
                tasks[status] = job.parallelism
                vertices.append(
                    {
                        "id": vid,
                        "slotSharingGroupId": "ca8ea0f3bfd2a9d4a8a5c4f8b1d4b2e1",
                        "name": name,
                        "maxParallelism": 128,
                        "parallelism": job.parallelism,
                        "status": status,
                        "start-time": start,
                        "end-time": end,
                        "duration": (end if end > 0 else _ms(t)) - start,
                        "tasks": tasks,
                        "metrics": {"read-bytes": 0, "write-bytes": 0, "read-records": 0, "write-records": 0},
                    }
                )
        return {
            "jid": job.jid,
            "name": job.name,
            "isStoppable": False,
            "state": state,
            "job-type": "STREAMING",
            "start-time": start,
            "end-time": end,
            "duration": (end if end > 0 else _ms(t)) - start,
            "maxParallelism": -1,
            "now": _ms(t),
            "timestamps": {state: _ms(t), "INITIALIZING": start, "CREATED": start},
            "vertices": vertices,
            "status-counts": Counter(v["status"] for v in vertices),
            "plan": {"jid": job.jid, "name": job.name, "type": "STREAMING", "nodes": []},
        }

    def _exceptions(self, job: Job, t: float) -> dict[str, Any]:
        entries = []
        if job.failure is not None and job.state(t) == "FAILED":
            entries.append(
                {
                    "exceptionName": "org.apache.flink.runtime.client.JobInitializationException",
                    "stacktrace": job.failure,
                    "timestamp": job.end_ms(t),
                    "taskName": None,
                    "endpoint": None,
                    "taskManagerId": None,
                    "failureLabels": {},
                    "concurrentExceptions": [],
                }
            )
        return {"exceptionHistory": {"entries": entries, "truncated": False}}

    def _cancel(self, job: Job, request: web.Request, t: float) -> web.Response:
        mode = request.query.get("mode", "cancel")
        if mode != "cancel":
            return _error(400, f"Unsupported termination mode {mode}.")
        state = job.state(t)
        if state in TERMINAL:
            return _error(409, f"Job cancellation failed: Cancellation is not possible while the job is in {state}.")
        if job.cancel_at is None:
            job.cancel_at = t
            job.end_at, job.end_state = t + self.config.cancel_delay, "CANCELED"
            self.cancels.append({"cluster": job.cluster, "job": job.jid, "t": t})
        return web.json_response({}, status=202)

    def _trigger(self, c: Cluster, job: Job, body: dict[str, Any], kind: str, t: float) -> web.Response:
        trigger_id = str(body.get("triggerId") or uuid.uuid4().hex)
        key = (job.jid, trigger_id)
        if key in c.triggers:  # the same operation again: Flink dedups by trigger id
            return web.json_response({"request-id": trigger_id}, status=202)
        state = job.state(t)
        if state in TERMINAL:
            return _error(
                404,
                f"org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job ({job.jid})",
            )
        directory = body.get("targetDirectory") or body.get("target-directory") or c.savepoint_dir
        failure = None
        done_at = t + self.config.savepoint_delay
        if job.stopping is not None or job.cancel_at is not None:
            failure = "org.apache.flink.runtime.checkpoint.CheckpointException: the job is already being stopped."
        elif state != "RUNNING" or t < job.running_at():
            failure = (
                "org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint triggering task "
                "Source: sim (1/1) of job is not being executed at the moment. Aborting checkpoint. "
                "Failure reason: Not all required tasks are currently running."
            )
            done_at = t + 0.01
        location = None
        if failure is None:
            location = f"{directory.rstrip('/')}/savepoint-{job.jid[:6]}-{uuid.uuid4().hex[:12]}"
            c.savepoints[location] = (job.jid, done_at)
            job.savepoints.append((location, _ms(t), done_at))
            if kind in ("stop", "cancel"):
                job.stopping = trigger_id
                job.end_at = done_at
                job.end_state = "FINISHED" if kind == "stop" else "CANCELED"
        c.triggers[key] = Trigger(job.jid, trigger_id, kind, done_at, location, failure)
        self.triggers.append(
            {"cluster": c.name, "job": job.jid, "t": t, "trigger": trigger_id, "kind": kind, "failed": bool(failure)}
        )
        return web.json_response({"request-id": trigger_id}, status=202)

    def _savepoint_status(self, c: Cluster, job: Job, trigger_id: str, t: float) -> web.Response:
        trigger = c.triggers.get((job.jid, trigger_id))
        if trigger is None:
            return _error(
                404,
                "org.apache.flink.runtime.rest.NotFoundException: Operation not found under key: "
                f"org.apache.flink.runtime.rest.handler.job.AsynchronousJobOperationKey@{trigger_id[:8]}",
            )
        if t < trigger.done_at:
            return web.json_response({"status": {"id": "IN_PROGRESS"}, "operation": None})
        if trigger.failure is not None:
            operation: dict[str, Any] = {
                "failure-cause": {
                    "class": "org.apache.flink.runtime.checkpoint.CheckpointException",
                    "stack-trace": trigger.failure,
                    "serialized-throwable": "",
                }
            }
        else:
            operation = {"location": trigger.location}
        return web.json_response({"status": {"id": "COMPLETED"}, "operation": operation})

    def _checkpoints(self, job: Job, t: float) -> dict[str, Any]:
        done = [(p, ms, d) for p, ms, d in job.savepoints if d <= t]
        latest = None
        if done:
            path, trigger_ms, done_at = done[-1]
            latest = {
                "className": "completed",
                "id": len(done),
                "status": "COMPLETED",
                "is_savepoint": True,
                "savepointFormat": "CANONICAL",
                "trigger_timestamp": trigger_ms,
                "latest_ack_timestamp": _ms(done_at),
                "checkpointed_size": 1024,
                "state_size": 1024,
                "end_to_end_duration": _ms(done_at) - trigger_ms,
                "num_subtasks": 2 * job.parallelism,
                "num_acknowledged_subtasks": 2 * job.parallelism,
                "checkpoint_type": "SAVEPOINT",
                "external_path": path,
                "discarded": False,
            }
        return {
            "counts": {
                "restored": 1 if job.restored_from else 0,
                "total": len(done),
                "in_progress": 0,
                "completed": len(done),
                "failed": 0,
            },
            "summary": {},
            "latest": {
                "completed": latest,
                "savepoint": latest,
                "failed": None,
                "restored": {
                    "id": 0,
                    "restore_timestamp": _ms(job.submitted),
                    "is_savepoint": True,
                    "external_path": job.restored_from,
                }
                if job.restored_from
                else None,
            },
            "history": [latest] if latest else [],
        }

    def _requirements(self, job: Job) -> dict[str, Any]:
        return {vid: {"parallelism": {"lowerBound": 1, "upperBound": job.parallelism}} for vid in job.vertex_ids()}

    async def _set_requirements(self, job: Job, request: web.Request, t: float) -> web.Response:
        if self.config.scheduler != "adaptive":
            return _error(
                500,
                "org.apache.flink.util.FlinkRuntimeException: The job's scheduler does not support "
                "changing the resource requirements.",
            )
        body = await _json_body(request)
        bounds = [int(r["parallelism"]["upperBound"]) for r in body.values()]
        if bounds and max(bounds) != job.parallelism:
            job.parallelism = max(bounds)
            job.rescale_at = t + self.config.start_delay
        return web.json_response({})

    # -- savepoint disposal ----------------------------------------------------------------------

    async def _dispose(self, c: Cluster, request: web.Request, t: float) -> web.Response:
        body = await _json_body(request)
        path = str(body.get("savepoint-path") or "")
        trigger_id = uuid.uuid4().hex
        failure = None
        if c.savepoints.pop(path, None) is None:
            failure = f"java.io.FileNotFoundException: Cannot find checkpoint or savepoint file/directory '{path}'."
        c.disposals[trigger_id] = (t + self.config.dispose_delay, failure)
        return web.json_response({"request-id": trigger_id}, status=202)

    def _disposal_status(self, c: Cluster, trigger_id: str, t: float) -> web.Response:
        found = c.disposals.get(trigger_id)
        if found is None:
            return _error(
                404, f"org.apache.flink.runtime.rest.NotFoundException: Operation not found under key: {trigger_id}"
            )
        done_at, failure = found
        if t < done_at:
            return web.json_response({"status": {"id": "IN_PROGRESS"}, "operation": None})
        operation = (
            {}
            if failure is None
            else {"failure-cause": {"class": "java.io.FileNotFoundException", "stack-trace": failure}}
        )
        return web.json_response({"status": {"id": "COMPLETED"}, "operation": operation})

    # -- the simulator's own endpoints ------------------------------------------------------------

    def _sim_endpoint(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts == ["health"]:
            return web.json_response({"ok": True, "clusters": len(self.clusters)})
        if parts == ["stats"]:
            return web.json_response(self.stats(per_job=request.query.get("jobs") == "1"))
        if parts == ["seed"] and request.method == "POST":
            return web.json_response(self.seed(request.query.get("cluster", "c0"), int(request.query.get("count", 1))))
        return _error(404, f"Not found: {request.path}")

    def seed(self, cluster_name: str, count: int) -> dict[str, Any]:
        """Jobs already RUNNING on `cluster_name` (for tests that do not deploy through the operator)."""
        c = self.cluster(cluster_name)
        jar_id = f"{uuid.uuid4()}_seeded.jar"
        t = time.time()
        c.jars[jar_id] = Jar(jar_id, "seeded.jar", _ms(t), 0)
        ids = []
        for _ in range(count):
            jid = uuid.uuid4().hex
            c.jobs[jid] = Job(jid, "seeded", c.name, jar_id, 1, t - 60, 0.0, None)
            ids.append(jid)
        return {"jar": jar_id, "jobs": ids}

    def stats(self, per_job: bool = False) -> dict[str, Any]:
        t = time.time()
        states: Counter[str] = Counter()
        for c in self.clusters.values():
            for j in c.jobs.values():
                states[j.state(t)] += 1
        out: dict[str, Any] = {
            "now": t,
            "started": self.started,
            "config": self.config.__dict__,
            "clusters": len(self.clusters),
            "jobs_by_state": dict(states),
            "requests_total": sum(self.requests_by_kind.values()),
            "requests_by_kind": dict(self.requests_by_kind),
            "requests_by_cluster": dict(self.requests_by_cluster),
            "error_answers": dict(self.answers_by_status),
            "uploads_by_cluster": dict(self.uploads),
            "jars_by_cluster": {name: len(c.jars) for name, c in self.clusters.items()},
            "deletes": dict(self.deletes),
            "max_requests_in_flight": self.max_in_flight,
            "triggers": self.triggers,
            "runs": self.runs,
            "cancels": self.cancels,
        }
        if per_job:
            out["requests_by_job"] = dict(self.requests_by_job)
        return out


def _kind(method: str, parts: list[str]) -> tuple[str, str | None]:
    """The endpoint as Flink's REST docs name it (`GET /jobs/:jobid`), and the job id in the path."""
    if len(parts) >= 2 and parts[0] == "jobs" and parts[1] != "overview":
        rest = ["savepoints", ":triggerid"] if parts[2:3] == ["savepoints"] and len(parts) > 3 else parts[2:]
        return " ".join((method, "/".join(["", "jobs", ":jobid", *rest]))), parts[1]
    if len(parts) >= 2 and parts[0] == "jars" and parts[1] != "upload":
        return " ".join((method, "/".join(["", "jars", ":jarid", *parts[2:]]))), None
    if len(parts) == 2 and parts[0] == "savepoint-disposal":
        return f"{method} /savepoint-disposal/:triggerid", None
    return f"{method} /{'/'.join(parts)}", None


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except ValueError as exc:
        raise _HttpError(400, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _HttpError(400, "Request body is not a JSON object.")
    return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--savepoint-delay", type=float, default=SimConfig.savepoint_delay)
    parser.add_argument("--start-delay", type=float, default=SimConfig.start_delay)
    parser.add_argument("--cancel-delay", type=float, default=SimConfig.cancel_delay)
    parser.add_argument("--run-latency", type=float, default=SimConfig.run_latency)
    parser.add_argument("--scheduler", default=SimConfig.scheduler, choices=("default", "adaptive"))
    args = parser.parse_args(argv)
    sim = FlinkSim(
        SimConfig(
            savepoint_delay=args.savepoint_delay,
            start_delay=args.start_delay,
            cancel_delay=args.cancel_delay,
            run_latency=args.run_latency,
            scheduler=args.scheduler,
        )
    )
    print(f"flink-sim serving on http://{args.host}:{args.port} (clusters: /cN prefixes)", flush=True)
    web.run_app(sim.app(), host=args.host, port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
