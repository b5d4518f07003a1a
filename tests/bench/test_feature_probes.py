"""bench/feature_probes.py reads EfficientNet-Lite0 the way the feature cache does.

Its stage taps re-implement the network's forward, and its fine-tune starts from a copy of the
last block and head conv; both must give the backbone's own pooled feature, or the probes and
the trained-vs-frozen comparison would measure a different network.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import feature_probes  # noqa: E402

from models.backbones.image import EfficientNetLite0  # noqa: E402


def test_stage_pass_and_frozen_tail_reproduce_the_pooled_feature() -> None:
    backbone = EfficientNetLite0()
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    pooled = backbone.encode(pixels).pooled
    stages, tail_input = feature_probes.stage_pass(backbone.net, torch.from_numpy(pixels))
    assert [k for k in stages if k.startswith("block")] == [
        f"block {i}" for i in feature_probes.STAGE_ENDS
    ]
    np.testing.assert_allclose(stages["head"][:, :1280].numpy(), pooled, atol=1e-5)
    tail = feature_probes.Tail(backbone.net, n_classes=3).eval()
    with torch.no_grad():
        np.testing.assert_allclose(tail.pool(tail_input).numpy(), pooled, atol=1e-5)
