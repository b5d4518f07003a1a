"""Fixtures of the index tests: a Milvus server, for the tests that run on one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from tests.index import milvus_server


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus server for this module (started on first use only). XMR_TEST_MILVUS_URI names
    one that already runs (a real Milvus standalone, without authentication) instead."""
    pytest.importorskip("pymilvus")
    given = os.environ.get("XMR_TEST_MILVUS_URI")
    if given:
        yield given
        return
    if not milvus_server.available():
        pytest.skip("this milvus-lite has no TCP server (`milvus-lite server` is milvus-lite 3)")
    with milvus_server.serve(tmp_path_factory.mktemp("milvus-server") / "data") as uri:
        yield uri


class Server(NamedTuple):
    uri: str
    before: frozenset[str]  # collections that were there before the test

    def new_collections(self) -> set[str]:
        return _server_collections(self.uri) - self.before


@pytest.fixture
def server_env(milvus_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The service's settings for a Milvus server, in the environment; the collections made
    during the test are dropped afterwards (only those), so tests sharing a server stay
    independent and a real server keeps whatever else it holds."""
    from pymilvus import MilvusClient

    monkeypatch.setenv("XMR_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("XMR_MILVUS_URI", milvus_uri)
    server = Server(milvus_uri, frozenset(_server_collections(milvus_uri)))
    yield server
    client = MilvusClient(milvus_uri)
    try:
        for name in set(client.list_collections()) - server.before:
            client.drop_collection(name)
    finally:
        client.close()


def _server_collections(uri: str) -> set[str]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        return set(client.list_collections())
    finally:
        client.close()
