"""The CLI refuses bad parameters before it starts anything, naming the flag and what is allowed."""

from pathlib import Path

import pytest
from modeldeploy_devcluster.__main__ import main


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--gpus-per-node", "0"], "--gpus-per-node: Input should be greater than or equal to 1"),
        (["--gpu-nodes", "many"], "--gpu-nodes: Input should be a valid integer"),
        (["--gpu-product", "NVIDIA H100"], "--gpu-product: String should match pattern"),
        (["--gpu-nodes", "0", "--cpu-nodes", "0"], "gpu_nodes + cpu_nodes must be at least 1"),
        (["--controller-manager-qps", "-5"], "--controller-manager-qps: Input should be greater than 0"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "cluster"
    assert main(["up", "--state-dir", str(state_dir), *flags]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert captured.out == ""
    assert not state_dir.exists()


def test_status_and_down_of_an_empty_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no cluster in" in capsys.readouterr().out
    assert main(["down", "--state-dir", str(tmp_path / "none")]) == 0
    assert "nothing" in capsys.readouterr().err


def test_down_never_deletes_a_directory_it_did_not_create(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert precious.read_text() == "keep me"
