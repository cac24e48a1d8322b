"""Starting and stopping by PID: exactly our processes, their whole groups, never a stranger."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from modeldeploy_devcluster.processes import ProcessRecord, is_running, log_tail, start_process, stop_processes
from modeldeploy_devcluster.waiting import wait_until


def test_started_process_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    record = start_process("sleeper", ["bash", "-c", "echo hello; exec sleep 60"], tmp_path / "sleeper.log", tmp_path)
    assert is_running(record)
    wait_until(lambda: "hello" in log_tail(record), "the log line")

    assert stop_processes([record]) == []
    assert not is_running(record)


def test_process_ignoring_sigterm_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    # bash ignores TERM and starts a child that writes its PID: both live in the group we created.
    script = 'trap "" TERM; sleep 60 & echo $! > child.pid; wait'
    record = start_process("stubborn", ["bash", "-c", script], tmp_path / "stubborn.log", tmp_path)
    child_pid = int(
        wait_until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text(), "child pid")
    )

    assert stop_processes([record], grace_seconds=0.5) == ["stubborn"]
    assert not is_running(record)
    wait_until(lambda: not Path(f"/proc/{child_pid}").exists() or _is_zombie(child_pid), "the child to go")


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def test_a_reused_pid_is_not_ours_and_is_left_alone(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Our record of a process that started at boot, whose PID now belongs to the stranger:
        # what a state file looks like after a reboot recycled the PID.
        recycled = ProcessRecord(
            name="ours", pid=stranger.pid, start_ticks=0, log_path=tmp_path / "ours.log", argv=["sleep", "60"]
        )

        assert not is_running(recycled)
        assert stop_processes([recycled]) == []
        assert stranger.poll() is None
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


def test_stopping_an_already_exited_process_is_a_no_op(tmp_path: Path) -> None:
    record = start_process("quick", ["true"], tmp_path / "quick.log", tmp_path)
    wait_until(lambda: not is_running(record) or _reap(record.pid), "the process to exit")
    assert stop_processes([record]) == []


def _reap(pid: int) -> bool:
    finished, _ = os.waitpid(pid, os.WNOHANG)
    return finished == pid
