"""Resumable download and unpacking of SEVIR-LR (prediff.data.download), against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest

from prediff.cli import main
from prediff.data.download import download_file, download_sevir_lr, file_sha256, unpack_sevir_archive
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import EventRecord, write_sevir_tree
from prediff.data.sevir import SevirDataset
from prediff.errors import DataError


class RangeServer:
    """A local HTTP server for one payload, with Range support that can be switched off, and a switch
    that cuts the first ``cuts`` responses after ``cut_at`` bytes."""

    def __init__(self, payload: bytes, supports_range: bool = True, cuts: int = 0, cut_at: int = 0):
        self.payload = payload
        self.supports_range = supports_range
        self.cuts = cuts
        self.cut_at = cut_at
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/datasets/sevir_lr.zip":
                    self.send_error(404)
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                body, status, headers = server.payload, 200, {}
                if requested and server.supports_range:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.payload)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body, status = server.payload[start:], 206
                    headers["Content-Range"] = f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts > 0:
                    server.cuts -= 1
                    self.wfile.write(body[:server.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets/sevir_lr.zip"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def sevir_lr_zip(tmp_path, top_folder: str | None = "sevir_lr") -> bytes:
    """A zip of a tiny SEVIR-LR tree, laid out like the published archive (one top-level folder)."""
    corners = corners_for_center(SEVIR_PROJ, 37.0, -96.0, 96e3, 96e3)
    vil = np.random.default_rng(5).integers(0, 255, (32, 32, 25), dtype=np.uint8)
    tree = write_sevir_tree(tmp_path / "source_tree", [EventRecord(
        id="S1", time_utc=pd.Timestamp("2019-07-01 12:00"), vil=vil, minute_offsets=range(-120, 121, 10),
        llcrnrlat=corners[0], llcrnrlon=corners[1], urcrnrlat=corners[2], urcrnrlon=corners[3], proj=SEVIR_PROJ,
        width_m=96e3, height_m=96e3, event_type="Hail", episode_id=1, event_id=1)], include_id_dataset=False)
    buffer = io.BytesIO()
    prefix = f"{top_folder}/" if top_folder else ""
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                bundle.write(path, prefix + path.relative_to(tree).as_posix())
    return buffer.getvalue()


def test_interrupted_download_resumes_with_range(tmp_path):
    payload = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    target = tmp_path / "dl" / "file.bin"
    with RangeServer(payload, cuts=1, cut_at=120_000) as server:
        with pytest.raises(DataError, match="run the same command again to resume"):
            download_file(server.url, target, retries=0, show_progress=False)
        partial = target.with_name("file.bin.part")
        assert partial.stat().st_size == 120_000 and not target.exists()
        download_file(server.url, target, retries=0, show_progress=False,
                      sha256=hashlib.sha256(payload).hexdigest())
    assert server.ranges == [None, "bytes=120000-"]
    assert target.read_bytes() == payload and not partial.exists()


def test_broken_connection_is_retried_within_one_call(tmp_path):
    payload = bytes(range(256)) * 1000
    with RangeServer(payload, cuts=2, cut_at=50_000) as server:
        path = download_file(server.url, tmp_path / "f.bin", retries=2, show_progress=False)
    assert server.ranges == [None, "bytes=50000-", "bytes=100000-"]
    assert path.read_bytes() == payload


def test_server_without_range_support_restarts(tmp_path):
    payload = b"abcdefgh" * 10_000
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes")
    with RangeServer(payload, supports_range=False) as server:
        path = download_file(server.url, tmp_path / "f.bin", show_progress=False)
    assert server.ranges == ["bytes=11-"]
    assert path.read_bytes() == payload


def test_complete_part_file_is_verified_not_refetched(tmp_path):
    payload = b"0123456789" * 100
    (tmp_path / "f.bin.part").write_bytes(payload)
    with RangeServer(payload) as server:
        path = download_file(server.url, tmp_path / "f.bin", show_progress=False)
    assert path.read_bytes() == payload and server.ranges == ["bytes=1000-"]


def test_wrong_sha256_removes_the_download(tmp_path):
    with RangeServer(b"payload" * 100) as server:
        with pytest.raises(DataError, match="SHA-256 is .* expected 00ff"):
            download_file(server.url, tmp_path / "f.bin", sha256="00ff", show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(tmp_path):
    with RangeServer(b"x") as server:
        with pytest.raises(DataError, match="HTTP 404"):
            download_file(server.url + "/missing", tmp_path / "f", retries=0, show_progress=False)


@pytest.mark.parametrize("top_folder", ["sevir_lr", None])
def test_download_sevir_lr_unpacks_a_readable_tree(tmp_path, top_folder):
    payload = sevir_lr_zip(tmp_path, top_folder)
    root = tmp_path / "data"
    with RangeServer(payload) as server:
        assert download_sevir_lr(root, url=server.url, sha256=hashlib.sha256(payload).hexdigest(),
                                 show_progress=False) == root
    assert sorted(p.name for p in root.iterdir()) == ["CATALOG.csv", "data"]
    dataset = SevirDataset(root)
    assert dataset.event_ids == ["S1"] and dataset.read_event("S1").shape == (25, 32, 32)
    # a complete tree is left alone
    assert download_sevir_lr(root, url="http://127.0.0.1:9/unreachable.zip", show_progress=False) == root


def test_keep_archive(tmp_path):
    payload = sevir_lr_zip(tmp_path)
    with RangeServer(payload) as server:
        download_sevir_lr(tmp_path / "data", url=server.url, keep_archive=True, show_progress=False)
    assert file_sha256(tmp_path / "data" / "sevir_lr.zip") == hashlib.sha256(payload).hexdigest()


def test_corrupt_archive_member_fails_its_crc(tmp_path):
    payload = bytearray(sevir_lr_zip(tmp_path))
    # flip one byte inside the stored (uncompressed) CSV member's data
    offset = payload.index(b"id,file_name,file_index") + 5
    payload[offset] ^= 0xFF
    archive = tmp_path / "bad.zip"
    archive.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="not a valid zip archive.*CRC"):
        unpack_sevir_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "CATALOG.csv").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_archive_without_catalog_and_non_zip(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match="holds no CATALOG.csv"):
        unpack_sevir_archive(archive, tmp_path / "out")
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(DataError, match="not a valid zip archive"):
        unpack_sevir_archive(tmp_path / "text.zip", tmp_path / "out")


def test_download_command(tmp_path, capsys):
    payload = sevir_lr_zip(tmp_path)
    with RangeServer(payload) as server:
        status = main(["data", "download", "sevir-lr", "--out", str(tmp_path / "lr"), "--url", server.url,
                       "--sha256", hashlib.sha256(payload).hexdigest()])
    assert status == 0 and "prediff events --data" in capsys.readouterr().out
    assert SevirDataset(tmp_path / "lr").event_ids == ["S1"]


def test_unpack_refuses_a_folder_with_foreign_data_and_clears_stale_staging(tmp_path):
    archive = tmp_path / "sevir_lr.zip"
    archive.write_bytes(sevir_lr_zip(tmp_path))
    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)
    with pytest.raises(DataError, match="data exists but .* has no CATALOG.csv"):
        unpack_sevir_archive(archive, target)
    with pytest.raises(DataError, match="data exists"):
        download_sevir_lr(target, url="http://127.0.0.1:9/sevir_lr.zip", show_progress=False)
    (target / "data").rmdir()
    (target / ".unpack-killedrun" / "sevir_lr").mkdir(parents=True)
    unpack_sevir_archive(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["CATALOG.csv", "data"]
    with pytest.raises(DataError, match="already holds a dataset"):
        unpack_sevir_archive(archive, target)
