"""`python -m flinkop`: run the operator against the current kubeconfig (or in-cluster config)."""

from __future__ import annotations

import argparse

import kopf

from flinkop import logs, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flinkop", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a health endpoint for probes, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one object per line")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus /metrics, e.g. 0.0.0.0:9090")
    args = parser.parse_args(argv)
    logs.configure(args.log_format, verbose=args.verbose)
    if args.metrics:
        metrics.serve(args.metrics)

    import flinkop.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,
        namespaces=args.namespace or [],
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
