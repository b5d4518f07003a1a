"""What the ONNX query paths (models.onnx_text, models.onnx_image) share: a graph exported once
per checkpoint and cached beside it, its tag (the checkpoint's id and the export's version) in
the graph's metadata so a changed checkpoint makes it again, written through a temporary file
so a reader never sees a partial graph; the torch path's output on the export's probe inputs,
kept in the metadata too (`reference`), so that a cached graph is checked at load without
torch's model; and the ONNX Runtime session that runs it.

ONNX Runtime computes on its own intra-op threads and releases the GIL for the whole call, so
encoder worker threads and the event loop never wait on each other while a batch runs."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)
OPSET = 17
REFERENCE = "xmr_reference"  # metadata entry: the torch path's output on the probe inputs


def export(graph: nn.Module, example: tuple[torch.Tensor, ...], out: Path, key: str, tag: str,
           inputs: Sequence[str], axes: Mapping[str, dict[int, str]],
           reference: np.ndarray | None = None) -> None:
    """`graph` as ONNX at `out` (one output, `embedding`), tagged `key` = `tag`, with
    `reference` (graph's output on `example`) kept beside the tag."""

    def write(tmp: str) -> None:
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # its fused kernel has no ONNX form
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter deprecation and tracer shape notes
                torch.onnx.export(graph, example, tmp, input_names=list(inputs),
                                  output_names=["embedding"], dynamic_axes=dict(axes),
                                  opset_version=OPSET, dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)

    write_tagged(out, key, tag, write, reference)


def write_tagged(out: Path, key: str, tag: str, write: Callable[[str], None],
                 reference: np.ndarray | None = None) -> None:
    """Run `write` on a temporary file beside `out`, put `key` = `tag` (and `reference`) in the
    graph's metadata and rename it to `out`."""
    import onnx

    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        model = onnx.load(tmp)
        props = {key: tag}
        if reference is not None:
            props[REFERENCE] = json.dumps(np.asarray(reference, dtype=np.float32).tolist())
        onnx.helper.set_model_props(model, props)
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the checkpoint beside it is not
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def tagged_or_made(path: Path, key: str, tag: str, threads: int | None,
                   make: Callable[[], Any]) -> Any:
    """A session of the graph at `path` made for `tag` (`tagged_session`); when there is none,
    `make()` makes it and returns its session. The making is done under `making`, after one
    more look: another process may have made the graph meanwhile."""
    found = tagged_session(path, key, tag, threads)
    if found is None:
        with making(path):
            found = tagged_session(path, key, tag, threads) or make()
    return found


@contextmanager
def making(path: Path) -> Iterator[None]:
    """Held while graphs beside `path` are made: an flock on its folder (nothing is written
    there for it), so that several processes starting on one new checkpoint (`xmr serve
    --workers N`) make each graph once, the others waiting and then loading it."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def tagged_session(path: Path, key: str, tag: str, threads: int | None) -> Any:
    """A session of the graph at `path` when it was made for `tag`; None when there is none,
    it cannot be read (a partial file from another version, say) or it is another
    checkpoint's: then it is made again. Without ONNX Runtime it raises ImportError, before
    anything is exported for it."""
    import onnxruntime  # noqa: F401

    if not path.is_file():
        return None
    try:
        found = session(path, threads)
    except Exception as err:  # ONNX Runtime raises its own kinds for a bad file
        log.warning("cannot load %s (%s); making it again", path, err)
        return None
    if found.get_modelmeta().custom_metadata_map.get(key) != tag:
        return None
    return found


def reference(session: Any) -> np.ndarray | None:
    """The torch path's output on the probe inputs kept in a session's graph, or None."""
    kept = session.get_modelmeta().custom_metadata_map.get(REFERENCE)
    return None if kept is None else np.asarray(json.loads(kept), dtype=np.float32)


def session(path: Path, threads: int | None) -> Any:
    """`threads`: ONNX Runtime's intra-op threads per call (None: its default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
