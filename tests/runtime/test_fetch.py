"""The init container: `python -m modeldeploy_runtime fetch` against a real local HTTP server and files."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import posixpath
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_operator.manifests.model_source import plan_model_delivery
from modeldeploy_runtime.fetch import target_name

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _ModelStore(http.server.BaseHTTPRequestHandler):
    """/model.pt serves the payload; /flaky/ fails twice first; /stall/ never sends a body; /trickle/ sends a
    byte every 0.2 s; /cut/ ends its chunked body mid-chunk; else 404."""

    failures_left = 2

    def do_GET(self) -> None:
        if self.path == "/flaky/model.pt" and _ModelStore.failures_left > 0:
            _ModelStore.failures_left -= 1
            self.send_error(503)
            return
        if self.path == "/stall/model.pt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            time.sleep(5)
            return
        if self.path == "/trickle/model.pt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for byte in PAYLOAD[:100]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
            return
        if self.path == "/cut/model.pt":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(PAYLOAD) + PAYLOAD[:1000])
            return
        if self.path not in ("/model.pt", "/flaky/model.pt"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelStore)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "modeldeploy_runtime", "fetch", "--termination-log", str(tmp_path / "term")]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_http_download_verified_and_atomic(store: str, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    result = fetch(tmp_path, "--uri", f"{store}/model.pt", "--dest", str(dest), "--sha256", DIGEST)
    assert result.returncode == 0, result.stderr
    assert (dest / "model.pt").read_bytes() == PAYLOAD
    assert [path.name for path in dest.iterdir()] == ["model.pt"]  # no temp file left behind
    assert "fetched 3.0 of 3.0 MiB (100%)" in result.stderr


def test_settings_from_environment_and_file_uri(tmp_path: Path) -> None:
    source = tmp_path / "source" / "weights.pt"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    env = {
        "MODELDEPLOY_MODEL_URI": source.as_uri(),
        "MODELDEPLOY_MODEL_DEST": str(tmp_path / "dest"),
        "MODELDEPLOY_MODEL_SHA256": DIGEST.upper(),
    }
    result = fetch(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dest" / "weights.pt").read_bytes() == PAYLOAD
    again = fetch(tmp_path, env=env)
    assert "already present with the expected sha256" in again.stderr


def test_checksum_mismatch_exits_5(store: str, tmp_path: Path) -> None:
    wrong = "0" * 64
    result = fetch(tmp_path, "--uri", f"{store}/model.pt", "--dest", str(tmp_path / "d"), "--sha256", wrong)
    assert result.returncode == 5
    assert (tmp_path / "term").read_text() == f"ChecksumMismatch: expected {wrong}, got {DIGEST}"
    assert list((tmp_path / "d").iterdir()) == []


def test_not_found_fails_at_once_with_exit_4(store: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = fetch(tmp_path, "--uri", f"{store}/missing.pt", "--dest", str(tmp_path / "d"), "--backoff-s", "5")
    assert result.returncode == 4
    assert time.monotonic() - started < 30  # no retries for a 404
    assert (tmp_path / "term").read_text() == f"FetchFailed: {store}/missing.pt: HTTP 404 Not Found"


def test_transient_failures_are_retried(store: str, tmp_path: Path) -> None:
    result = fetch(tmp_path, "--uri", f"{store}/flaky/model.pt", "--dest", str(tmp_path / "d"), "--backoff-s", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("retrying in") == 2


def test_a_stalled_server_times_out_instead_of_hanging(store: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = fetch(
        tmp_path, "--uri", f"{store}/stall/model.pt", "--dest", str(tmp_path / "d"),
        "--timeout-s", "0.5", "--attempts", "2", "--backoff-s", "0",
    )  # fmt: skip
    assert result.returncode == 4
    assert time.monotonic() - started < 30
    assert "failed after 2 attempts" in (tmp_path / "term").read_text()


def test_a_trickling_server_is_cut_off_at_the_deadline(store: str, tmp_path: Path) -> None:
    # Each byte comes well within the read timeout; only the attempt's deadline can end the download.
    result = fetch(
        tmp_path, "--uri", f"{store}/trickle/model.pt", "--dest", str(tmp_path / "d"),
        "--timeout-s", "5", "--deadline-s", "1", "--attempts", "1",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "longer than the deadline of 1s" in (tmp_path / "term").read_text()
    assert list((tmp_path / "d").iterdir()) == []


def test_a_model_over_its_download_limit_fails_at_once(store: str, tmp_path: Path) -> None:
    result = fetch(tmp_path, "--uri", f"{store}/model.pt", "--dest", str(tmp_path / "d"), "--max-bytes", "1000000")
    assert result.returncode == 4, result.stderr
    assert "retrying in" not in result.stderr
    assert (
        f"the model is larger than its download limit ({len(PAYLOAD)} > 1000000 bytes)"
        in (tmp_path / "term").read_text()
    )
    assert list((tmp_path / "d").iterdir()) == []


def test_a_chunked_body_cut_short_is_retried_then_fails_with_exit_4(store: str, tmp_path: Path) -> None:
    result = fetch(
        tmp_path, "--uri", f"{store}/cut/model.pt", "--dest", str(tmp_path / "d"), "--attempts", "2", "--backoff-s", "0"
    )
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("retrying in") == 1
    assert "IncompleteRead" in (tmp_path / "term").read_text()
    assert list((tmp_path / "d").iterdir()) == []


def test_an_unusable_url_fails_at_once_with_exit_4(tmp_path: Path) -> None:
    result = fetch(tmp_path, "--uri", "http://127.0.0.1:port/model.pt", "--dest", str(tmp_path / "d"))
    assert result.returncode == 4, result.stderr
    assert "retrying in" not in result.stderr
    assert (tmp_path / "term").read_text().startswith("FetchFailed: http://127.0.0.1:port/model.pt: ")


def test_bad_uri_is_a_settings_error(tmp_path: Path) -> None:
    result = fetch(tmp_path, "--uri", "ftp://host/model.pt", "--dest", str(tmp_path))
    assert result.returncode == 2
    assert "invalid setting --uri / MODELDEPLOY_MODEL_URI (got 'ftp://host/model.pt')" in result.stderr


@pytest.mark.parametrize(
    "uri",
    [
        "https://models.example.com/v1/iris.pt",
        "https://models.example.com/my%20model.pt",
        "https://models.example.com/model.pt;v=2",
        "https://models.example.com/model.pt?X-Amz-Signature=abc&x=%2F",
    ],
)
def test_fetch_writes_the_file_the_operator_points_the_server_at(uri: str) -> None:
    assert target_name(uri) == posixpath.basename(plan_model_delivery(uri, "20Gi").model_path)


def _tar(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    """Writes a .tar.gz of (name, file bytes or None for a folder, symlink target or None)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize("top", ["tiny-llm/", "./", ""])
def test_an_archive_unpacks_to_the_directory_the_operator_points_the_server_at(tmp_path: Path, top: str) -> None:
    entries = [("tiny-llm", None, None)] if top == "tiny-llm/" else []
    entries += [(f"{top}config.json", b"{}", None), (f"{top}weights/model.safetensors", b"w" * 100, None)]
    archive = _tar(tmp_path / "tiny-llm.tar.gz", entries)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = fetch(tmp_path, "--uri", archive.as_uri(), "--dest", str(tmp_path / "dest"), "--sha256", digest)
    assert result.returncode == 0, result.stderr
    served = (
        tmp_path / "dest" / posixpath.basename(plan_model_delivery(f"https://h/m/{archive.name}", "20Gi").model_path)
    )
    assert (served / "config.json").read_bytes() == b"{}"
    assert (served / "weights" / "model.safetensors").read_bytes() == b"w" * 100
    assert [path.name for path in (tmp_path / "dest").iterdir()] == ["tiny-llm"], "the archive is removed"
    again = fetch(tmp_path, "--uri", archive.as_uri(), "--dest", str(tmp_path / "dest"), "--sha256", digest)
    assert "is already unpacked" in again.stderr


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("../escape.txt", b"x", None)], "outside the destination"),
        ([("/etc/cron.d/evil", b"x", None)], "absolute"),
        ([("model/config.json", b"{}", None), ("model/link", None, "/etc/passwd")], "absolute"),
        ([("model/link", None, "../../outside")], "outside the destination"),
    ],
)
def test_an_archive_that_reaches_out_of_its_directory_is_refused(
    tmp_path: Path, entries: list[tuple[str, bytes | None, str | None]], reason: str
) -> None:
    archive = _tar(tmp_path / "model.tar.gz", entries)
    result = fetch(tmp_path, "--uri", archive.as_uri(), "--dest", str(tmp_path / "dest"))
    assert result.returncode == 4, result.stderr
    assert (tmp_path / "term").read_text().startswith("FetchFailed: model.tar.gz: refused entry")
    assert reason in (tmp_path / "term").read_text()
    assert not (tmp_path / "dest" / "model").exists() and not (tmp_path / "escape.txt").exists()


def test_an_archive_larger_than_the_bound_is_refused_before_it_is_written(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "model.tar", [("config.json", b"{}" * 100, None)])
    result = fetch(tmp_path, "--uri", archive.as_uri(), "--dest", str(tmp_path / "dest"), "--max-unpacked-bytes", "64")
    assert result.returncode == 4
    assert "unpacks to more than 64 bytes" in (tmp_path / "term").read_text()
    assert sorted(path.name for path in (tmp_path / "dest").iterdir()) == ["model.tar"]
