"""`python -m modeldeploy_devcluster up|down|status|images`: the local cluster from a shell.

`up` prints only `export` lines on stdout (everything else goes to stderr), so a shell can
`eval "$(python -m modeldeploy_devcluster up)"`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from . import images
from .binaries import BinariesUnavailable
from .cluster import ClusterStartError, LocalCluster
from .config import ClusterConfig
from .processes import is_running

DEFAULT_STATE_DIR = Path(".dev/cluster")
# CLI flag for each ClusterConfig field, so validation errors name what the user typed.
_FLAGS = {name: "--" + name.replace("_", "-") for name in ClusterConfig.model_fields}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-devcluster",
        description="A local Kubernetes control plane on 127.0.0.1 with KWOK-simulated GPU nodes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start the cluster (or find it running) and print `export` lines for the shell"),
        ("down", "stop exactly the processes `up` started and remove the state directory"),
        ("status", "say whether the cluster of the state directory runs, and its processes"),
        ("images", "build the runtime and operator images (cached by their inputs), import them into the real node"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the cluster keeps its files"
        )
        if name == "up":
            for field, info in ClusterConfig.model_fields.items():
                default = "Kubernetes' own" if info.default is None else info.default
                command.add_argument(
                    _FLAGS[field],
                    dest=field,
                    type=str,
                    default=None,
                    help=f"{info.description} (default: {default})",
                )
    return parser


def _config(args: argparse.Namespace) -> ClusterConfig:
    given = {field: getattr(args, field) for field in ClusterConfig.model_fields if getattr(args, field) is not None}
    return ClusterConfig.model_validate(given)


def _validation_message(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        where = _FLAGS.get(field, "the node counts")
        lines.append(f"{where}: {problem['msg']} (got {problem['input']!r})" if field else f"{where}: {problem['msg']}")
    return "\n".join(lines)


def _up(cluster: LocalCluster) -> int:
    connection, already_running = cluster.up()
    if already_running:
        print(f"devcluster: already running from {cluster.paths.state_dir}", file=sys.stderr)
    sys.stdout.write(connection.export_lines())
    return 0


def _down(cluster: LocalCluster) -> int:
    stopped = cluster.down()
    print(f"devcluster: stopped {', '.join(stopped) or 'nothing (no running cluster)'}", file=sys.stderr)
    return 0


def _images(cluster: LocalCluster) -> int:
    built = images.build_all()
    if not cluster.import_images(built):
        print(f"devcluster: no cluster with a real node runs in {cluster.paths.state_dir}: built only", file=sys.stderr)
    for image in built:
        print(image.reference)
    return 0


def _status(cluster: LocalCluster) -> int:
    state = cluster.load_state()
    if state is None:
        print(f"no cluster in {cluster.paths.state_dir}")
        return 1
    running = cluster.running() is not None
    print(f"cluster in {cluster.paths.state_dir}: {'running' if running else 'NOT running'}")
    print(f"  apiserver  https://127.0.0.1:{state.ports.apiserver}")
    print(f"  kubeconfig {cluster.paths.admin_kubeconfig}")
    for record in state.processes:
        liveness = "up" if is_running(record) else "gone"
        print(f"  {record.name:<24} pid {record.pid:<8} {liveness:<5} {record.log_path}")
    return 0 if running else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args) if args.command == "up" else None
    except ValidationError as error:
        print(f"modeldeploy-devcluster: invalid parameters:\n{_validation_message(error)}", file=sys.stderr)
        return 2
    cluster = LocalCluster(args.state_dir, config)
    try:
        if args.command == "up":
            return _up(cluster)
        if args.command == "down":
            return _down(cluster)
        if args.command == "images":
            return _images(cluster)
        return _status(cluster)
    except (ClusterStartError, BinariesUnavailable) as error:
        print(f"modeldeploy-devcluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
