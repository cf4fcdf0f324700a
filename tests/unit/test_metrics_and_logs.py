"""Metrics read from the status before and after a pass, in Prometheus' text format; JSON log lines
name the FlinkJob being handled."""

from __future__ import annotations

import json
import logging
import re

from flinkop import logs
from flinkop.metrics import Metrics
from flinkop.observation import Observation
from flinkop.status import Failure, Savepoint
from planner_kit import OLD_JOB, SP_PATH, V1, at, job, make_spec, run, savepoint, steady, upgrade_started

V2 = make_spec(jar={"uri": "https://repo.example/job-2.0.jar"})


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    values = [float(m.group(1)) for line in text.splitlines() if (m := re.match(pattern, line))]
    assert len(values) == 1, f"{name}{{{wanted}}} not exactly once in:\n{text}"
    return values[0]


def test_a_finished_upgrade_is_counted_with_its_duration_and_its_savepoints_duration() -> None:
    metrics = Metrics()
    started = upgrade_started(V1, V2)  # started at NOW, savepoint triggered at NOW
    completed = run(
        V2, started, Observation(job=job(OLD_JOB, "FINISHED"), savepoint=savepoint("COMPLETED", SP_PATH)), now=at(2)
    )
    metrics.record_pass("uid-1", started, completed.status, at(2))
    done = steady(V2)
    assert completed.status.upgrade is not None, "the savepoint is recorded; the upgrade goes on"
    metrics.record_pass("uid-1", completed.status, done, at(7))
    text = metrics.render()
    assert sample(text, "flinkop_upgrades_total", kind="upgrade", outcome="succeeded") == 1
    assert sample(text, "flinkop_upgrade_duration_seconds_count", kind="upgrade") == 1
    assert sample(text, "flinkop_upgrade_duration_seconds_sum", kind="upgrade") == 7
    assert sample(text, "flinkop_upgrade_duration_seconds_bucket", kind="upgrade", le="5") == 0
    assert sample(text, "flinkop_upgrade_duration_seconds_bucket", kind="upgrade", le="10") == 1
    assert sample(text, "flinkop_savepoint_duration_seconds_sum", reason="upgrade") == 2
    assert sample(text, "flinkop_flinkjobs", phase="Running") == 1


def test_a_rolled_back_upgrade_and_errors_are_counted_by_outcome_and_reason() -> None:
    metrics = Metrics()
    started = upgrade_started(V1, V2)
    rolled_back = steady(V1, failure=Failure("RestoreFailed", "did not restore", V2.deployment.fingerprint))
    metrics.record_pass("uid-1", started, rolled_back, at(30))
    metrics.record_error("flink_unreachable")
    metrics.record_error("flink_unreachable")
    text = metrics.render()
    assert sample(text, "flinkop_upgrades_total", kind="upgrade", outcome="rolled_back") == 1
    assert sample(text, "flinkop_reconcile_errors_total", reason="flink_unreachable") == 2


def test_a_manual_savepoint_is_timed_but_not_counted_as_an_upgrade() -> None:
    metrics = Metrics()
    spec = make_spec(savepointNonce=1)
    taking = run(spec, steady(V1), Observation(job=job(OLD_JOB)))
    after = steady(V1, last_savepoint=Savepoint(SP_PATH, "2024-05-01T12:00:01Z", "manual"))
    metrics.record_pass("uid-1", taking.status, after, at(1))
    text = metrics.render()
    assert "flinkop_upgrades_total{" not in text
    assert sample(text, "flinkop_savepoint_duration_seconds_count", reason="manual") == 1


def test_json_log_lines_name_the_flinkjob_being_handled() -> None:
    formatter = logs.JsonFormatter()
    name_it = logs._NameTheFlinkJob()
    record = logging.LogRecord("flinkop", logging.INFO, __file__, 1, "stopping job %s", ("abc",), None)
    with logs.handling("team-a", "orders"):
        name_it.filter(record)
    line = json.loads(formatter.format(record))
    assert (line["message"], line["flinkjob"], line["level"]) == ("stopping job abc", "team-a/orders", "INFO")
    outside = logging.LogRecord("flinkop", logging.INFO, __file__, 1, "idle", (), None)
    name_it.filter(outside)
    assert "flinkjob" not in json.loads(formatter.format(outside))
