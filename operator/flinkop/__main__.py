"""`python -m flinkop`: run the operator against the current kubeconfig (or in-cluster config)."""

from __future__ import annotations

import argparse
import logging

import kopf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flinkop", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a health endpoint for probes, e.g. http://0.0.0.0:8080/healthz"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import flinkop.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,
        namespaces=args.namespace or [],
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
