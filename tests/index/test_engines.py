"""The Ray engine against the local engine: the same rows in, the same vectors out, and through
`xmr index build`, the same ids, records and vectors in the index.

Everything that starts Ray is `-m slow` (Ray's start-up alone takes seconds). The build-level
test runs a real local Ray instance with an actor pool of 2 on the index tests' deterministic
HashEmbedder (no torch), so it checks the plumbing (batching, mixed modalities, out-of-order
batches, unreadable images) through `index.build`; the others run both engines with a real
checkpoint and encoder (the tiny run every test session trains). The default suite checks the
local engine and the command-line wiring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.build import build
from index.cli import corpus_items
from index.database import DATABASE, ItemDatabase
from index.engines import LocalEngine, embed_rows
from index.ray_engine import RayEngine
from index.records import MODALITIES
from models.embedder import EncoderSpec
from tests.fixtures import tiny_cache
from tests.index.helpers import HashEmbedder, HashSpec, hash_engine, make_corpus

DIM = 16


def rows(n: int) -> tuple[list[str], list[str]]:
    modalities = ["text"] * n
    return modalities, [f"caption {i}" for i in range(n)]


def test_local_engine_keeps_row_order() -> None:
    modalities, payloads = rows(50)
    out = embed_rows(LocalEngine(HashSpec(DIM), batch_size=7), modalities, payloads, DIM)
    assert np.array_equal(out, HashEmbedder(DIM).encode_texts(payloads))


def test_rows_are_validated() -> None:
    with pytest.raises(ValueError, match="modalities"):
        embed_rows(LocalEngine(HashSpec(DIM)), ["text"], [], DIM)


def test_cli_engine_flags_build_the_engine_without_starting_ray(tmp_path: Path) -> None:
    from index.cli import _engine
    from xmr.cli import build_parser

    base = ["index", "build", "--checkpoint", str(tmp_path / "c.pt"), "--data", "d", "--out", "o"]
    parse = build_parser().parse_args
    engine = _engine(parse([*base, "--engine", "ray", "--address", "auto", "--workers", "3",
                            "--batch-size", "32"]), "cpu")
    assert isinstance(engine, RayEngine)
    assert engine == RayEngine(EncoderSpec((tmp_path / "c.pt").resolve()), address="auto",
                               workers=3, batch_size=32)
    with pytest.raises(SystemExit, match="need --engine ray"):
        _engine(parse([*base, "--address", "auto"]), "cpu")
    with pytest.raises(SystemExit):
        parse([*base, "--engine", "spark"])


def index_contents(root: Path) -> dict[str, tuple[list, np.ndarray]]:
    """Per modality: the records (id, hash, labels, text, source) and vectors, by id."""
    generation = sorted(p for p in root.iterdir() if p.name.startswith("gen-"))[-1]
    meta = ItemDatabase(generation / DATABASE)
    try:
        out = {}
        for modality in MODALITIES:
            ids, vectors = meta.all_vectors(modality, DIM)
            records = meta.get_many(ids.tolist())
            out[modality] = ([(i, records[i].content_hash, records[i].labels, records[i].text,
                               records[i].source) for i in ids.tolist()], vectors)
        return out
    finally:
        meta.close()


@pytest.mark.slow
def test_build_with_the_ray_engine_writes_the_same_index(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    corpus = make_corpus(tmp_path / "corpus", n=40)
    (corpus / "images" / "3.png").write_bytes(b"not a png")  # unreadable: left out by both
    planned, levels = corpus_items(corpus)
    local = build(tmp_path / "local", hash_engine(HashEmbedder(DIM), batch_size=8), planned,
                  levels=levels)
    ray_engine = RayEngine(HashSpec(DIM), workers=2, batch_size=8)
    remote = build(tmp_path / "ray", ray_engine, planned, levels=levels)
    assert remote.counts == local.counts == {"image": 9, "text": 40}
    assert remote.skipped == local.skipped == [str((corpus / "images/3.png").resolve())]
    a, b = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    for modality in MODALITIES:
        assert a[modality][0] == b[modality][0]  # ids and records
        assert np.array_equal(a[modality][1], b[modality][1])  # same function: bit-identical


@pytest.mark.slow
def test_ray_engine_streams_mixed_batches_in_row_order() -> None:
    modalities = ["text" if i % 3 else "image" for i in range(300)]
    payloads = [f"caption {i}" if m == "text" else "/nonexistent.png"
                for i, m in enumerate(modalities)]
    local = embed_rows(LocalEngine(HashSpec(DIM), batch_size=32), modalities, payloads, DIM)
    remote = embed_rows(RayEngine(HashSpec(DIM), workers=2, batch_size=32), modalities, payloads,
                        DIM)
    assert np.array_equal(local, remote, equal_nan=True)
    assert np.isnan(remote[0]).all() and np.isfinite(remote[1]).all()


@pytest.mark.slow
def test_ray_engine_with_a_real_encoder_matches_local(tiny_run: tuple[Path, Path]) -> None:
    from models.data.corpus import read_corpus

    corpus_dir, checkpoint = tiny_run
    corpus = read_corpus(corpus_dir)
    items = list(corpus.items)
    modalities = ["text"] * len(items) + ["image"] * len(items)
    payloads = [i.text for i in items] + [str(corpus.image_path(i)) for i in items]
    for spec in (EncoderSpec(checkpoint), EncoderSpec(checkpoint, tiny_cache(checkpoint))):
        dim = spec.build().dim
        local = embed_rows(LocalEngine(spec), modalities, payloads, dim)
        remote = embed_rows(RayEngine(spec, workers=2, batch_size=8), modalities, payloads, dim)
        np.testing.assert_allclose(remote, local, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(local, axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_xmr_index_build_engine_ray_matches_local(tmp_path: Path,
                                                  tiny_run: tuple[Path, Path]) -> None:
    from models.inference import Encoder
    from xmr.cli import main

    corpus, checkpoint = tiny_run
    dim = Encoder.load(checkpoint).dim
    out = {}
    for engine in ("local", "ray"):
        extra = ["--engine", "ray", "--workers", "2"] if engine == "ray" else []
        assert main(["index", "build", "--checkpoint", str(checkpoint), "--data", str(corpus),
                     "--out", str(tmp_path / engine), "--no-progress", *extra]) == 0
        generation = sorted((tmp_path / engine).glob("gen-*"))[-1]
        meta = ItemDatabase(generation / DATABASE)
        out[engine] = {m: meta.all_vectors(m, dim) for m in MODALITIES}
        meta.close()
    for modality in MODALITIES:
        assert np.array_equal(out["local"][modality][0], out["ray"][modality][0])
        np.testing.assert_allclose(out["ray"][modality][1], out["local"][modality][1],
                                   atol=1e-5, rtol=0)


def test_cli_reads_its_settings_once_and_refuses_bad_ones(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from index.cli import _settings
    from xmr.cli import build_parser

    base = ["index", "build", "--checkpoint", "c.pt", "--data", "d", "--out", "o"]
    parse = build_parser().parse_args
    monkeypatch.setenv("XMR_DEVICE", "cpu")
    monkeypatch.setenv("XMR_VECTOR_BACKEND", "milvus")
    settings = _settings(parse(base))
    assert settings.device == "cpu" and settings.backend().backend == "milvus"
    assert _settings(parse([*base, "--device", "cuda:0"])).device == "cuda:0"  # the flag wins
    with pytest.raises(SystemExit, match="device"):
        _settings(parse([*base, "--device", "gpu"]))
