"""The soak's operation generator: replayable from its seed, covering the spec surface and the faults."""

from __future__ import annotations

from soak.ops import FAULT_OPS, MAX_GAP_SECONDS, SETTLE_EVERY_AT_MOST, SPEC_OPS, generate

NAMES = ["soak-a", "soak-b", "soak-c"]


def test_the_same_seed_gives_the_same_operations_and_another_seed_others() -> None:
    assert generate(7, 50, NAMES) == generate(7, 50, NAMES)
    assert generate(7, 50, NAMES) != generate(8, 50, NAMES)


def test_a_long_run_draws_every_operation_and_fault_with_gaps_within_bounds() -> None:
    ops = generate(1, 600, NAMES)
    kinds = {op.kind for op in ops}
    assert set(SPEC_OPS) | set(FAULT_OPS) | {"settle"} <= kinds
    assert all(0 <= op.gap <= MAX_GAP_SECONDS for op in ops)
    assert {op.target for op in ops if op.kind in SPEC_OPS} == set(NAMES)
    assert {op.params["policy"] for op in ops if op.kind == "allow_non_restored"} == {"Never", "Always", "OnJarChange"}
    assert {op.params["variant"] for op in ops if op.kind == "args"} >= {"drop", "uid"}
    assert {op.params["policy"] for op in ops if op.kind == "stall_then_policy"} == {"Always", "OnJarChange"}
    downs = [op.params["seconds"] for op in ops if op.kind == "flink_down"]
    assert all(2 <= s <= 20 for s in downs)


def test_count_operations_end_with_a_settle_and_settles_come_often() -> None:
    ops = generate(3, 30, NAMES)
    assert len([op for op in ops if op.kind != "settle"]) == 30
    assert ops[-1].kind == "settle"
    run = 0
    for op in ops:
        run = 0 if op.kind == "settle" else run + 1
        assert run <= SETTLE_EVERY_AT_MOST
