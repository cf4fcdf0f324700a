"""Operator-wide settings, read once at start-up from the command line and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorSettings:
    observe_interval: float = 15.0  # how often a resource at rest is looked at
    delete_timeout: float = 300.0  # how long deletion tries for a final savepoint
    flink_timeout: float = 10.0  # per Flink REST request
    overview_max_age: float = 5.0  # a cluster's job list is shared by its FlinkJobs for this long
    max_concurrent_upgrades: int = 10  # upgrades and rescales in flight at once; more wait their turn
    jar_cache_dir: Path | None = None
    max_jar_bytes: int = 512 * 1024 * 1024
    # Hosts jars may come from (`repo.example.com`, `*.example.com`, `file` for file://); empty: any.
    jar_allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> OperatorSettings:
        def num(name: str, default: float) -> float:
            raw = os.environ.get(name)
            try:
                return float(raw) if raw else default
            except ValueError as exc:
                raise SystemExit(f"{name}={raw!r} is not a number") from exc

        cache = os.environ.get("FLINKOP_JAR_CACHE_DIR")
        return cls(
            observe_interval=num("FLINKOP_OBSERVE_INTERVAL", cls.observe_interval),
            delete_timeout=num("FLINKOP_DELETE_TIMEOUT", cls.delete_timeout),
            flink_timeout=num("FLINKOP_FLINK_TIMEOUT", cls.flink_timeout),
            overview_max_age=num("FLINKOP_OVERVIEW_MAX_AGE", cls.overview_max_age),
            max_concurrent_upgrades=int(num("FLINKOP_MAX_CONCURRENT_UPGRADES", cls.max_concurrent_upgrades)),
            jar_cache_dir=Path(cache) if cache else None,
            max_jar_bytes=int(num("FLINKOP_MAX_JAR_BYTES", cls.max_jar_bytes)),
            jar_allowed_hosts=tuple(
                h.strip() for h in os.environ.get("FLINKOP_JAR_ALLOWED_HOSTS", "").split(",") if h.strip()
            ),
        )
