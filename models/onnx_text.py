"""The text query path on ONNX Runtime: MiniLM, its pooling and the method's text head as one
graph, exported once per checkpoint and cached beside it (`checkpoint.pt` ->
`checkpoint.text.onnx`, the checkpoint's id in the graph's metadata so a changed checkpoint
rebuilds it). `quant` adds an 8-bit copy made from it (models.onnx_quant), faster on the CPU and
close to, not equal to, the float graph: it is checked on cosine, not on digits. `dynamic`
(`checkpoint.text.int8.onnx`) quantises activations per call, so a text's vector moves slightly
with its batch mates; `static` (`checkpoint.text.int8s.onnx`) fixes their scales at export,
calibrated on short real queries, so it does not. Each copy's tag extends the float graph's, so
a new float graph makes them again.

Only methods whose text embedding reads the pooled vector alone (`Method.reads_tokens` false) can
take this path; `OnnxText.build` refuses the others and the encoder stays on torch for them.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models import onnx_graphs as graphs
from models import onnx_quant
from models.backbones.text import MiniLM, hidden_and_pooled
from models.methods.base import Method

log = logging.getLogger(__name__)
INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
KEY = "xmr_text_graph"  # the graph's metadata entry holding its tag (models.onnx_graphs)
# Bump when the exported graph changes for the same checkpoint, so old caches are rebuilt.
EXPORT_VERSION = "2"
PROBE = ("a photo of a cat", "two dogs running on a long road")  # checked at every load
TOLERANCE = 1e-4  # max abs difference from the torch path on the probe texts, or no ONNX
INT8_MIN_COSINE = 0.95  # an 8-bit graph's least cosine to the torch path on the probe texts
Quant = Literal["dynamic", "static"]  # the 8-bit copies; None: the float graph
SUFFIXES = {None: ".text.onnx", "dynamic": ".text.int8.onnx", "static": ".text.int8s.onnx"}
ENCODER = "/bert/"  # the exported names of MiniLM's nodes: what the static copy quantises


class TextGraph(nn.Module):
    """Token inputs (`MiniLM.inputs`) -> the method's unit text embeddings, in one forward."""

    def __init__(self, minilm: MiniLM, method: Method) -> None:
        super().__init__()
        bert = minilm.model[0].auto_model
        assert isinstance(bert, nn.Module)  # the Hugging Face model inside
        self.bert, self.method = bert, method
        self.hidden_and_pooled = hidden_and_pooled(bert)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
        _, pooled = self.hidden_and_pooled(ids, mask, types, positions)
        n, dim = pooled.shape
        feats = {"pooled": pooled,  # what `pooled_only` features hold: no token vectors
                 "tokens": pooled.new_zeros(n, 0, dim), "mask": mask.new_zeros(n, 0).bool()}
        return self.method.embed_texts(self.method.transform_texts(feats))


def export_tag(checkpoint_id: str) -> str:
    """The float graph's tag: what it was exported from and by, so that another checkpoint,
    export or version of torch or transformers exports it again (and checks it against torch)."""
    return (f"{checkpoint_id}:{EXPORT_VERSION}:torch {torch.__version__}:"
            f"transformers {version('transformers')}")


def check(got: np.ndarray, want: np.ndarray | None, quant: Quant | None) -> None:
    """A graph's output on the probe texts against the torch path's (`want`, kept at export)."""
    if want is None:
        raise ValueError("the ONNX text graph keeps no reference output")
    if quant is not None:  # unit vectors: the dot product is the cosine
        if not (got * want).sum(1).min() >= INT8_MIN_COSINE:
            raise ValueError(f"8-bit text graph's cosine to torch: {(got * want).sum(1)}")
    elif not np.abs(got - want).max() <= TOLERANCE:
        raise ValueError(f"ONNX text graph differs from torch by {np.abs(got - want).max()}")


def onnx_path(checkpoint: Path, quant: Quant | None = None) -> Path:
    return checkpoint.with_suffix(SUFFIXES[quant])


def quant_tag(tag: str, quant: Quant | None) -> str:
    """The tag of `quant`'s copy of the float graph tagged `tag`."""
    if quant is None:
        return tag
    return f"{tag}:int8" if quant == "dynamic" else f"{tag}:int8s:{onnx_quant.STATIC_VERSION}"


