"""What the real node changes on the machine, recorded before it is changed, and undone exactly by `down`.

kubelet, containerd and kube-proxy are host software: they create a bridge and veth pairs, mount tmpfs and overlay
filesystems, create `kubepods` cgroups, add iptables chains and set sysctls. `prepare` records the machine's state
first (`HostRecord`, kept in the cluster's state file and beside its claim on the node), then makes the
devcluster's own changes (directories, the bridge, a route, ip_forward). `restore` removes whatever the node left,
whether it stopped cleanly or was killed, and `leftovers` lists anything still there, for the test that proves
`down` leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .components import SERVICE_CLUSTER_IP_RANGE
from .real_node import BRIDGE, NODE_IP, POD_CIDR, NodePaths

CGROUP_ROOT = Path("/sys/fs/cgroup")
# What kubelet (vm.*, kernel.*), kube-proxy and the bridge plugin may set; restored to their values before `up`.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Paths kubelet and containerd's CNI library write to whatever their configuration says.
FIXED_HOST_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/lib/cni"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/run/containerd"),
    Path("/run/netns"),
    Path("/etc/cni"),
)
# Chains kubelet (KUBE-KUBELET-CANARY, KUBE-FIREWALL), kube-proxy (KUBE-*) and CNI plugins (CNI-*) create.
CHAIN_PREFIXES = ("KUBE-", "CNI-")
SHIM = "containerd-shim-runc-v2"


class RealNodeUnavailable(RuntimeError):
    """The machine cannot run the real node now; the message says why and what to do."""


class HostRecord(BaseModel):
    """The machine before the real node: what `restore` returns it to."""

    model_config = ConfigDict(frozen=True)

    sysctls: dict[str, str]
    existing_paths: list[Path]
    existing_cgroups: list[Path]
    existing_nft_tables: list[str]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def _kubepods_cgroups() -> list[Path]:
    return sorted(path for path in CGROUP_ROOT.glob("*/kubepods") if path.is_dir())


def _nft_tables() -> list[str]:
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return sorted(line.strip() for line in result.stdout.splitlines() if line.startswith("table "))


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True)


def _bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def prepare(paths: NodePaths) -> HostRecord:
    """Record the machine, then claim it for this cluster's real node: directories, bridge, route, ip_forward."""
    if os.geteuid() != 0:
        raise RealNodeUnavailable(
            "the real node needs root (kubelet manages cgroups, mounts and the pod network); "
            "run as root, or start the cluster without it (--real-node false)"
        )
    if paths.owner_file.exists():
        raise RealNodeUnavailable(
            f"a real node already runs on this machine, for the cluster in {paths.owner_file.read_text().strip()}; "
            "stop that cluster (`down --state-dir ...`) or start this one with --real-node false"
        )
    if _bridge_exists():
        raise RealNodeUnavailable(f"the network interface {BRIDGE} exists already; remove it (ip link del {BRIDGE})")
    record = HostRecord(
        sysctls=_read_sysctls(),
        existing_paths=[path for path in FIXED_HOST_PATHS if path.exists()],
        existing_cgroups=_kubepods_cgroups(),
        existing_nft_tables=_nft_tables(),
    )
    for directory in (paths.run_root, paths.data_root, paths.cni_config_dir, paths.cni_ipam_dir):
        directory.mkdir(parents=True, exist_ok=True)
    paths.owner_file.write_text(f"{paths.config_dir.parent}\n")
    paths.host_record_file.write_text(record.model_dump_json())
    return record


def claimed_by(paths: NodePaths) -> tuple[Path, HostRecord | None] | None:
    """The state directory of the cluster that claimed the real node, with the machine's record it left beside the
    claim; None when no cluster has claimed it."""
    if not paths.owner_file.exists():
        return None
    owner = Path(paths.owner_file.read_text().strip())
    if not paths.host_record_file.exists():
        return owner, None
    return owner, HostRecord.model_validate_json(paths.host_record_file.read_text())


def create_network() -> None:
    """The pods' bridge with the node's address, and the service range routed to it (never to the default route)."""
    prefix = POD_CIDR.split("/")[1]
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _run("ip", "route", "add", SERVICE_CLUSTER_IP_RANGE, "dev", BRIDGE, "src", NODE_IP)
    # Pods reach each other's Services through the host: DNAT, then out the bridge again.
    _sysctl_path("net.ipv4.ip_forward").write_text("1")


