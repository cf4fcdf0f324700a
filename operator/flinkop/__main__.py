"""`python -m flinkop`: run the operator against the current kubeconfig (or in-cluster config)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os

import kopf

from flinkop import logs, metrics, peering

_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _fewer_malloc_arenas() -> None:
    """glibc gives threads that allocate at once arenas of their own (up to 8 per core): with the
    pass and read threads, memory freed after a burst of passes stays spread over them and RSS does
    not come down. Two arenas, as MALLOC_ARENA_MAX=2 would give (which, when set, wins)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 2)


def main(argv: list[str] | None = None) -> None:
    _fewer_malloc_arenas()
    parser = argparse.ArgumentParser(prog="python -m flinkop", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a health endpoint for probes, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one object per line")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus /metrics, e.g. 0.0.0.0:9090")
    ha = parser.add_argument_group("high availability (kopf peering; default: standalone)")
    ha.add_argument(
        "--peering", metavar="NAME", help="peer with the operators sharing this peering object; only one acts"
    )
    ha.add_argument(
        "--priority", type=int, help="the live peer with the highest acts (default: the earliest started wins)"
    )
    webhook = parser.add_argument_group("validating admission webhook (https, path /validate-flinkjob)")
    webhook.add_argument("--webhook-listen", metavar="HOST:PORT", help="serve it here, e.g. 0.0.0.0:9443")
    webhook.add_argument("--webhook-cert", metavar="FILE", help="serving certificate (PEM)")
    webhook.add_argument("--webhook-key", metavar="FILE", help="its private key (PEM)")
    args = parser.parse_args(argv)
    if args.priority is not None and args.peering is None:
        parser.error("--priority needs --peering")
    host, _, port = (args.webhook_listen or "").rpartition(":")
    if args.webhook_listen and not (port.isdigit() and args.webhook_cert and args.webhook_key):
        parser.error("--webhook-listen HOST:PORT needs --webhook-cert and --webhook-key")
    try:
        peering.lifetime_from_env()
    except ValueError as exc:
        parser.error(str(exc))
    logs.configure(args.log_format, verbose=args.verbose)
    if args.metrics:
        metrics.serve(args.metrics)

    import flinkop.cluster_access_watch
    import flinkop.handlers  # noqa: F401  (registers the handlers)

    peering.serve_namespaces(args.namespace or [])
    priority = None
    if args.peering:
        priority = args.priority if args.priority is not None else peering.default_priority()
    if args.webhook_listen:
        from flinkop import admission  # registers the webhook handler only when it is served

        admission.listen(host or "0.0.0.0", int(port), args.webhook_cert, args.webhook_key)

    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        namespaces=args.namespace or [],
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
