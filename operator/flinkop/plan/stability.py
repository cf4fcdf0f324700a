"""The stability gate: when a job that was just started counts as started.

Every vertex running is not enough: a new version that cannot read its restored state, or that
fails on its first records, goes RUNNING -> RESTARTING -> RUNNING under Flink's restart strategy and
is seen running now and then. A start passes the gate once every vertex runs and a checkpoint
completed after the job started and after its last restart; a job that does not checkpoint must
instead have run STABLE_WITHOUT_CHECKPOINTS seconds since then. More than MAX_START_FAILURES
failures, or no pass within spec.stabilityTimeoutSeconds, is a failed start.
"""

from __future__ import annotations

from dataclasses import dataclass

from flinkop.flink_client import JobInfo, StartProgress

MAX_START_FAILURES = 3
STABLE_WITHOUT_CHECKPOINTS = 10.0  # seconds


@dataclass(frozen=True)
class Verdict:
    passed: bool = False
    failed: str | None = None  # why the start failed (the gate will not pass)
    awaiting: str = ""  # what the gate waits for


def judge(
    info: JobInfo, progress: StartProgress | None, now_ms: float, deadline_ms: float, timeout_seconds: int
) -> Verdict:
    failures = progress.failures if progress is not None else ()
    last_cause = failures[-1][1] if failures else None
    if len(failures) > MAX_START_FAILURES:
        return Verdict(
            failed=f"it failed {len(failures)} times since it started (more than {MAX_START_FAILURES}); "
            f"the last cause: {last_cause}"
        )
    since = max([info.start_time_ms, *(at for at, _ in failures)])
    restarts = f" ({len(failures)} restart{'s' if len(failures) != 1 else ''} so far)" if failures else ""
    if progress is not None and info.all_vertices_running:
        if (
            progress.checkpointing
            and progress.latest_checkpoint_ms is not None
            and progress.latest_checkpoint_ms > since
        ):
            return Verdict(passed=True)
        if not progress.checkpointing and now_ms - since >= STABLE_WITHOUT_CHECKPOINTS * 1000:
            return Verdict(passed=True)
    if now_ms >= deadline_ms:
        cause = f"; the last failure: {last_cause}" if last_cause else ""
        return Verdict(failed=f"it did not become stable within stabilityTimeoutSeconds ({timeout_seconds} s){cause}")
    if not info.all_vertices_running:
        return Verdict(awaiting=f"every vertex to run{restarts}")
    if progress is None or progress.checkpointing:
        return Verdict(awaiting=f"a checkpoint completed after its start{restarts}")
    return Verdict(awaiting=f"{STABLE_WITHOUT_CHECKPOINTS:.0f} s running without a restart{restarts}")