def _processes_in(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for root in cgroups:
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _shims(paths: NodePaths) -> set[int]:
    """Our containerd's shims: they outlive containerd, and only their command line names our socket."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(SHIM.encode()) and str(paths.containerd_socket).encode() in argv:
            pids.add(int(proc.name))
    return pids


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _mounts_under(roots: tuple[Path, ...]) -> list[Path]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # The mount point is the fifth field, with spaces and the like escaped in octal.
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if any(point == root or root in point.parents for root in roots):
            mounts.append(point)
    return mounts


def _unmount_all(roots: tuple[Path, ...]) -> None:
    for point in sorted(set(_mounts_under(roots)), key=lambda path: len(path.parts), reverse=True):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)


def _remove_cgroups(existing: list[Path]) -> None:
    for root in _kubepods_cgroups():
        if root in existing:
            continue
        # cgroup directories are removed with rmdir, leaves first; their files go with them.
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _chain_removal(saved: str) -> str:
    """An `iptables-restore --noflush` script that removes our chains, and the jumps to them from other chains,
    given `iptables-save`'s output."""
    tables: dict[str, tuple[list[str], list[str]]] = {}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = ([], [])
        elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
            tables[table][0].append(line[1:].split()[0])
        elif (
            line.startswith("-A ")
            and not line.split()[1].startswith(CHAIN_PREFIXES)
            and any(f"-{jump} {prefix}" in line for jump in "jg" for prefix in CHAIN_PREFIXES)
        ):
            tables[table][1].append("-D " + line[3:])
    script = []
    for name, (chains, jumps) in tables.items():
        if chains or jumps:
            script += [f"*{name}", *jumps, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains), "COMMIT"]
    return "".join(f"{line}\n" for line in script)


def _remove_chains() -> None:
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        saved = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        script = _chain_removal(saved)
        if script:
            subprocess.run([restore, "--noflush"], input=script, capture_output=True, text=True, check=False)


def restore(record: HostRecord, paths: NodePaths) -> None:
    """Undo everything the real node did, in an order that works after a clean stop and after a crash alike.

    The caller has stopped kubelet, kube-proxy and containerd; containers and shims outlive them.
    """
    _kill(_processes_in([root for root in _kubepods_cgroups() if root not in record.existing_cgroups]))
    _kill(_shims(paths))
    _unmount_all((paths.run_root, paths.data_root))
    _remove_cgroups(record.existing_cgroups)
    _remove_chains()
    for table in sorted(set(_nft_tables()) - set(record.existing_nft_tables)):
        subprocess.run(["nft", "delete", *table.split()], capture_output=True, check=False)
    if _bridge_exists():
        # Its address, its route and the veth ends attached to it go with it.
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    for name, value in record.sysctls.items():
        with contextlib.suppress(OSError):
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value)
    for path in FIXED_HOST_PATHS:
        if path not in record.existing_paths:
            _unmount_all((path,))
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(paths.data_root, ignore_errors=True)
    shutil.rmtree(paths.run_root, ignore_errors=True)


def leftovers(record: HostRecord, paths: NodePaths) -> list[str]:
    """What of the real node is still on the machine: empty after a complete `restore`."""
    found = []
    if _bridge_exists():
        found.append(f"interface {BRIDGE}")
    found += [f"mount {point}" for point in _mounts_under((paths.run_root, paths.data_root))]
    found += [f"path {path}" for path in (paths.run_root, paths.data_root) if path.exists()]
    found += [f"path {path}" for path in FIXED_HOST_PATHS if path.exists() and path not in record.existing_paths]
    found += [f"cgroup {path}" for path in _kubepods_cgroups() if path not in record.existing_cgroups]
    found += [f"shim {pid}" for pid in _shims(paths)]
    for save in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        found += [f"{save}: {line}" for line in saved.splitlines() if any(p in line for p in CHAIN_PREFIXES)]
    found += [f"nft {table}" for table in sorted(set(_nft_tables()) - set(record.existing_nft_tables))]
    current = _read_sysctls()
    found += [
        f"sysctl {name}={current.get(name)} (was {value})"
        for name, value in record.sysctls.items()
        if current.get(name) != value
    ]
    return found
