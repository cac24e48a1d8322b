"""Start the control plane's processes in their own process groups and stop exactly those, by PID.

A PID alone is not an identity: after a reboot or a long pause the number may belong to someone else.
Each record therefore keeps the process's start time (from /proc) and a PID counts as ours only while
both match, so `down` can never signal a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# Grace before SIGKILL: etcd and the apiserver flush and close cleanly within a few seconds.
STOP_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.05


class ProcessRecord(BaseModel):
    """One started process: enough to find it again from another process, and to read its log."""

    model_config = ConfigDict(frozen=True)

    name: str
    pid: int
    start_ticks: int
    log_path: Path
    argv: list[str]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a PID, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may hold spaces; the fields after the last ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process (same PID *and* same start time) is alive and not a zombie."""
    stat = _proc_stat(record.pid)
    return stat is not None and stat[1] == record.start_ticks and stat[0] not in ("Z", "X")


def start_process(
    name: str, argv: Sequence[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> ProcessRecord:
    """Start `argv` detached from our terminal in a new session (its own process group), logging to a file.

    Nothing of ours is inherited: stdin is /dev/null and stdout/stderr go to the log, so a caller that
    captures our stdout (`eval "$(... up)"`) is not held open by the cluster's processes. `env` replaces
    our environment when given.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stat = _proc_stat(process.pid)
    if stat is None:
        raise RuntimeError(f"{name} exited at once; see {log_path}")
    # The Popen object is dropped on purpose: the process outlives this one (the CLI exits after `up`),
    # and whoever stops it finds it by the record. While we are its parent, stop_processes reaps it.
    return ProcessRecord(name=name, pid=process.pid, start_ticks=stat[1], log_path=log_path, argv=list(argv))


def _signal_group(record: ProcessRecord, signum: signal.Signals) -> None:
    # The process leads its own group (start_new_session), so its group id is its PID.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signum)


def _reap_if_child(record: ProcessRecord) -> None:
    """Collect the exit status when we are the parent, so the process does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)


def _wait_until_gone(records: list[ProcessRecord], seconds: float) -> list[ProcessRecord]:
    """Wait up to `seconds` for the processes to exit; return those still running."""
    deadline = time.monotonic() + seconds
    while records and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        for record in records:
            _reap_if_child(record)
        records = [record for record in records if is_running(record)]
    return records


def stop_processes(records: Sequence[ProcessRecord], grace_seconds: float = STOP_GRACE_SECONDS) -> list[str]:
    """Stop the recorded process groups one after another, in the given order.

    Each gets SIGTERM, then SIGKILL if still running after the grace; returns the names that needed
    SIGKILL. One at a time because order matters: an apiserver whose etcd is already gone hangs in its
    shutdown instead of exiting. Records whose PID is gone or now belongs to a different process are
    skipped: they are not ours any more.
    """
    killed = []
    for record in records:
        if not is_running(record):
            continue
        _signal_group(record, signal.SIGTERM)
        if not _wait_until_gone([record], grace_seconds):
            continue
        killed.append(record.name)
        _signal_group(record, signal.SIGKILL)
        if _wait_until_gone([record], grace_seconds):
            raise RuntimeError(f"{record.name} (pid {record.pid}) still runs after SIGKILL")
    return killed


def log_tail(record: ProcessRecord, lines: int = 30) -> str:
    """The last lines of a process's log, for error messages."""
    try:
        text = record.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
