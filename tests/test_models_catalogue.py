"""Catalogue of downloadable official checkpoints: entries, offline failure, cache use and hash checks.

Nothing here touches a real host: the conftest guard refuses every non-loopback URL, and the only URL opened
is a closed port on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
import time
import urllib.parse

import pytest
import torch

import models
from models import catalogue
from models.catalogue import CATALOGUE, CatalogueEntry
from tests.official_format import write_official_pickle
from tests.tiny import fixed_z, make_tiny_model

UNREACHABLE = "http://127.0.0.1:9/x.pkl"  # discard port, nothing listens: connection refused at once


def _entry(filename: str = "x.pkl", sha256: str | None = None) -> CatalogueEntry:
    return CatalogueEntry("testnet", UNREACHABLE, filename, 16, "test domain", "test licence", sha256)


def test_catalogue_entries_are_complete():
    assert {"ffhq", "afhqcat", "afhqdog", "afhqwild", "metfaces", "brecahad"} <= set(CATALOGUE)
    for name, e in CATALOGUE.items():
        assert e.name == name
        url = urllib.parse.urlsplit(e.url)
        assert url.scheme == "https" and url.hostname, e.url
        assert e.url.endswith("/" + e.filename) and e.filename.endswith(".pkl")
        assert e.resolution in (256, 512, 1024)
        assert e.licence.strip() and "non-commercial" in e.licence.lower()
        assert e.domain.strip()
        assert e.sha256 is None or (len(e.sha256) == 64 and int(e.sha256, 16) >= 0)


def test_cache_dir_follows_environment(latentbrush_cache):
    assert catalogue.cache_dir() == latentbrush_cache


def test_unreachable_url_fails_fast_naming_the_target(latentbrush_cache, network_attempts):
    start = time.monotonic()
    with pytest.raises(models.CheckpointError) as info:
        catalogue.fetch(_entry(), timeout=5.0)
    assert time.monotonic() - start < 5.0
    msg = str(info.value)
    assert str(latentbrush_cache / "x.pkl") in msg and UNREACHABLE in msg and "testnet" in msg
    assert network_attempts == [UNREACHABLE]
    assert list(latentbrush_cache.iterdir()) == []  # no partial download left behind


def test_cached_file_is_used_without_network_and_pinned(latentbrush_cache, network_attempts):
    target = latentbrush_cache / "x.pkl"
    target.write_bytes(b"pretend network pickle")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert catalogue.fetch(_entry()) == target
    recorded = latentbrush_cache / "x.pkl.sha256"
    assert recorded.read_text().strip() == digest  # trust on first use
    assert catalogue.fetch(_entry()) == target  # verified against the record
    assert network_attempts == []
    target.write_bytes(b"tampered network pickle")
    with pytest.raises(models.CheckpointError, match="sha256") as info:
        catalogue.fetch(_entry())
    assert digest in str(info.value) and str(target) in str(info.value)
    assert network_attempts == []


def test_published_hash_is_checked(latentbrush_cache):
    target = latentbrush_cache / "x.pkl"
    target.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    assert catalogue.fetch(_entry(sha256=good)) == target
    assert not (latentbrush_cache / "x.pkl.sha256").exists()  # a published hash needs no local record
    with pytest.raises(models.CheckpointError, match="does not match"):
        catalogue.fetch(_entry(sha256="0" * 64))


def test_catalogue_name_loads_from_cache_without_network(latentbrush_cache, network_attempts, monkeypatch):
    # A tiny official-format pickle standing in for ffhq.pkl in the cache: `load_model("ffhq")` must use it.
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(latentbrush_cache / "no-bundled-models"))
    src = make_tiny_model(resolution=16, seed=2)
    write_official_pickle(latentbrush_cache / CATALOGUE["ffhq"].filename, src.G, src.D, config=src.config)
    loaded = models.load_model("ffhq")
    assert models.model_file("ffhq") == latentbrush_cache / CATALOGUE["ffhq"].filename
    assert network_attempts == []
    assert loaded.config.name == "ffhq"
    assert loaded.config.licence == CATALOGUE["ffhq"].licence
    assert loaded.config.domain == CATALOGUE["ffhq"].domain
    z = fixed_z(src, 2)
    assert torch.equal(loaded.G(z), src.G(z))
    assert (latentbrush_cache / "ffhq.pkl.sha256").is_file()


def test_catalogue_name_offline_without_cache_fails_cleanly(latentbrush_cache, network_attempts, monkeypatch):
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(latentbrush_cache / "no-bundled-models"))
    with pytest.raises(models.CheckpointError, match="afhqcat") as info:
        models.load_model("afhqcat")
    assert str(latentbrush_cache / "afhqcat.pkl") in str(info.value)
    assert network_attempts == [CATALOGUE["afhqcat"].url]  # tried once, refused by the test guard


# ------------------------------------------------------------------------------------- downloads from loopback


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, int | None]] = {}  # path -> (status, body, advertised length)

    def do_GET(self):  # noqa: N802 - http.server API
        status, body, length = self.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server():
    """A throwaway HTTP server on 127.0.0.1 (ephemeral port); `routes` maps paths to responses."""
    _Handler.routes = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_into_cache_then_load(latentbrush_cache, loopback_server, tmp_path):
    base, routes = loopback_server
    src = make_tiny_model(resolution=16, seed=4)
    body = write_official_pickle(tmp_path / "served.pkl", src.G, src.D).read_bytes()
    routes["/net.pkl"] = (200, body, None)
    entry = CatalogueEntry("served", base + "/net.pkl", "net.pkl", 16, "test", "test")
    path = catalogue.fetch(entry)
    assert path == latentbrush_cache / "net.pkl" and path.read_bytes() == body
    assert (latentbrush_cache / "net.pkl.sha256").read_text().strip() == hashlib.sha256(body).hexdigest()
    assert not (latentbrush_cache / "net.pkl.part").exists()
    routes.clear()  # a second fetch must come from the cache
    assert catalogue.fetch(entry) == path
    config, G, _ = models.official_pickle.load_official_pickle(path)
    z = fixed_z(src, 2)
    assert torch.equal(G(z), src.G(z))


def test_http_error_leaves_nothing_behind(latentbrush_cache, loopback_server):
    base, _ = loopback_server
    entry = CatalogueEntry("gone", base + "/missing.pkl", "missing.pkl", 16, "test", "test")
    with pytest.raises(models.CheckpointError, match="404") as info:
        catalogue.fetch(entry)
    assert str(latentbrush_cache / "missing.pkl") in str(info.value)
    assert list(latentbrush_cache.iterdir()) == []


def test_truncated_download_is_rejected(latentbrush_cache, loopback_server):
    # The server promises 100 000 bytes and hangs up after 10: the file must not be cached (or trusted).
    base, routes = loopback_server
    routes["/cut.pkl"] = (200, b"0123456789", 100_000)
    entry = CatalogueEntry("cut", base + "/cut.pkl", "cut.pkl", 16, "test", "test")
    with pytest.raises(models.CheckpointError, match="cut"):
        catalogue.fetch(entry, timeout=5.0)
    assert list(latentbrush_cache.iterdir()) == []
