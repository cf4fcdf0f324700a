"""The soak's random operations: a pure, seeded generator (same seed and count = same sequence).

An operation is what a person, a GitOps tool, an autoscaler or a fault does to the FlinkJobs and the
bed: a spec change (any field of the spec surface), `kubectl scale`, `kubectl apply` of a whole
manifest, delete and re-create, or a fault (SIGKILL of the operator, Flink REST unreachable, slow or
failing savepoints). Each carries the gap (0-10 s) the runner waits before applying the next one.
`settle` marks a quiescent point: the runner stops changing things, waits until every FlinkJob has
converged, and checks the invariants (tests/soak/invariants.py).

Nothing here touches the bed: the runner (tests/soak/runner.py) applies the operations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# The program variants the test job offers through its args. The job name carries the variant, so
# which args a running job was started with is read from Flink itself (its job name).
ARGS_VARIANTS: dict[str, tuple[str, ...]] = {
    "base": (),
    "rate": ("--rate", "150"),  # same operators, other args: keeps state
    "drop": ("--drop-counter",),  # the stateful counter is gone: needs allowNonRestoredState
    "uid": ("--counter-uid", "counter-v2"),  # the counter under another uid: its state does not map
}

# Parallelism stays within what the bed's Flink (8 slots) can run for three FlinkJobs at once.
MAX_PARALLELISM = 2

SPEC_OPS = (
    "jar",
    "entry_class",
    "args",
    "allow_non_restored",
    "restore_failure_policy",
    "upgrade_mode",
    "savepoint_mode",
    "parallelism_spec",
    "parallelism_scale",
    "rescale_mode",
    "suspend",
    "resume",
    "savepoint_nonce",
    "restart_nonce",
    "savepoint_interval",
    "history_limit",
    "delete_recreate",
    "apply_manifest",
    "suspend_then_resume",
    "stall_then_policy",
)
FAULT_OPS = ("kill_operator", "flink_down", "slow_savepoints", "fail_savepoints")

# Relative weights: what people do often is drawn often; the rarer, disruptive ones less.
WEIGHTS: dict[str, int] = {
    "jar": 6,
    "entry_class": 3,
    "args": 8,
    "allow_non_restored": 6,
    "restore_failure_policy": 2,
    "upgrade_mode": 2,
    "savepoint_mode": 2,
    "parallelism_spec": 5,
    "parallelism_scale": 5,
    "rescale_mode": 3,
    "suspend": 5,
    "resume": 6,
    "savepoint_nonce": 4,
    "restart_nonce": 4,
    "savepoint_interval": 3,
    "history_limit": 3,
    "delete_recreate": 2,
    "apply_manifest": 4,
    # The two sequences of issue 12: resume soon after the suspension took effect, and allow
    # dropping state once a dropped (or renamed) stateful operator has stalled the upgrade.
    "suspend_then_resume": 3,
    "stall_then_policy": 3,
    "kill_operator": 4,
    "flink_down": 3,
    "slow_savepoints": 3,
    "fail_savepoints": 3,
}

MAX_GAP_SECONDS = 10.0
SETTLE_EVERY_AT_MOST = 8  # operations between two quiescent points
SETTLE_PROBABILITY = 0.2


@dataclass(frozen=True)
class Op:
    kind: str  # one of SPEC_OPS, FAULT_OPS, or "settle"
    target: str | None  # the FlinkJob's name (None for faults and settles)
    params: dict[str, Any] = field(default_factory=dict)
    gap: float = 0.0  # seconds to wait after applying it

    def describe(self) -> str:
        target = f" {self.target}" if self.target else ""
        params = f" {json.dumps(self.params, sort_keys=True)}" if self.params else ""
        return f"{self.kind}{target}{params} (+{self.gap:.1f}s)"


def _spec_op(rng: random.Random, kind: str, target: str) -> Op:
    params: dict[str, Any]
    if kind == "jar":
        params = {"jar": rng.choice(["v1", "v2"])}
    elif kind == "entry_class":
        params = {"explicit": rng.random() < 0.5}
    elif kind == "args":
        params = {"variant": rng.choice(sorted(ARGS_VARIANTS))}
    elif kind == "allow_non_restored":
        params = {"policy": rng.choice(["Never", "Always", "OnJarChange"])}
    elif kind == "restore_failure_policy":
        params = {"policy": rng.choice(["Rollback", "Rollback", "Fail"])}
    elif kind == "upgrade_mode":
        params = {"mode": rng.choice(["savepoint", "savepoint", "stateless"])}
    elif kind == "savepoint_mode":
        params = {"mode": rng.choice(["stop", "cancel"])}
    elif kind in ("parallelism_spec", "parallelism_scale"):
        params = {"parallelism": rng.randint(1, MAX_PARALLELISM)}
    elif kind == "rescale_mode":
        params = {"mode": rng.choice(["Auto", "Savepoint", "InPlace"])}
    elif kind in ("savepoint_nonce", "restart_nonce"):
        params = {"nonce": rng.randint(1, 1_000_000)}
    elif kind == "savepoint_interval":
        params = {"seconds": rng.choice([None, 5, 10, 20])}
    elif kind == "history_limit":
        params = {"limit": rng.randint(1, 5)}
    elif kind == "delete_recreate":
        params = {"recreate_after": round(rng.uniform(0, 5), 1)}
    elif kind == "suspend_then_resume":
        params = {"resume_after": round(rng.uniform(0, MAX_GAP_SECONDS), 1)}
    elif kind == "stall_then_policy":
        params = {
            "variant": rng.choice(["drop", "uid"]),
            "policy": rng.choice(["Always", "OnJarChange"]),
            "after": round(rng.uniform(0, MAX_GAP_SECONDS), 1),
        }
    elif kind == "apply_manifest":
        # A whole manifest as Git holds it: the current wanted spec with a few fields redrawn.
        params = {
            "jar": rng.choice(["v1", "v2"]),
            "variant": rng.choice(sorted(ARGS_VARIANTS)),
            "parallelism": rng.randint(1, MAX_PARALLELISM),
            "policy": rng.choice(["Never", "Always", "OnJarChange"]),
        }
    else:  # suspend, resume
        params = {}
    return Op(kind, target, params)


def _fault_op(rng: random.Random, kind: str) -> Op:
    if kind == "kill_operator":
        params: dict[str, Any] = {"restart_after": round(rng.uniform(0, 5), 1)}
    elif kind == "flink_down":
        params = {"seconds": round(rng.uniform(2, 20), 1)}
    elif kind == "slow_savepoints":
        params = {"seconds": round(rng.uniform(5, 20), 1)}
    else:  # fail_savepoints
        params = {"seconds": round(rng.uniform(2, 15), 1)}
    return Op(kind, None, params)


def generate(seed: int, count: int, names: Sequence[str]) -> list[Op]:
    """`count` operations (settles not counted) on the FlinkJobs `names`, ending with a settle."""
    if count < 0 or not names:
        raise ValueError("generate needs a count >= 0 and at least one FlinkJob name")
    rng = random.Random(seed)
    kinds = sorted(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    ops: list[Op] = []
    since_settle = 0
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        op = _fault_op(rng, kind) if kind in FAULT_OPS else _spec_op(rng, kind, rng.choice(list(names)))
        ops.append(Op(op.kind, op.target, op.params, round(rng.uniform(0, MAX_GAP_SECONDS), 1)))
        since_settle += 1
        if since_settle >= SETTLE_EVERY_AT_MOST or rng.random() < SETTLE_PROBABILITY:
            ops.append(Op("settle", None))
            since_settle = 0
    if not ops or ops[-1].kind != "settle":
        ops.append(Op("settle", None))
    return ops
