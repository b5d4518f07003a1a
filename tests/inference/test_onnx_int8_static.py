"""The static 8-bit text graph (`onnx-int8-static`, models.onnx_quant) on the tiny checkpoint
the test session trains: close to torch, only the encoder's weight MatMuls reading 8-bit values,
cached beside the float graph and made again with it, and chosen by the service's setting.
Its batch independence is tests/inference/test_determinism.py's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from models import onnx_text
from models.data.keywords import cldr_keywords, cldr_names
from models.inference import Encoder
from models.onnx_quant import CALIBRATION_TEXTS, calibration_texts, weight_matmuls
from models.onnx_text import ENCODER, onnx_path
from service.lifecycle import load_encoder
from service.settings import Settings
from tests.conftest import copy_run
from tests.inference.test_onnx_text import TEXTS, eight_bit_texts, graph_tag


@pytest.fixture(scope="module")
def shared(tiny_exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny checkpoint with its graphs, for the tests that only read them."""
    return copy_run(tiny_exported[1], tmp_path_factory.mktemp("int8s"))


def test_calibration_texts_are_a_fixed_sample_of_short_real_queries() -> None:
    texts = calibration_texts()
    assert texts == calibration_texts() and len(set(texts)) == len(texts) == CALIBRATION_TEXTS
    names = set(cldr_names().values())
    keywords = {word for words in cldr_keywords().values() for word in words}
    assert set(texts) <= names | keywords
    assert set(texts) & (names - keywords) and set(texts) & (keywords - names)  # both kinds


def test_static_is_close_to_torch_cached_and_reused(shared: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    got = eight_bit_texts(shared, "onnx-int8-static")  # made: see the test of a new float graph
    path = onnx_path(shared, "static")
    assert path.name == "checkpoint.text.int8s.onnx"
    assert graph_tag(path) == onnx_text.quant_tag(graph_tag(onnx_path(shared)), "static")

    caplog.set_level(logging.INFO, logger="models.onnx_text")
    again = Encoder.load(shared, "cpu", runtime="onnx-int8-static")  # both graphs reused
    assert "exporting" not in caplog.text and "quantising" not in caplog.text
    np.testing.assert_array_equal(again.encode_texts(TEXTS), got)


def test_only_the_encoders_weight_matmuls_read_8_bit_values(shared: Path) -> None:
    """Residual adds, LayerNorm, attention scores and softmax, pooling and the head read
    float tensors: only MiniLM's projections take quantised inputs and weights."""
    import onnx

    Encoder.load(shared, "cpu", runtime="onnx-int8-static")
    float_graph = onnx.load(str(onnx_path(shared)))
    static = onnx.load(str(onnx_path(shared, "static")))
    made_by = {output: node for node in static.graph.node for output in node.output}
    readers = {}  # node name -> what kinds of node made its inputs
    for node in static.graph.node:
        readers[node.name] = (node, {made_by[i].op_type for i in node.input if i in made_by})
    eight_bit = {name for name, (node, kinds) in readers.items()
                 if "DequantizeLinear" in kinds and node.op_type != "QuantizeLinear"}
    projections = set(weight_matmuls(float_graph, ENCODER))
    assert len(projections) == 36  # 6 layers x (query, key, value, output, 2 feed-forward)
    assert eight_bit == projections
    weights = {tensor.name for tensor in static.graph.initializer}
    quantised_inputs = [node for node in static.graph.node if node.op_type == "QuantizeLinear"
                        and node.input[0] not in weights]
    assert len(quantised_inputs) == 24  # one per distinct projection input: q, k, v share one
    assert {node.op_type for node in static.graph.node} >= {"Softmax", "Gemm"}


def test_a_new_float_graph_makes_the_static_copy_again(
        shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    first = Encoder.load(shared, "cpu", runtime="onnx-int8-static").encode_texts(TEXTS)
    checkpoint = copy_run(shared, tmp_path)  # its graphs reused: only the export below is new
    old_tag = graph_tag(onnx_path(checkpoint, "static"))
    monkeypatch.setattr(onnx_text, "EXPORT_VERSION", "a later export")
    caplog.set_level(logging.INFO, logger="models.onnx_text")
    again = Encoder.load(checkpoint, "cpu", runtime="onnx-int8-static")
    assert "exporting" in caplog.text and "quantising" in caplog.text
    new_tag = graph_tag(onnx_path(checkpoint, "static"))
    assert new_tag != old_tag and "a later export" in new_tag
    assert graph_tag(onnx_path(checkpoint)) in new_tag
    np.testing.assert_array_equal(again.encode_texts(TEXTS), first)  # same weights, same recipe


def test_the_setting_selects_it(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMR_ENCODER_RUNTIME", "onnx-int8-static")
    monkeypatch.setenv("XMR_DEVICE", "cpu")  # the ONNX runtimes run on the CPU only
    settings = Settings()
    assert settings.encoder_runtime == "onnx-int8-static"
    encoder = load_encoder(shared, settings)
    assert encoder.text_runtime == "onnx-int8-static"
    np.testing.assert_array_equal(
        encoder.encode_texts(TEXTS),
        Encoder.load(shared, "cpu", runtime="onnx-int8-static").encode_texts(TEXTS))
