"""python -m modeldeploy_operator: run the operator against $KUBECONFIG or in-cluster credentials."""

import argparse
import sys

from pydantic import ValidationError

from modeldeploy_operator.settings import OperatorSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-operator",
        description="Reconciles ModelDeployments into GPU-scheduled model services. "
        "Every flag also reads from its MODELDEPLOY_* environment variable.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        help="watch this namespace (repeatable; MODELDEPLOY_NAMESPACES=a,b)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--runtime-image", help="runtime image for ModelDeployments that set none")
    parser.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument("--health-port", type=int, help="port of the /healthz liveness endpoint")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (0: off)")
    parser.add_argument("--bind-address", help="address of the health and metrics endpoints")
    parser.add_argument(
        "--leader-elect",
        dest="leader_election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reconcile only while holding the leader Lease, so that several replicas are safe",
    )
    parser.add_argument("--leader-election-namespace", help="namespace of the Lease (default: the pod's own)")
    parser.add_argument("--leader-election-lease-name", help="name of the Lease (default: modeldeploy-operator)")
    return parser


def _parse_args(argv: list[str] | None) -> dict[str, object]:
    args = vars(build_parser().parse_args(argv))
    if args.pop("all_namespaces"):
        args["namespaces"] = []
    return {key: value for key, value in args.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    overrides = _parse_args(argv)
    try:
        settings = OperatorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        sys.exit(f"modeldeploy-operator: invalid configuration: {problems}")
    from modeldeploy_operator.app import run  # kopf is imported only once the configuration is known good

    run(settings)


if __name__ == "__main__":
    main()
