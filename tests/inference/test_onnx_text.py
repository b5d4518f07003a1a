"""The text query path on ONNX Runtime (models.onnx_text) against the torch path, on the tiny
checkpoint the test session trains: the same vectors, a cache rebuilt for a changed checkpoint
and reused for the same one, and torch kept where ONNX cannot run."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.inference import QUANT, Encoder, Runtime
from models.onnx_graphs import REFERENCE
from models.onnx_text import onnx_path
from tests.conftest import copy_run

TEXTS = ["a", "grinning face", "a red apple on a wooden kitchen table beside a knife",
         "the quick brown fox jumps over the lazy dog " * 6, "Ölgemälde, 油画", "?"]


@pytest.fixture
def checkpoint(tiny_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint, so a test that changes the checkpoint or its export
    makes its own export beside it."""
    return Path(shutil.copy(tiny_run[1], tmp_path / "checkpoint.pt"))


@pytest.fixture(scope="module")
def shared(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny checkpoint with its graphs, for the tests that only read them."""
    return copy_run(tiny_exported[1], tmp_path_factory.mktemp("onnx"))


def graph_tag(path: Path) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return props["xmr_text_graph"]


def test_onnx_equals_torch_over_batch_sizes_and_lengths(shared: Path) -> None:
    on_torch = Encoder.load(shared, "cpu")
    on_onnx = Encoder.load(shared, "cpu", runtime="onnx")
    assert (on_torch.text_runtime, on_onnx.text_runtime) == ("torch", "onnx")
    assert on_onnx.dim == on_torch.dim
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 32):
        texts = [TEXTS[i] for i in rng.integers(0, len(TEXTS), size)]
        want, got = on_torch.encode_texts(texts), on_onnx.encode_texts(texts)
        assert got.shape == want.shape == (size, on_torch.dim) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-4, size
    assert on_onnx.encode_texts([]).shape == (0, on_onnx.dim)


def test_texts_run_with_mates_of_their_own_token_length_unpadded(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = Encoder.load(shared, "cpu", runtime="onnx")
    session, masks = encoder.onnx_text.session, []

    def run(names: object, feeds: dict[str, np.ndarray]) -> object:
        masks.append(feeds["attention_mask"])
        return session.run(names, feeds)

    monkeypatch.setattr(encoder.onnx_text, "session", SimpleNamespace(run=run))
    texts = [TEXTS[i] for i in (1, 2, 0, 1, 3, 5, 2)]
    got = encoder.encode_texts(texts)
    assert len(masks) == len({len(encoder.onnx_text.minilm.inputs([t])[0][0]) for t in texts})
    assert all(mask.all() for mask in masks) and sum(len(mask) for mask in masks) == len(texts)
    monkeypatch.undo()
    for text, vector in zip(texts, got, strict=True):
        np.testing.assert_allclose(vector, encoder.encode_texts([text])[0], atol=1e-6)


def test_changed_checkpoint_rebuilds_the_export(checkpoint: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    first = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert graph_tag(onnx_path(checkpoint)).startswith(first.checkpoint_id)
    before = first.encode_texts(TEXTS)

    caplog.set_level(logging.INFO, logger="models.onnx_text")
    again = Encoder.load(checkpoint, "cpu", runtime="onnx")  # same checkpoint: cache reused
    assert "exporting" not in caplog.text
    np.testing.assert_array_equal(again.encode_texts(TEXTS), before)

    saved = load_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(1)
    weights = {name: value + torch.randn(value.shape, generator=generator)
               if value.is_floating_point() else value
               for name, value in saved.state_dict.items()}
    save_checkpoint(checkpoint, replace(saved, state_dict=weights))
    changed = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert "exporting" in caplog.text and changed.text_runtime == "onnx"
    assert changed.checkpoint_id != first.checkpoint_id
    assert graph_tag(onnx_path(checkpoint)).startswith(changed.checkpoint_id)
    after = changed.encode_texts(TEXTS)
    assert np.abs(after - before).max() > 1e-2  # the new weights, not the stale export
    assert np.abs(after - Encoder.load(checkpoint, "cpu").encode_texts(TEXTS)).max() <= 1e-4


def test_a_cached_graph_runs_without_the_torch_text_model(shared: Path) -> None:
    """Another process loads the cached graph and checks it against the torch output kept in it
    at export: neither sentence-transformers nor transformers is imported (MiniLM's tokenizer
    runs alone, its weights are never loaded), and the vectors are the exporting process's."""
    want = Encoder.load(shared, "cpu", runtime="onnx").encode_texts(TEXTS)
    script = ("import json, sys; from models.inference import Encoder; "
              "e = Encoder.load(sys.argv[1], 'cpu', runtime='onnx'); "
              "got = e.encode_texts(json.loads(sys.argv[2])).tolist(); "
              "print(json.dumps([e.text_runtime, sorted({'sentence_transformers', "
              "'transformers'} & set(sys.modules)), got]))")
    done = subprocess.run([sys.executable, "-c", script, str(shared), json.dumps(TEXTS)],
                          capture_output=True, text=True, timeout=300, check=True)
    runtime, imported, got = json.loads(done.stdout.splitlines()[-1])
    assert (runtime, imported) == ("onnx", [])
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), want)


