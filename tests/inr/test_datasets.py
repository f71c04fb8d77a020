"""The Kodak loader: local directory with checks; the download path verified with a local server."""

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from torch_sinr import SINRInputError
from torch_sinr.inr.datasets import KODAK_SHA256, download_kodak, kodak_paths


def test_shared_kodak_is_complete_and_verified(shared_data):
    paths = kodak_paths(shared_data / "kodak", verify=True)
    assert len(paths) == 24 and paths[0].name == "kodim01.png"


def test_missing_directory_and_images(tmp_path):
    with pytest.raises(SINRInputError, match="does not exist"):
        kodak_paths(tmp_path / "nope")
    with pytest.raises(SINRInputError, match="lacks 24"):
        kodak_paths(tmp_path)


def test_download_verifies_checksums(shared_data, tmp_path):
    source = tmp_path / "server"
    shutil.copytree(shared_data / "kodak", source)
    (source / "kodim05.png").write_bytes(b"tampered")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{{name}}"
    try:
        with pytest.raises(SINRInputError, match="kodim05.png does not match"):
            download_kodak(tmp_path / "dest", url=url)
        assert not (tmp_path / "dest" / "kodim05.png").exists()
        shutil.copy(shared_data / "kodak" / "kodim05.png", source / "kodim05.png")
        paths = download_kodak(tmp_path / "dest", url=url)
    finally:
        server.shutdown()
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == KODAK_SHA256[p.name] for p in paths)
