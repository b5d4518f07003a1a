"""8-bit copies of the exported text query graph (models.onnx_text), each written beside the
float graph with its own tag (models.onnx_graphs.write_tagged).

`dynamic`: ONNX Runtime's dynamic quantisation. Matrix weights per output channel; activations
quantised at run time with the range of the whole call's tensor, so a text's vector depends
slightly on the texts batched with it.

`static`: weights and activation scales fixed at export (ONNX Runtime's `quantize_static`, QDQ
format), so a text's vector does not depend on its batch: every row is quantised with the same
scale whatever else is in the call. Only the encoder's weight MatMuls are quantised (weights per
output channel, their inputs per tensor); attention scores and softmax, LayerNorm, pooling and
the method's head stay float. The activation ranges are those seen on `calibration_texts`, each
run alone, so padding never widens them. Three choices keep it close to the float graph:
- Each quantised MatMul reads its input through an Identity of its own (`isolate`): ONNX
  Runtime's QDQ quantiser otherwise hands the 8-bit copy of a tensor to every node that reads
  it, the residual connections and LayerNorms included.
- MatMul outputs stay float (dequantised inside the fused kernel) rather than being quantised
  again before the bias and the residual add.
- `reduce_range`: 7-bit weights, so the sums of two 8-bit products fit in 16 bits on every
  integer kernel; none saturates, and the integer result does not depend on which kernel a
  batch's shape selects.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models import onnx_graphs as graphs
from models.data.keywords import cldr_keywords, cldr_names

# Bump when the static recipe or its calibration texts change, so old static graphs are rebuilt.
STATIC_VERSION = "1"
CALIBRATION_TEXTS = 512
ISOLATED = "_to_int8"  # suffix of the Identity outputs `isolate` adds


def calibration_texts() -> list[str]:
    """A fixed sample of short real queries: Unicode CLDR's English emoji names and keywords
    (models.resources; the OpenMoji corpus's keyword queries, and names as its captions are),
    shipped with the code, so every checkpoint is calibrated on the same texts."""
    texts = set(cldr_names().values())
    texts.update(word for words in cldr_keywords().values() for word in words)
    return random.Random(0).sample(sorted(texts), CALIBRATION_TEXTS)


def quiet(run: Callable[[], None]) -> None:
    """Run an ONNX Runtime quantiser without its advice to pre-process the model, which it
    gives on the root logger."""
    logging.disable(logging.WARNING)
    try:
        run()
    finally:
        logging.disable(logging.NOTSET)


def quantize_dynamic(source: Path, out: Path, key: str, tag: str,
                     reference: np.ndarray | None = None) -> None:
    """The dynamic 8-bit copy of the graph at `source` at `out`: every MatMul's weights per
    output channel. `reference`: kept in its metadata (models.onnx_graphs.write_tagged)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graphs.write_tagged(out, key, tag, lambda tmp: quiet(lambda: quantize_dynamic(
        str(source), tmp, weight_type=QuantType.QInt8, per_channel=True,
        op_types_to_quantize=["MatMul"])), reference)


def weight_matmuls(model: Any, prefix: str) -> list[str]:
    """Names of the MatMul nodes under `prefix` whose second input is a weight (an initializer):
    the projections, not attention's products of two activations."""
    weights = {tensor.name for tensor in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "MatMul"
            and node.name.startswith(prefix) and node.input[1] in weights]


def isolate(model: Any, names: set[str]) -> None:
    """Give the MatMuls `names` their input through an Identity (one per input tensor, shared
    by the MatMuls reading it), so a quantise-dequantise pair put on it reaches them only.
    ONNX Runtime removes the Identities when it loads the graph."""
    from onnx import helper

    nodes, made = [], {}
    for node in model.graph.node:
        if node.name in names:
            source = node.input[0]
            if source not in made:
                made[source] = source + ISOLATED
                nodes.append(helper.make_node("Identity", [source], [made[source]],
                                              name=source + ISOLATED))
            node.input[0] = made[source]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def quantize_static(source: Path, out: Path, key: str, tag: str, prefix: str,
                    feeds: Iterable[dict[str, np.ndarray]],
                    reference: np.ndarray | None = None) -> None:
    """The static 8-bit copy of the graph at `source` at `out` (see the module's docstring):
    the weight MatMuls of the nodes named under `prefix` quantised, their activation ranges
    taken from running `feeds` (one calibration text each) through the float graph.
    `reference`: kept in its metadata (models.onnx_graphs.write_tagged)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    from onnxruntime.quantization import quantize_static as quantize

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    model = onnx.load(str(source))
    names = weight_matmuls(model, prefix)
    if not names:
        raise ValueError(f"{source}: no weight MatMul under {prefix!r} to quantise")
    isolate(model, set(names))

    def write(tmp: str) -> None:
        quiet(lambda: quantize(
            model, tmp, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
            nodes_to_quantize=names, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]}))

    graphs.write_tagged(out, key, tag, write, reference)
