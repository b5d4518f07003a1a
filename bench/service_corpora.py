"""The corpora the service benchmark serves: the OpenMoji index, and a synthetic corpus of
clustered random vectors indexed by the re-index job itself (with the default index type for
its size, and Flat), with the OpenMoji texts as queries. Each synthetic image carries a caption
of three terms drawn from the OpenMoji texts (emoji names and CLDR keywords), so hybrid search
has words and caption vectors to rank it by."""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness import ROOT, measured_apart, mixture
from models.data.corpus import read_corpus

SEPARATOR = "; "  # between a caption's terms (no OpenMoji text holds it)


def texts_of(data: Path) -> list[str]:
    """The OpenMoji texts, each once: emoji names and CLDR keywords."""
    return sorted({item.text for item in read_corpus(data).items})


def queries_of(data: Path, n: int = 500, seed: int = 0) -> list[str]:
    texts = texts_of(data)
    return random.Random(seed).sample(texts, min(n, len(texts)))


def synthetic_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n clustered random unit vectors (`bench.harness.mixture`, 2000 centres). Another seed
    draws other rows of the same mixture (queries that have near neighbours in the corpus)."""
    return mixture(n, dim, centres=2000, spread=0.8, seed=1000 + seed)


def term_vectors(checkpoint: Path, terms: list[str]) -> np.ndarray:
    """Each term through the text encoder (run apart from FAISS: bench.service_bench)."""
    from models.inference import Encoder

    encoder = Encoder.load(checkpoint, "cpu")
    return np.concatenate([encoder.encode_texts(terms[i:i + 256])
                           for i in range(0, len(terms), 256)])


class GivenVectors:
    """An embedding engine for index.build that hands back vectors made beforehand, so the
    synthetic index is built by the re-index job itself: same planning, training and files as
    `xmr index build`, only the vectors are not an encoder's. A caption's vector (the build
    asks for one per captioned image) is the normalised sum of its terms' encoder vectors."""

    def __init__(self, vectors: np.ndarray, checkpoint_id: str,
                 terms: dict[str, np.ndarray]) -> None:
        self.vectors, self.terms = vectors, terms
        self.checkpoint_id = checkpoint_id  # names the space only
        self.dim = int(vectors.shape[1])

    def stream(self, modalities: list[str], payloads: list[str]
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        captions = all(m == "text" for m in modalities)
        assert captions or len(payloads) == len(self.vectors), \
            "a fresh build embeds every planned item"
        for start in range(0, len(payloads), 5000):
            rows = np.arange(start, min(start + 5000, len(payloads)))
            yield rows, (np.stack([self.caption(payloads[r]) for r in rows]) if captions
                         else self.vectors[rows])

    def caption(self, words: str) -> np.ndarray:
        vector = sum(self.terms[term] for term in words.split(SEPARATOR))
        return (vector / np.linalg.norm(vector)).astype(np.float32)


def synthetic_index(path: Path, data: Path, checkpoint_id: str, terms: dict[str, np.ndarray],
                    levels: tuple[str, ...], n: int, spec: str) -> Path:
    """n image items with `synthetic_vectors`, real OpenMoji files as their sources, each
    captioned with three of `terms` (term: its encoder vector), indexed as `spec` ("auto": by
    size, as `xmr index build`). Every spec gets the same items, ids and vectors, so that their
    answers compare id for id."""
    from index.build import build
    from index.catalog import NewItem

    marker = path / f"READY-{checkpoint_id}-{n}-{spec}-captioned-mixture"  # what made it
    if marker.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    corpus = read_corpus(data)
    rows, draw, vocabulary = corpus.items, random.Random(0), sorted(terms)
    items = [NewItem("image", f"b:synthetic-{i}", rows[i % len(rows)].labels,
                     text=SEPARATOR.join(draw.sample(vocabulary, 3)),
                     source=str(corpus.image_path(rows[i % len(rows)]).resolve()))
             for i in range(n)]
    started = time.perf_counter()
    dim = len(next(iter(terms.values())))
    build(path, GivenVectors(synthetic_vectors(n, dim), checkpoint_id, terms), items,
          levels=levels, spec=spec)
    print(f"synthetic index of {n} items ({spec}) in {time.perf_counter() - started:.0f} s",
          flush=True)
    marker.touch()
    return path


def openmoji_index(index: Path, checkpoint: Path, data: Path, cache: Path) -> None:
    """`xmr index build` of the OpenMoji index (features from the cache) unless there is one."""
    from index import layout

    if layout.current(index) is None:
        subprocess.run([sys.executable, "-m", "xmr", "index", "build", "--checkpoint",
                        str(checkpoint), "--data", str(data), "--cache", str(cache), "--out",
                        str(index), "--no-progress"], check=True, cwd=ROOT)


@dataclass(frozen=True)
class Corpus:
    name: str
    index: Path
    index_type: str  # what the table shows
    exact: Path | None = None  # the same items indexed Flat: recall is measured against it


def prepare_corpora(args: argparse.Namespace, ckpt_id: str) -> tuple[list[Corpus], int]:
    """OpenMoji, and the synthetic corpus twice: with the index type `xmr index build` picks
    by default at that size (what a user serving it gets) and Flat (exact search)."""
    from index import layout
    from index.manifest import Manifest
    from index.store import DEFAULT_NPROBE, auto_spec

    openmoji_index(args.index, args.checkpoint, args.data, args.cache)
    live = layout.current(args.index)
    assert live is not None
    manifest = Manifest.read(live)
    dim, levels, n = manifest.dim, manifest.levels, args.synthetic
    words = [text for text in texts_of(args.data) if SEPARATOR not in text]
    terms = dict(zip(words, measured_apart(term_vectors, args.checkpoint, words), strict=True))

    def synthetic(spec: str) -> Path:
        return synthetic_index(args.work / f"synthetic-{n}-{spec}", args.data, ckpt_id, terms,
                               levels, n, spec)

    picked = auto_spec(n, dim)
    probes = f", nprobe {DEFAULT_NPROBE}" if picked.startswith("IVF") else ""
    exact = synthetic("Flat")
    return [Corpus("openmoji", args.index, "default (the demo index)"),
            Corpus(f"synthetic-{n // 1000}k", synthetic("auto"), f"{picked}{probes} (default)",
                   exact=None if picked == "Flat" else exact),
            Corpus(f"synthetic-{n // 1000}k-flat", exact, "Flat (exact)")], dim