def export(graph: TextGraph, example: tuple[torch.Tensor, ...], out: Path, tag: str
           ) -> np.ndarray:
    """`graph` as ONNX at `out`, with dynamic batch and sequence axes; its torch output on
    `example` is returned and kept in the graph (models.onnx_graphs.reference)."""
    with torch.inference_mode():
        reference = graph(*example).float().numpy()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    graphs.export(graph, example, out, KEY, tag, INPUTS, {**axes, "embedding": {0: "batch"}},
                  reference)
    return reference


def feed(inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    """`MiniLM.inputs` as the graph's named inputs."""
    return {name: tensor.cpu().numpy().astype(np.int64)
            for name, tensor in zip(INPUTS, inputs, strict=True)}


def quantize(quant: Quant, source: Path, out: Path, tag: str, minilm: MiniLM,
             reference: np.ndarray) -> None:
    """`quant`'s 8-bit copy of the float graph at `source` at `out`, keeping `reference`."""
    if quant == "dynamic":
        onnx_quant.quantize_dynamic(source, out, KEY, tag, reference)
    else:
        texts = onnx_quant.calibration_texts()
        onnx_quant.quantize_static(source, out, KEY, tag, ENCODER,
                                   (feed(minilm.inputs([text])) for text in texts), reference)


class OnnxText:
    """Texts -> the method's unit text embeddings through an ONNX Runtime session."""

    def __init__(self, minilm: MiniLM, session: Any) -> None:
        self.minilm = minilm
        self.session = session

    @classmethod
    def build(cls, checkpoint: Path, checkpoint_id: str, minilm: MiniLM, method: Method,
              threads: int | None, quant: Quant | None = None) -> OnnxText:
        """The cached graph of `checkpoint` (exported now when missing or made for another
        checkpoint or by other versions of torch and transformers), checked against the torch
        path's output on the probe texts that it keeps. `threads`: ONNX Runtime's intra-op
        threads per call (None: its default, one per core). `quant`: that graph's 8-bit copy
        of this kind instead (made now when missing or made from another graph)."""
        if method.reads_tokens:
            raise ValueError(f"{type(method).__name__} reads token vectors; ONNX covers "
                             "methods that read the pooled text vector only")
        probe = minilm.inputs(list(PROBE))
        tag = export_tag(checkpoint_id)
        wanted, wanted_tag = onnx_path(checkpoint, quant), quant_tag(tag, quant)
        session = graphs.tagged_or_made(
            wanted, KEY, wanted_tag, threads,
            lambda: cls._make(checkpoint, tag, minilm, method, probe, threads, quant))
        text = cls(minilm, session)
        check(text.run(probe), graphs.reference(session), quant)
        return text

    @staticmethod
    def _make(checkpoint: Path, tag: str, minilm: MiniLM, method: Method,
              probe: tuple[torch.Tensor, ...], threads: int | None, quant: Quant | None) -> Any:
        """Export the float graph (unless it is there already, for a copy), make the copy of
        `quant`, and open a session of the graph wanted."""
        source = onnx_path(checkpoint)  # the float graph, which the copies are made from
        made = None if quant is None else graphs.tagged_session(source, KEY, tag, threads)
        reference = None if made is None else graphs.reference(made)
        if reference is None:
            log.info("exporting the text graph of %s to %s", checkpoint, source)
            reference = export(TextGraph(minilm, method).eval(), probe, source, tag)
        wanted = onnx_path(checkpoint, quant)
        if quant is not None:
            log.info("quantising %s to 8 bits (%s) at %s", source, quant, wanted)
            quantize(quant, source, wanted, quant_tag(tag, quant), minilm, reference)
        return graphs.session(wanted, threads)

    def run(self, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
        return np.asarray(self.session.run(None, feed(inputs))[0], dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One session run per token length, unpadded: no text is padded to a longer mate's
        length, so a batch runs only real tokens, and a text's vector never sees padding."""
        inputs = self.minilm.inputs(texts)
        lengths = inputs[1].sum(1).numpy()
        groups = [np.flatnonzero(lengths == length) for length in np.unique(lengths)]
        parts = [self.run(tuple(tensor[rows, :lengths[rows[0]]] for tensor in inputs))
                 for rows in groups]
        return np.concatenate(parts)[np.argsort(np.concatenate(groups))]  # the texts' order
