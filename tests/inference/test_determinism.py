"""One query, one vector: a query's vector does not depend on what it is batched with. Each of
64 real queries is encoded alone and inside 20 random batches of 32 other queries, and every
vector of a query must be the same direction as its vector alone: texts (CLDR emoji names and
keywords, one word to a long phrase) on the service's default text runtime and on the static
8-bit one (activation scales fixed at export), and images (OpenMoji drawings) on the image
runtime the default serves."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np
import pytest

from models.data.images import open_image
from models.data.importers.openmoji import render_png, svg_dir
from models.data.keywords import cldr_keywords
from models.inference import Encoder, Runtime
from service.settings import Settings

QUERIES, BATCHES = 64, 20


def real_queries(n: int, seed: int) -> list[str]:
    """`n` distinct CLDR keywords and keyword phrases, short and long alike."""
    words = sorted({w for keywords in cldr_keywords().values() for w in keywords})
    rng = random.Random(seed)
    picked = rng.sample(words, n)
    return [" ".join([w, *rng.sample(words, 5)]) if i % 8 == 0 else w
            for i, w in enumerate(picked)]  # one in eight a long phrase: padding differs


def worst_cosine(encode: Callable[[list], np.ndarray], queries: Sequence[Hashable],
                 others: Sequence[Hashable], seed: int = 2) -> float:
    """The least cosine between a query's vector alone and in a batch: each of BATCHES
    rounds puts every query in one batch with 32 mates (the other half, and one of `others`)."""
    alone = {q: encode([q])[0] for q in queries}
    queries, rng, worst = list(queries), random.Random(seed), 1.0
    for round_ in range(BATCHES):
        rng.shuffle(queries)
        for half, other in zip((queries[:32], queries[32:]), others[2 * round_:], strict=False):
            batch = [*half, other]
            rng.shuffle(batch)
            for query, vector in zip(batch, encode(batch), strict=True):
                if query in alone:
                    worst = min(worst, float(vector @ alone[query]))
    return worst


@pytest.mark.parametrize("runtime", dict.fromkeys(
    [Settings.model_fields["encoder_runtime"].default, "onnx-int8-static"]))
def test_a_text_vector_does_not_depend_on_its_batch(tiny_run: tuple[Path, Path],
                                                    runtime: Runtime) -> None:
    encoder = Encoder.load(tiny_run[1], "cpu", runtime=runtime)
    assert encoder.text_runtime == runtime  # the runtime itself, not a fallback
    worst = worst_cosine(encoder.encode_texts, real_queries(QUERIES, seed=0),
                         real_queries(2 * BATCHES, seed=1))
    assert worst >= 0.99999, f"a query's vector moved with its batch: cosine {worst:.6f}"


def test_an_image_vector_does_not_depend_on_its_batch(tiny_run: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    encoder = Encoder.load(tiny_run[1], "cpu",
                           runtime=Settings.model_fields["encoder_runtime"].default)
    drawings = random.Random(3).sample(sorted(svg_dir().glob("*.svg")), QUERIES + 2 * BATCHES)
    for svg in drawings:
        render_png(svg, tmp_path / f"{svg.stem}.png")
    images = {svg.stem: open_image(tmp_path / f"{svg.stem}.png") for svg in drawings}
    stems = list(images)
    worst = worst_cosine(lambda batch: encoder.encode_images([images[s] for s in batch]),
                         stems[:QUERIES], stems[QUERIES:])
    assert encoder.image_runtime == "onnx"  # the ONNX image graph, not the torch fallback
    assert worst >= 0.99999, f"an image's vector moved with its batch: cosine {worst:.6f}"
