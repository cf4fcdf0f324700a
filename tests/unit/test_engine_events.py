"""Which watch events wake a FlinkJob's pass: any version the operator did not write itself; never
the echo of its own status or finalizer patch, nor a version older than one it has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flinkop.bodies import Bodies, compact
from flinkop.engine import Engine
from flinkop.reconcile import forget_resource, remember_write
from flinkop.settings import OperatorSettings


class _Woken:
    def __init__(self) -> None:
        self.uids: list[str] = []

    def wake(self, uid: str, delay: float = 0.0) -> None:
        self.uids.append(uid)

    def forget(self, uid: str) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[tuple[Engine, _Woken]]:
    e = Engine(OperatorSettings(), store=None, secrets=None, post_event=lambda obj, event: None)  # type: ignore[arg-type]
    e.stop()  # its threads are not needed: wake-ups are recorded instead
    woken = _Woken()
    e.scheduler = woken  # type: ignore[assignment]
    yield e, woken
    forget_resource("u1")


def body(rv: int, generation: int = 1, **extra: Any) -> dict[str, Any]:
    meta = {"name": "j", "namespace": "ns", "uid": "u1", "resourceVersion": str(rv), "generation": generation}
    return {"metadata": meta, "spec": {"parallelism": 2}, **extra}


def test_a_new_flinkjob_and_a_spec_change_wake_its_pass(engine: tuple[Engine, _Woken]) -> None:
    e, woken = engine
    e.on_event(None, body(10))
    e.on_event("MODIFIED", body(11, generation=2))
    assert woken.uids == ["u1", "u1"]


def test_the_echo_of_the_operators_own_write_wakes_nothing(engine: tuple[Engine, _Woken]) -> None:
    e, woken = engine
    e.on_event(None, body(10))
    remember_write("u1", "12")  # the pass patched the status: the object is now at version 12
    e.on_event("MODIFIED", body(12, status={"phase": "Running"}))
    assert woken.uids == ["u1"]
    e.on_event("MODIFIED", body(13, generation=2))  # then a person changed it
    assert woken.uids == ["u1", "u1"]


def test_an_event_older_than_the_kept_version_neither_replaces_it_nor_wakes(engine: tuple[Engine, _Woken]) -> None:
    e, woken = engine
    e.on_event(None, body(20, generation=3))
    e.on_event("MODIFIED", body(15, generation=2))
    kept = e.bodies.get("u1")
    assert kept is not None and kept["metadata"]["generation"] == 3
    assert woken.uids == ["u1"]


def test_a_deleted_flinkjob_is_forgotten(engine: tuple[Engine, _Woken]) -> None:
    e, _ = engine
    e.on_event(None, body(10))
    e.on_event("DELETED", body(11))
    assert e.bodies.get("u1") is None


def test_a_kept_body_holds_what_a_pass_reads_and_not_managed_fields_or_foreign_annotations() -> None:
    raw = body(5, status={"phase": "Running"})
    raw["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    raw["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "flinkop.io/last-handled-configuration": "{...}",
    }
    kept = compact(raw)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"flinkop.io/last-handled-configuration": "{...}"}
    assert kept["spec"] == raw["spec"] and kept["status"] == raw["status"]
    raw["spec"]["parallelism"] = 9
    assert kept["spec"]["parallelism"] == 2  # a copy of its own
    store = Bodies()
    assert store.put(raw) and not store.put(body(4))


def test_the_echo_of_a_status_write_that_comes_before_the_writes_answer_wakes_nothing(
    engine: tuple[Engine, _Woken],
) -> None:
    e, woken = engine
    e.on_event(None, body(10))
    # The pass's status patch made version 11; its watch event is here before the pass has the answer.
    e.on_event("MODIFIED", body(11, status={"phase": "Deploying"}))
    assert woken.uids == ["u1"]
    kept = e.bodies.get("u1")
    assert kept is not None and kept["status"] == {"phase": "Deploying"}  # kept all the same


def test_a_deletion_and_a_finalizer_change_wake_the_pass(engine: tuple[Engine, _Woken]) -> None:
    e, woken = engine
    e.on_event(None, body(10))
    deleting = body(11)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    e.on_event("MODIFIED", deleting)
    released = body(12)
    released["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    released["metadata"]["finalizers"] = ["other.io/keep"]
    e.on_event("MODIFIED", released)
    assert woken.uids == ["u1", "u1", "u1"]
