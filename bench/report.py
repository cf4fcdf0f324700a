"""Rewrites bench/RESULTS.md from the raw results in bench/results/ (the last step of `make bench`).

The method text is fixed here; every figure comes from the JSON files the benchmarks wrote, so the
document always shows the latest run. A benchmark whose results file is missing is said to be so.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def when(name: str) -> str:
    path = RESULTS / name
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")


def f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def machine() -> str:
    cpus = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")])
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gib = int(mem.split()[1]) / 1024 / 1024
    return f"{cpus} cores, {gib:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def b1() -> list[str]:
    out = ["## B1: upgrade overhead against the hand-run REST sequence", ""]
    out += [
        "Method (`bench/b1_upgrade_overhead.py`): one FlinkJob managed by the operator (A) and one job driven",
        "by a minimal script (B) run side by side on the same cluster, both the test job at parallelism 2",
        "(200 records/s, checkpoints every second). Each pair changes A's jar (two jars with the same",
        "program, alternating) with a spec patch, then makes B's upgrade by hand with the operator's calls",
        "in the operator's order, as fast as a script can: `POST /jars/upload` of the new jar, `POST",
        "/jobs/<id>/stop`, poll the savepoint every 100 ms (the operator's pace in a stop's first 2 s),",
        "`POST /jars/<new>/run` with `savepointPath`. (`flink run -s <savepoint> new.jar` ships the jar",
        "too; uploading it before the stop keeps it out of the downtime, for both.) For both, the end is",
        "the moment this script, polling Flink's live `/jobs/overview` every 10 ms, first sees the new job",
        "with every task RUNNING. Total = end minus the patch (A) or B's upload call; downtime = end minus",
        "the old job's `end-time` as Flink records it. B's upload time is in the raw figures (`upload`).",
        "",
    ]
    data = load("b1.json")
    if data is None:
        return [*out, "No results: run `make bench`.", ""]
    out += [f"Run of {when('b1.json')} (raw figures in `bench/results/b1.json`):", ""]
    out += [
        "| pair | A total (s) | B total (s) | A downtime (s) | B downtime (s) | B's upload (s) |",
        "|---|---|---|---|---|---|",
    ]
    runs = data["runs"]
    for pair in sorted({r["pair"] for r in runs}):
        a = next(r for r in runs if r["pair"] == pair and r["kind"] == "A")
        b = next(r for r in runs if r["pair"] == pair and r["kind"] == "B")
        out.append(
            f"| {pair} | {f(a['total'])} | {f(b['total'])} | {f(a['downtime'])} | {f(b['downtime'])} "
            f"| {f(b.get('upload'), 3)} |"
        )
    s = data["summary"]
    out.append(
        f"| **median** | **{f(s['total']['A_median'])}** | **{f(s['total']['B_median'])}** | "
        f"**{f(s['downtime']['A_median'])}** | **{f(s['downtime']['B_median'])}** | |"
    )
    out += [
        "",
        f"**A/B: {f(s['total']['A_over_B'])} on total time, {f(s['downtime']['A_over_B'])} on downtime** "
        "(target: at most 1.10 on both).",
        "",
    ]
    return out + B1_NOTES


B1_NOTES = [
    "Where the time went, and what was changed (each step measured with this benchmark):",
    "",
    "1. First run: A/B 1.88 total, 1.71 downtime (medians 6.34 s against 3.38 s). The operator waited",
    "   about 2.2 s for the stopped job to reach FINISHED: `GET /jobs/<id>` is served from Flink's",
    "   execution-graph cache (`web.refresh-interval`, 3 s), while `GET /jobs/<id>/status` said FINISHED",
    "   0.3 s after the trigger. The stopping job's state is now read from `/jobs/<id>/status`, the",
    "   trigger is read before the job, and the pass that records a completed savepoint also submits.",
    "   Second run: 1.41 and 1.23.",
    "2. That cache also quantised this benchmark's own end measurement (it read `/jobs/<id>` too, so",
    "   both A and B looked 3 s slower than they were). The end is now read from `/jobs/overview`,",
    "   which Flink answers live: B's upgrade takes about 0.45 s, not 3.4 s, and the operator's",
    "   overhead showed at its true size: A/B 2.6 total, 2.1 downtime (3 pairs; the others 5).",
    "3. The operator's debug log showed the first look after the stop trigger came 1 s later (the",
    "   planner's general poll), not at the savepoint pace. A stopping job's savepoint is now polled",
    "   every 0.25 s from the trigger on (B polls every 0.25 s too): 1.34 and 1.11.",
    "4. After the new jar's upload the operator waited for a kopf retry cycle before triggering the",
    "   savepoint. The pass after an upload now runs at once in the same handler call, on the status",
    "   the upload pass wrote and on the observation the upload's answer completes (no new reads):",
    "   1.17 and 1.06.",
    "5. Re-run at the start of the next session, same code and method: 1.42 and 1.24 (A 0.66 / 0.54 s,",
    "   B 0.46 / 0.43 s): on this shared 2-core machine a 5-pair median moves by about 0.2 between runs.",
    "6. B was made the true floor of the operator's calls: it uploads its new jar within its time, as",
    "   `flink run -s ... new.jar` does (before the stop, as the operator does), and polls the savepoint",
    "   at the operator's pace, every 0.1 s. The operator's own changes, read off its debug log:",
    "   a stop's savepoint is polled every 0.1 s for its first 2 s (then 0.25 s); after reading the",
    "   savepoint trigger, a pass makes its other reads at once, not one after another; an upload chained",
    "   to the next pass no longer writes a status of its own (the stop's write-ahead record carries it);",
    "   and the new jar's",
    "   cluster id is recorded with the trigger, so neither the polls nor the submit list the cluster's",
    "   jars again (`GET /jars` took up to 88 ms right after a stop, while the JobManager finishes it).",
    "   Two `make bench` runs of 2026-12-03: A 0.42 / 0.33 s against B 0.32 / 0.27 s (1.31 and 1.24),",
    "   then A 0.41 / 0.33 s against B 0.32 / 0.28 s (1.27 and 1.16).",
    "   Against step 5 the operator is about a third faster in both total and downtime; the ratio grew",
    "   because B got faster still.",
    "",
    "7. Event-driven passes (issue 15): no kopf retry cycle between two polls any more (a pass is",
    "   woken in-process at the planner's time). Two runs of 7 pairs, 2026-12-03: A 0.44 / 0.34 s",
    "   against B 0.34 / 0.29 s (1.30 and 1.14; `bench/results/b1-first.json`), then A 0.39 / 0.32 s",
    "   against B 0.33 / 0.28 s (1.19 and 1.12). Target 1.10 still not met.",
    "8. Where step 7's runs spread: this script read the end every 50 ms, and that lag alone (0 to 50 ms,",
    "   read off Flink's own log against each run's recorded times) moved a pair's ratio by up to 0.15;",
    "   it reads every 10 ms now. And a spec change's first pass made its three reads (the job, its live",
    "   state, the jar list) one after another (they ran at once only once an upgrade had begun); they",
    "   run at once now. Two runs of 7 pairs, 2026-12-03 (`b1-first.json`, then the table above):",
    "   **downtime 1.04 and 1.09: met; total 1.22 and 1.38: not met.**",
    "   Flink's log against the runs' recorded times (medians): from the stop trigger to the new job's",
    "   submission A 0.16 s, B 0.13 s (the write-ahead status patch and the job's state read before the",
    "   run); from the patch (A) or the upload (B) to the stop trigger A 0.09 s, B 0.01 s. That 0.08 s is",
    "   what the operator does before it may stop a job: the apiserver takes the patch and delivers its",
    "   watch event (12-19 ms), the pass reads the job and the jar list (about 15 ms), uploads the jar",
    "   (12 ms, as B), writes the trigger id first (8-15 ms) and stops (6 ms); on this loaded 2-core",
    "   machine each step takes up to twice that. B reads nothing and writes nothing.",
    "9. The floor, from a traced run (2026-12-03 20:04 UTC, `b1-traced.json`: 5 pairs with `--operator-verbose`, whose",
    "   debug log slows A: A/B 1.32 total, 1.14 downtime). Pair 2, from the operator's log: the patch at",
    "   0 ms, its watch event at 15, the job and its live state read at 26-27, the jar list at 45 (`GET",
    "   /jars`: Flink opens every uploaded jar to list it), the upload done at 76, the trigger id written",
    "   at 94, the stop at 103; B's upload took 8 ms, then it stopped. After the savepoint: A's first",
    "   poll 108 ms after the stop (B's at 100), the job read 8 ms, the write-ahead record of the new job",
    "   15 ms, then the run. Three of these steps no change can remove: the watch event and the two",
    "   write-ahead records (the trigger id before the stop, the savepoint and the new job id before the",
    "   run): 12-19 ms and twice 8-18 ms, 28-55 ms on this machine. At 1.10, B's 0.32-0.35 s leaves",
    "   32-35 ms for every difference. Overlapping the rest (the upload with the reads, no job read after",
    "   a completed stop) would leave, by this estimate (not measured), about 1.15 on total; downtime,",
    "   which excludes the steps before the stop, already meets 1.10.",
    "",
    "Before step 7, what was left per upgrade (about 0.1 s of total, 0.06 s of downtime; debug log): kopf's retry",
    "cycle, by which the operator waits without sleeping (a progress-annotation patch, the sleep, a",
    "touch patch, the watch event: a 0.1 s poll takes 0.12-0.14 s); the write-ahead status patch before",
    "the run (10-30 ms); before the stop, the watch delivering the patch, two reads and a status patch",
    "(25-70 ms). At 1.10 on an upgrade of 0.3 s the operator could spend 30 ms: that needs polling",
    "inside one handler call (a sleep) or no write-ahead record, both ruled out by design. With state",
    "whose savepoint takes seconds, this fixed cost weighs less and the ratio falls towards 1.",
    "",
]


def b2() -> list[str]:
    out = ["## B2: in-place against savepoint rescale", ""]
    out += [
        "Method (`bench/b2_rescale_downtime.py`): one FlinkJob (the test job, 200 records/s, 4 keys,",
        "checkpoints every second) on a Flink 2.3 session cluster with `jobmanager.scheduler: adaptive`.",
        "The operator makes every rescale from one spec patch; only `rescaleMode` picks the method: A is",
        "`InPlace` (`PUT /jobs/<id>/resource-requirements`, same job), B is `Savepoint` (stop with a",
        "savepoint, new job at the new parallelism). `minRescaleIntervalSeconds: 0`. Pairs alternate 2 -> 3",
        "and 3 -> 2; within a pair A and B make the same change, with an unmeasured in-place rescale",
        "between them to bring the job back. A thread reads the live `/jobs/overview` every 100 ms, takes the",
        "newest job that has not ended (following B's new job id), and reads its `counter.maxCount` gauge",
        "(`metrics.fetcher.update-interval: 50`).",
        "",
        "- **downtime**: the gap between successive reads at which the counter rose, the one overlapping the",
        "  time Flink ran no task of the job (the primary figure; it cannot go much below 0.1-0.2 s, the read grid);",
        "- **from counts**: how far the counter's least-squares line after the gap runs behind its line before",
        "  it (time lost, independent of the read grid; replayed records count as lost);",
        "- **Flink gap**: Flink's own timestamps: in place, the adaptive scheduler's `Restarting` entry (its",
        "  rescale history) to the last subtask's RUNNING time; by savepoint, the old job's end-time to that;",
        "- **wall**: the patch until every task runs at the new parallelism; **Ready**: until the FlinkJob",
        "  is Ready at its new generation.",
        "",
    ]
    data = load("b2.json")
    if data is None:
        return [*out, "No results: run `make bench`.", ""]
    out += ["Adaptive scheduler settings used (as `/jobs/<id>/rescales/config` reports them where it does):", ""]
    out += ["| setting | value |", "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in data.get("flink_extra_config", {}).items()]
    cfg = data.get("flink_rescale_config") or {}
    if "maximumDelayForTriggeringRescaleInMillis" in cfg:
        out.append(
            "| `jobmanager.adaptive-scheduler.rescale-trigger.max-delay` | "
            f"{cfg['maximumDelayForTriggeringRescaleInMillis']} ms (default: 3 checkpoint intervals) |"
        )
    out += ["", f"Run of {when('b2.json')} (raw figures in `bench/results/b2.json`):", ""]
    out += [
        "| pair | change | method | downtime (s) | from counts (s) | Flink gap (s) | wall (s) | Ready (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        method = "in place" if r["kind"] == "A" else "savepoint"
        out.append(
            f"| {r['pair']} | {r['from']} -> {r['to']} | {method} | {f(r['downtime'])} | "
            f"{f(r.get('downtime_from_counts'))} | {f(r.get('flink_gap'))} | {f(r['wall'])} | {f(r.get('ready'))} |"
        )
    s = data["summary"]

    def med(key: str, which: str) -> str:
        return f(s.get(key, {}).get(f"{which}_median"))

    for which, label in (("in_place", "in place"), ("savepoint", "savepoint")):
        out.append(
            f"| **median** | | {label} | **{med('downtime', which)}** | **{med('downtime_from_counts', which)}** | "
            f"**{med('flink_gap', which)}** | **{med('wall', which)}** | **{med('ready', which)}** |"
        )

    def ratio(key: str) -> str:
        return f(s.get(key, {}).get("in_place_over_savepoint"))

    out += [
        "",
        f"**In place / savepoint: {ratio('downtime')} on downtime** ({ratio('downtime_from_counts')} from counts, "
        f"{ratio('flink_gap')} by Flink's timestamps; target: at most 0.5); wall time to the new parallelism "
        f"{ratio('wall')}.",
        "",
        "Notes: the adaptive scheduler restarts only after the next completed checkpoint (FLIP-461,",
        "`rescale-trigger.max-delay`), so in place the gap starts about 0.65 s after the patch while the job",
        "keeps processing, and the new parallelism is reached later than by savepoint; setting that delay",
        "to 0 made it restore an older checkpoint and replay, losing more time than the savepoint rescale.",
        "The state here is a few KB, so the savepoint rescale is cheap; with large state its gap grows.",
        "",
    ]
    return out


def b3_table(data: dict[str, Any]) -> list[str]:
    st = data.get("settings", {})
    idle = data.get("idle", {})
    reaction = data.get("reaction", {})
    burst = data.get("burst", {})
    deploy = data.get("deploy", {})
    targets = data.get("targets", {})
    lat = reaction.get("latency_s", {})

    def met(key: str) -> str:
        t = targets.get(key)
        if not isinstance(t, dict):
            return ""
        return ("met" if t.get("met") else "**not met**") + (f" (limit {t['limit']})" if "limit" in t else "")

    rows = [
        ("FlinkJobs / simulated clusters", f"{st.get('jobs')} / {st.get('clusters')}", ""),
        ("deploy: create all, until all Ready", f"{f(deploy.get('seconds_to_all_ready'), 1)} s", ""),
        ("peak RSS of the operator", f"{f(data.get('operator_peak_rss_mb'), 1)} MB", met("rss_mb")),
        (
            "operator RSS at rest per FlinkJob, above an operator with none "
            f"({f((data.get('operator_baseline_memory_mb') or {}).get('rss'), 1)} MB)",
            f"{f(idle.get('operator_kb_per_flinkjob'), 1)} KB",
            "",
        ),
        ("idle CPU of the operator (share of one core)", f(idle.get("operator_cpu_share"), 3), met("idle_cpu_share")),
        ("idle requests to Flink", f"{f(idle.get('flink_requests_per_second'))}/s", ""),
        (
            "idle Flink polls per job per 5 s",
            f(idle.get("flink_polls_per_job_per_5s"), 4),
            met("idle_flink_polls_per_job_per_5s"),
        ),
        ("idle requests to the apiserver", f"{f((idle.get('apiserver') or {}).get('per_second'))}/s", ""),
        (
            "reaction, spec change to stop call: p50 / p99 / max (stops seen / changes)",
            f"{f(lat.get('p50'), 3)} / {f(lat.get('p99'), 3)} / {f(lat.get('max'), 3)} s "
            f"({reaction.get('stops_seen')} / {reaction.get('changes')})",
            met("reaction_p99_s"),
        ),
        (
            f"{burst.get('upgrades', '?')} simultaneous upgrades, first patch to last Ready (Ready at the end)",
            f"{f(burst.get('seconds_first_patch_to_last_ready'), 1)} s ({burst.get('ready')})",
            "",
        ),
        (
            "upgrades in flight at once, as Flink saw them (setting)",
            f"{burst.get('max_concurrent_upgrades_seen_at_flink')} ({burst.get('max_concurrent_upgrades_setting')})",
            met("upgrades_bounded_by_setting"),
        ),
        ("errors", json.dumps((data.get("errors") or {}).get("warning_events_by_reason") or {}), met("no_error")),
    ]
    out = ["| what | figure | target |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    first = data.get("first_break")
    out += ["", f"First limit reached: {first['what']}: {first['detail']}." if first else "No limit was reached.", ""]
    breaks = data.get("breaks") or []
    if len(breaks) > 1:
        out += ["Every limit reached and phase left unfinished, in the order they happened:", ""]
        out += [f"- {b['phase']}: {b['what']}: {b['detail']}" for b in breaks]
        out.append("")
    return out


def b3() -> list[str]:
    out = ["## B3: one operator, many FlinkJobs", ""]
    out += [
        "Method (`bench/b3_scale.py`): the real kube-apiserver and etcd of the test bed and one operator process",
        "(`python -m flinkop`, default settings: look at a job at rest every 15 s, overviews shared for 5 s,",
        "at most 10 upgrades at once); Flink is simulated by `bench/flink_sim.py` (one process, a path prefix",
        "per session cluster, the REST shapes of Flink 2.3, savepoints complete after 0.3 s, jobs run 0.5 s",
        "after submission), the one place a simulation is right. Phases: create N FlinkJobs and wait until all",
        "are Ready; settle, then 60 s at rest (operator CPU from `/proc/<pid>/stat`, peak RSS from `VmHWM`,",
        "requests to Flink from the simulator's counters, to the apiserver from its `apiserver_request_total`);",
        "100 spec changes 0.6 s apart (latency from the patch's answer to the stop call at the simulator); 100",
        "FlinkJobs given a new jar at once (time to all Ready, upgrades in flight as Flink saw them).",
        "",
    ]
    for name, title in (("b3.json", "1,000 FlinkJobs"), ("b3-10k.json", "10,000 FlinkJobs over 100 clusters")):
        data = load(name)
        if data is None:
            out += [f"{title}: no results in `bench/results/{name}`.", ""]
            continue
        out += [f"### {title}", "", f"Run of {when(name)} (raw figures in `bench/results/{name}`):", ""]
        out += b3_table(data)
        out += B3_10K_NOTES if name == "b3-10k.json" else B3_1K_NOTES
    return out


B3_1K_NOTES = [
    "Operator with event-driven passes (issue 15): no kopf timer nor change handler per FlinkJob; one",
    "observer per cluster reads its job list every `FLINKOP_OBSERVE_INTERVAL` (10 s) and wakes only",
    "the FlinkJobs whose job changed; work due at a time is scheduled in the operator. Three runs of",
    "2026-12-03 on the way (the run above is the third):",
    "",
    "1. Idle CPU 0.004 of a core (was 0.101 with a timer per FlinkJob), peak RSS 142.8 MB (was 199-243),",
    "   but the reaction p99 was 70 s (p50 12 s): the spaced changes came in batches of 10 with 5 s gaps.",
    "   An upgrade held its slot (`FLINKOP_MAX_CONCURRENT_UPGRADES`, 10) through the stability gate, and",
    "   the simulated jobs do not checkpoint, so the gate waits its 10 s without checkpoints. An upgrade",
    "   whose new job runs every vertex now gives its slot up while the gate waits (a rollback after a",
    "   failed gate goes on without one).",
    "2. Reaction p99 0.069 s, burst 34 s, no error line (an Event post kopf retried is a warning now, and",
    "   the connection pools to Flink and the apiserver are as large as the pass threads); peak RSS",
    "   155.0 MB, over the 150 MB target.",
    "3. The bodies kept per FlinkJob are compact JSON (decoded by each pass) instead of Python objects,",
    "   and the operator asks glibc for two malloc arenas instead of one per allocating thread: peak",
    "   RSS 133.2 MB, 47 KB per FlinkJob at rest above an operator with none (86.9 MB).",
    "",
]


B3_10K_NOTES = [
    "Reading of the 10,000 runs of 2026-12-03 with event-driven passes (issue 15). Before them, with a",
    "kopf timer per FlinkJob (operator at 4dc77b2): RSS 1.26 GB (about 125 KB per FlinkJob), a whole",
    "core at rest (670 timer passes a second), 17 of 100 changes reaching the stop call within the",
    "phase, 5 of 100 simultaneous upgrades done in 10 minutes. Three runs on the way to the one above:",
    "",
    "1. Idle CPU 0.94 of a core, reaction p50 12.5 s and p99 33.9 s (stopped before its burst). Each",
    "   time the last FlinkJob at rest on a cluster went into a step and came back, the cluster's",
    "   observer got one more look of its own: job lists were read ever faster. Fixed (one look per",
    "   cluster per interval).",
    "2. Idle CPU 0.98, reaction p99 3.26 s, RSS 257 MB, burst 42 s. The idle operator made no request",
    "   naming a job: passes at rest were still draining, each going through every FlinkJob's jar",
    "   record (`JarUsers.used_elsewhere`, linear in the FlinkJobs: quadratic over a deploy of 10,000).",
    "   Jar users are now counted per cluster.",
    "3. The run above: every target met. Idle CPU 0.039 of a core, of which the py-spy profile puts",
    "   about 60% in the observers' reads of the 100 job lists (one per cluster every 10 s, 10 requests",
    "   a second); RSS 306 MB, 22.5 KB per FlinkJob at rest above an operator with none (86.6 MB);",
    "   deploy of 10,000 in 340 s (was 773 s); reaction p99 0.12 s; 100 simultaneous upgrades Ready",
    "   in 31.7 s, at most 10 in flight at Flink.",
    "",
    "Changes made after the run above (not measured at 10,000): a watch event wakes a pass only when",
    "generation, deletion or finalizers changed; a FlinkJob whose upgrade just ended is tracked with",
    "its new job as seen; a cluster's configuration is read by one pass at a time.",
    "",
]


def b4() -> list[str]:
    out = ["## B4: application-mode upgrade overhead against the same steps by hand", ""]
    out += [
        "Method (`bench/b4_app_upgrade.py`, `make bench-app`): the bed's real node (containerd, kubelet,",
        "controller-manager, scheduler) runs two application clusters side by side, each a JobManager",
        "Deployment (`standalone-job`) and one TaskManager pod, the test job at parallelism 2 (200 records/s,",
        "checkpoints every second) from an image with the job's jar, savepoints on a host directory every pod",
        "mounts. A is a FlinkJob the operator serves (on the host, `FLINKOP_APP_REST_ADDRESS=pod-ip`); each",
        "pair patches its `spec.cluster.image` to another tag of the same image. B is the operator's sequence",
        "by hand on a second cluster (built by `flinkop.app_cluster.build_cluster`, owned by a FlinkJob in a",
        "namespace no operator serves): `POST /jobs/<id>/stop`, the savepoint polled at the operator's pace",
        "(every 0.1 s for 2 s, then 0.25 s), the old job's end awaited, then the cluster's objects applied for a",
        "new job id with `--fromSavepoint` and the other tag (`AppClusterKube.apply`: the pods are replaced,",
        "`Recreate`). For both, the end is the moment this script, reading the new JobManager's live",
        "`/jobs/overview` at its pod IP every 10 ms (the pod listed every 50 ms), first sees the new job with",
        "every task RUNNING. Total = end minus the patch (A) or B's stop call; downtime = end minus the old",
        "job's `end-time` as Flink records it, read from the old JobManager (which stays up after its job",
        "ends until its pod is replaced) every 10 ms from the patch or stop on, for A and B alike.",
        "",
    ]
    data = load("b4.json")
    if data is None:
        return [*out, "No results: run `make bench-app` (needs root and the node; one node per machine).", ""]
    settings = data.get("settings") or {}
    out += [
        f"Run of {when('b4.json')} (raw figures in `bench/results/b4.json`; {settings.get('cpu_per_pod', '?')} CPU "
        "per pod):",
        "",
    ]
    out += [
        "| pair | A total (s) | B total (s) | A downtime (s) | B downtime (s) | A: pod IP / REST / all running (s) "
        "| B: pod IP / REST / all running (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    runs = data["runs"]

    def marks(r: dict[str, Any]) -> str:
        m = r.get("marks") or {}
        return f"{f(m.get('pod_ip'), 1)} / {f(m.get('rest_answers'), 1)} / {f(m.get('all_running'), 1)}"

    def downtime(r: dict[str, Any]) -> str:
        return f(r["downtime"]) + ("" if r.get("end_source", "end-time") == "end-time" else "*")

    for pair in sorted({r["pair"] for r in runs}):
        a = next(r for r in runs if r["pair"] == pair and r["kind"] == "A")
        b = next(r for r in runs if r["pair"] == pair and r["kind"] == "B")
        out.append(
            f"| {pair} | {f(a['total'])} | {f(b['total'])} | {downtime(a)} | {downtime(b)} | {marks(a)} | {marks(b)} |"
        )
    s = data["summary"]
    out.append(
        f"| **median** | **{f(s['total']['A_median'])}** | **{f(s['total']['B_median'])}** | "
        f"**{f(s['downtime']['A_median'])}** | **{f(s['downtime']['B_median'])}** | | |"
    )
    out += [
        "",
        f"**A/B: {f(s['total']['A_over_B'])} on total time, {f(s['downtime']['A_over_B'])} on downtime.**",
        "",
    ]
    if any(r.get("end_source", "end-time") != "end-time" for r in runs):
        out += [
            "\\* the old JobManager was gone before its job's end-time was read: the savepoint's `_metadata`",
            "modification time on the host stands in (earlier than the job's end, so that downtime reads longer).",
            "",
        ]
    return out + B4_NOTES


B4_NOTES = [
    "Notes: the node has 2 CPUs, so each pod gets the CPU in the table (requested and limited alike, as the",
    "operator sets them) for both clusters to fit; absolute times are longer than at a whole CPU, for A and",
    "B alike. The columns after the downtimes give, from the patch (A) or the stop call (B), when the new",
    "JobManager pod had an IP, when its REST API first answered and when every task ran: the part of",
    "either upgrade that is Kubernetes and Flink starting the new pods. By design A does what B does plus",
    "the operator's own work: the patch's watch event and the pass's reads before the stop, the status write",
    "that records the savepoint and the new job id before the apply, and its passes' reads in between.",
    "",
]


SECTIONS: list[Callable[[], list[str]]] = [b1, b2, b3, b4]


def main() -> int:
    out = [
        "# Benchmarks",
        "",
        "Written by `bench/report.py` from `bench/results/*.json` (`make bench` runs B1 to B4, then this;",
        "`make bench-app` runs B4 alone, on the bed's real node, then this).",
        f"Machine: {machine()}; OpenJDK 17, Flink 2.3.0 session cluster and kube-apiserver v1.20.2 from the",
        "test bed, all on loopback. Absolute times on this shared machine are context only; the comparisons",
        "are ratios of runs made side by side, interleaved A B A B.",
        "",
    ]
    for section in SECTIONS:
        out += section()
    (BENCH / "RESULTS.md").write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {BENCH / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
