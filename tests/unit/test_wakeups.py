"""The pass scheduler: passes run when woken, one at a time per FlinkJob, and come back when asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flinkop.wakeups import PassScheduler


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


class Recorder:
    def __init__(self, delays: dict[str, list[float | None]] | None = None, hold: threading.Event | None = None):
        self.calls: list[str] = []
        self.delays = delays or {}
        self.hold = hold
        self.running: dict[str, int] = {}
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, uid: str) -> float | None:
        with self.lock:
            self.running[uid] = self.running.get(uid, 0) + 1
            self.overlap = self.overlap or self.running[uid] > 1
            self.calls.append(uid)
        if self.hold is not None:
            self.hold.wait(5)
        with self.lock:
            self.running[uid] -= 1
            pending = self.delays.get(uid)
            return pending.pop(0) if pending else None


def test_a_woken_flinkjob_gets_one_pass_and_then_nothing_until_woken_again() -> None:
    rec = Recorder()
    s = PassScheduler(rec, workers=2)
    try:
        s.wake("a")
        wait_for(lambda: rec.calls == ["a"])
        time.sleep(0.1)
        assert rec.calls == ["a"]
        s.wake("a")
        wait_for(lambda: rec.calls == ["a", "a"])
    finally:
        s.stop()


def test_a_pass_that_asks_to_come_back_runs_again_after_its_delay() -> None:
    rec = Recorder({"a": [0.05, 0.05, None]})
    s = PassScheduler(rec, workers=2)
    try:
        s.wake("a")
        wait_for(lambda: len(rec.calls) == 3)
        time.sleep(0.15)
        assert rec.calls == ["a", "a", "a"]
    finally:
        s.stop()


def test_a_wake_during_a_pass_runs_one_more_pass_right_after_it_never_beside_it() -> None:
    hold = threading.Event()
    rec = Recorder(hold=hold)
    s = PassScheduler(rec, workers=4)
    try:
        s.wake("a")
        wait_for(lambda: rec.calls == ["a"])
        s.wake("a")
        s.wake("a")  # both come while the first pass runs: one more pass covers them
        time.sleep(0.05)
        assert rec.calls == ["a"]
        hold.set()
        wait_for(lambda: len(rec.calls) == 2)
        time.sleep(0.1)
        assert rec.calls == ["a", "a"] and not rec.overlap
    finally:
        s.stop()


def test_an_earlier_wake_wins_over_a_later_planned_pass() -> None:
    rec = Recorder()
    s = PassScheduler(rec, workers=2)
    try:
        s.wake("a", delay=30.0)
        s.wake("a", delay=0.0)
        wait_for(lambda: rec.calls == ["a"])
        assert s.due("a") is None  # the later one was replaced, not kept beside it
    finally:
        s.stop()


def test_a_paused_scheduler_runs_nothing_until_resumed() -> None:
    rec = Recorder()
    s = PassScheduler(rec, workers=2)
    try:
        s.pause(True)
        s.wake("a")
        time.sleep(0.1)
        assert rec.calls == []
        s.pause(False)
        wait_for(lambda: rec.calls == ["a"])
    finally:
        s.stop()


def test_a_forgotten_flinkjob_gets_no_more_passes() -> None:
    rec = Recorder()
    s = PassScheduler(rec, workers=2)
    try:
        s.wake("a", delay=0.1)
        s.forget("a")
        time.sleep(0.25)
        assert rec.calls == []
    finally:
        s.stop()


def test_a_pass_that_raises_is_tried_again_later_and_others_go_on() -> None:
    calls: list[str] = []

    def run(uid: str) -> float | None:
        calls.append(uid)
        if uid == "bad":
            raise RuntimeError("boom")
        return None

    s = PassScheduler(run, workers=2)
    try:
        s.wake("bad")
        s.wake("good")
        wait_for(lambda: "good" in calls and "bad" in calls)
        # Planned again once its exception is handled (a moment after the call): backed off, not spinning.
        wait_for(lambda: (s.due("bad") or 0.0) > 1.0, timeout=2.0)
        time.sleep(0.3)
        assert calls.count("bad") == 1
    finally:
        s.stop()
