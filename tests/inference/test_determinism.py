"""One query, one vector: a text query's vector does not depend on what it is batched with.
Each of 64 real queries (CLDR emoji names and keywords, one word to a long phrase) is encoded
alone and inside 20 random batches of 32 other queries, on the service's default text runtime
and on the static 8-bit one (activation scales fixed at export), and every vector of a query
must be the same direction as its vector alone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("runtime", dict.fromkeys(
    [Settings.model_fields["encoder_runtime"].default, "onnx-int8-static"]))
def test_a_text_vector_does_not_depend_on_its_batch(tiny_run: tuple[Path, Path],
                                                    runtime: Runtime) -> None:
    encoder = Encoder.load(tiny_run[1], "cpu", runtime=runtime)
    assert encoder.text_runtime == runtime  # the runtime itself, not a fallback
    queries = real_queries(QUERIES, seed=0)
    others = real_queries(2 * BATCHES, seed=1)
    alone = {q: encoder.encode_texts([q])[0] for q in queries}
    rng = random.Random(2)
    worst = 1.0
    for round_ in range(BATCHES):  # each round, every query in one batch with 32 mates
        rng.shuffle(queries)
        for half, other in zip((queries[:32], queries[32:]), others[2 * round_:], strict=False):
            batch = [*half, other]
            rng.shuffle(batch)
            for text, vector in zip(batch, encoder.encode_texts(batch), strict=True):
                if text in alone:
                    worst = min(worst, float(vector @ alone[text]))
    assert worst >= 0.99999, f"a query's vector moved with its batch: cosine {worst:.6f}"