def test_a_graph_that_disagrees_with_its_kept_output_is_not_served(
        shared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import onnx

    checkpoint = Path(shutil.copy(shared, tmp_path / "checkpoint.pt"))
    graph = onnx.load(str(onnx_path(shared)))  # copied beside it with a wrong kept output
    kept = {p.key: p.value for p in graph.metadata_props}
    wrong = np.roll(np.asarray(json.loads(kept[REFERENCE])), 1, axis=1)
    onnx.helper.set_model_props(graph, {**kept, REFERENCE: json.dumps(wrong.tolist())})
    onnx.save(graph, str(onnx_path(checkpoint)))
    encoder = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert encoder.text_runtime == "torch" and "differs from torch" in caplog.text


def test_unreadable_cache_is_exported_again(checkpoint: Path) -> None:
    onnx_path(checkpoint).write_bytes(b"not an onnx graph")
    encoder = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert encoder.text_runtime == "onnx"
    assert graph_tag(onnx_path(checkpoint)).startswith(encoder.checkpoint_id)


def test_without_onnxruntime_text_queries_stay_on_torch(
        checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    encoder = Encoder.load(checkpoint, "cpu", runtime="onnx")
    assert encoder.text_runtime == "torch"
    assert "text queries run on torch" in caplog.text
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS),
                                  Encoder.load(checkpoint, "cpu").encode_texts(TEXTS))


def eight_bit_texts(checkpoint: Path, runtime: Runtime) -> np.ndarray:
    """TEXTS on an 8-bit runtime: its graph cached beside the float one for this checkpoint and
    smaller (8-bit matrices; the token embedding table, a third of the graph, stays float), its
    vectors close to torch's in direction but not the float graph's numbers."""
    on_torch = Encoder.load(checkpoint, "cpu")
    on_8_bits = Encoder.load(checkpoint, "cpu", runtime=runtime)
    assert on_8_bits.text_runtime == runtime
    graph = onnx_path(checkpoint, QUANT[runtime])
    assert graph_tag(graph).startswith(on_8_bits.checkpoint_id)
    assert graph.stat().st_size < 0.75 * onnx_path(checkpoint).stat().st_size
    want, got = on_torch.encode_texts(TEXTS), on_8_bits.encode_texts(TEXTS)
    assert got.shape == want.shape and got.dtype == np.float32
    assert (got * want).sum(1).min() >= 0.9
    assert np.abs(got - want).max() > 1e-4
    return got


def test_int8_is_close_to_torch_and_cached_beside_the_float_graph(
        shared: Path, caplog: pytest.LogCaptureFixture) -> None:
    got = eight_bit_texts(shared, "onnx-int8")
    caplog.set_level(logging.INFO, logger="models.onnx_text")
    again = Encoder.load(shared, "cpu", runtime="onnx-int8")  # both graphs reused
    assert "exporting" not in caplog.text and "quantising" not in caplog.text
    np.testing.assert_array_equal(again.encode_texts(TEXTS), got)


def test_eval_embeds_the_texts_with_the_runtime_asked_for(
        tiny_run: tuple[Path, Path], shared: Path, tmp_path: Path) -> None:
    from tests.fixtures import tiny_cache
    from xmr.cli import main

    reports = {}
    for runtime in ("torch", "onnx", "onnx-int8", "onnx-int8-static"):
        out = tmp_path / f"{runtime}.json"
        assert main(["eval", "--checkpoint", str(shared), "--data", str(tiny_run[0]),
                     "--json", str(out), "--cache", str(tiny_cache(tiny_run[1])),
                     "--device", "cpu", "--runtime", runtime]) == 0
        reports[runtime] = json.loads(out.read_text())
        assert reports[runtime]["runtime"] == runtime
    assert reports["onnx"]["avg_map"] == pytest.approx(reports["torch"]["avg_map"], abs=1e-6)
    assert 0 < reports["onnx-int8"]["avg_map"] <= 1
    assert 0 < reports["onnx-int8-static"]["avg_map"] <= 1


def test_loads_started_together_on_a_new_checkpoint_export_it_once(
        checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What `xmr serve --workers N` does at its first start: each process loads the encoder.
    Two threads stand for two processes (the lock is an flock, which two open files of one
    process contend for as two processes do)."""
    caplog.set_level(logging.INFO, logger="models.onnx_text")
    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(lambda _: Encoder.load(checkpoint, "cpu", runtime="onnx"),
                               range(2)))
    assert [e.text_runtime for e in loaded] == ["onnx", "onnx"]
    assert caplog.text.count("exporting the text graph") == 1, caplog.text
    np.testing.assert_array_equal(loaded[0].encode_texts(TEXTS), loaded[1].encode_texts(TEXTS))
