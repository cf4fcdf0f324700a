"""The planner's rescaling: in place through the adaptive scheduler or through a savepoint,
at most one rescale per minRescaleIntervalSeconds, and the scale subresource's selector."""

from __future__ import annotations

from dataclasses import replace

from flinkop import status as st
from flinkop.actions import RescaleInPlace, TriggerSavepoint
from flinkop.observation import Observation
from planner_kit import OLD_JOB, V1, at, condition, iso, jar_uploaded, job, make_spec, run, steady


def adaptive(job_view: object = None, **fields: object) -> Observation:
    return Observation(
        job=job_view or job(OLD_JOB),
        cluster_scheduler="adaptive",
        jar=jar_uploaded(),
        **fields,  # type: ignore[arg-type]
    )


def default(**fields: object) -> Observation:
    return Observation(job=job(OLD_JOB), cluster_scheduler="default", jar=jar_uploaded(), **fields)  # type: ignore[arg-type]


def test_parallelism_change_on_an_adaptive_cluster_rescales_in_place_on_every_vertex() -> None:
    d = run(make_spec(parallelism=3), steady(V1), adaptive())
    assert isinstance(d.action, RescaleInPlace)
    assert d.action.job_id == OLD_JOB
    assert dict(d.action.upper_bounds) == {"v0": 3, "v1": 3}
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.RESCALE
    assert d.status.last_rescale_at == iso(at(0))


def test_auto_on_a_cluster_without_the_adaptive_scheduler_rescales_through_a_savepoint() -> None:
    d = run(make_spec(parallelism=3), steady(V1), default())
    assert isinstance(d.action, TriggerSavepoint) and d.action.mode == "stop"
    assert d.status.last_rescale_at == iso(at(0))


def test_savepoint_mode_never_rescales_in_place() -> None:
    d = run(make_spec(parallelism=3, rescaleMode="Savepoint"), steady(V1), adaptive())
    assert isinstance(d.action, TriggerSavepoint)


def test_in_place_mode_on_a_cluster_without_the_adaptive_scheduler_stalls_and_leaves_the_job() -> None:
    d = run(make_spec(parallelism=3, rescaleMode="InPlace"), steady(V1), default())
    assert d.action is None and d.status.upgrade is None
    assert condition(d, "Stalled")["reason"] == "InPlaceRescaleUnsupported"
    assert d.status.last_rescale_at is None, "nothing was rescaled"


def test_a_rescale_within_the_interval_waits_and_the_newest_parallelism_wins() -> None:
    spec = make_spec(parallelism=4, minRescaleIntervalSeconds=60)
    recently = steady(V1, last_rescale_at=iso(at(-20)))
    d = run(spec, recently, default())
    assert d.action is None
    assert d.status.rescale_pending_until == iso(at(40))
    assert d.requeue_after == 40
    assert "pending" in d.status.message and iso(at(40)) in d.status.message
    assert condition(d, "Reconciling")["status"] == "True"
    assert condition(d, "Ready")["status"] == "False"
    newest = make_spec(parallelism=5, minRescaleIntervalSeconds=60)
    later = run(newest, d.status, default(), now=at(41))
    assert isinstance(later.action, TriggerSavepoint)
    assert later.status.upgrade is not None and later.status.upgrade.target.parallelism == 5
    assert later.status.rescale_pending_until is None


def test_a_jar_change_is_never_delayed_by_the_rescale_interval() -> None:
    spec = make_spec(jar={"uri": "https://repo.example/job-2.0.jar"}, parallelism=4, minRescaleIntervalSeconds=600)
    recently = steady(V1, last_rescale_at=iso(at(-1)))
    obs = Observation(job=job(OLD_JOB), jar=jar_uploaded("https://repo.example/job-2.0.jar"))
    assert isinstance(run(spec, recently, obs).action, TriggerSavepoint)


def test_in_place_rescale_is_done_when_every_vertex_runs_at_the_target_with_the_same_job() -> None:
    spec = make_spec(parallelism=3)
    started = run(spec, steady(V1), adaptive()).status
    waiting = run(spec, started, adaptive(resource_requirements={"v0": 3, "v1": 3}), now=at(2))
    assert waiting.action is None and waiting.status.upgrade is not None
    done = run(spec, started, adaptive(job(OLD_JOB, parallelism=3)), now=at(5))
    assert done.status.upgrade is None and done.status.job_id == OLD_JOB
    assert done.status.deployed == spec.deployment and done.status.parallelism == 3
    assert condition(done, "Ready")["status"] == "True"
    assert done.status.savepoint_history == (), "no savepoint is taken"


def test_in_place_rescale_sets_the_requirements_again_when_flink_does_not_have_them() -> None:
    spec = make_spec(parallelism=3)
    started = run(spec, steady(V1), adaptive()).status
    d = run(spec, started, adaptive(resource_requirements={"v0": 2, "v1": 2}), now=at(2))
    assert isinstance(d.action, RescaleInPlace) and dict(d.action.upper_bounds) == {"v0": 3, "v1": 3}


def test_in_place_rescale_that_times_out_falls_back_to_a_savepoint_in_auto_mode() -> None:
    spec = make_spec(parallelism=3, inPlaceRescaleTimeoutSeconds=30)
    started = run(spec, steady(V1), adaptive()).status
    d = run(spec, started, adaptive(resource_requirements={"v0": 3, "v1": 3}), now=at(31))
    assert isinstance(d.action, TriggerSavepoint)
    assert d.status.upgrade is not None and d.status.upgrade.kind == st.UPGRADE
    assert "InPlaceRescaleTimedOut" in [e.reason for e in d.events]


def test_in_place_rescale_that_times_out_in_in_place_mode_stalls() -> None:
    spec = make_spec(parallelism=3, rescaleMode="InPlace", inPlaceRescaleTimeoutSeconds=30)
    started = run(spec, steady(V1), adaptive()).status
    d = run(spec, started, adaptive(resource_requirements={"v0": 3, "v1": 3}), now=at(31))
    assert d.action is None
    assert condition(d, "Stalled")["reason"] == "InPlaceRescaleTimedOut"


def test_selector_defaults_to_the_resource_and_can_be_set() -> None:
    d = run(V1, steady(V1), Observation(job=job(OLD_JOB)))
    assert d.status.selector == "flinkop.io/flinkjob="  # the kit's resource has no name
    custom = run(make_spec(scaleSelector="app=flink,component=taskmanager"), steady(V1), Observation(job=job(OLD_JOB)))
    assert custom.status.selector == "app=flink,component=taskmanager"


def test_pending_rescale_is_cleared_once_the_spec_runs() -> None:
    status = replace(steady(V1), rescale_pending_until=iso(at(10)))
    d = run(V1, status, Observation(job=job(OLD_JOB)))
    assert d.status.rescale_pending_until is None
    assert condition(d, "Reconciling")["status"] == "False"
