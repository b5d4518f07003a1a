"""Each method on a tiny seeded synthetic corpus: its loss falls, its embeddings are unit rows
and it beats chance; options are validated; the re-ranker is offered only where it exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import ConfigError, TrainConfig
from models.evaluation.metrics import cross_modal_map
from models.methods import build_method, method_names
from models.methods.base import Features, MethodDims

N, IMG, TXT, REGIONS, TOKENS = 96, 48, 24, 6, 5
SMALL = {"hidden": 64}
OPTIONS = {
    "dhaml": SMALL,
    "acmr": SMALL,
    "dscmr": SMALL,
    "triplet": SMALL,
    "cca": {},
    "linear": {},
    "aaml": {**SMALL, "attn_dim": 16, "region_dim": 16, "cross_batch": 8},
}


def synthetic(seed: int = 0) -> tuple[Features, Features, list[torch.Tensor]]:
    """Two-level labels (3 coarse x 2 fine); each modality sees the fine class through its own
    random map plus noise, so the methods must learn the cross-modal alignment."""
    gen = torch.Generator().manual_seed(seed)
    fine = torch.arange(N) % 6
    coarse = fine // 2
    protos_i, protos_t = torch.randn(6, IMG, generator=gen), torch.randn(6, TXT, generator=gen)
    regions = protos_i[fine][:, None, :] + torch.randn(N, REGIONS, IMG, generator=gen)
    tokens = protos_t[fine][:, None, :] + torch.randn(N, TOKENS, TXT, generator=gen)
    mask = torch.ones(N, TOKENS, dtype=torch.bool)
    mask[::3, 3:] = False
    images = {"pooled": regions.mean(1), "regions": regions.half()}
    texts = {
        "pooled": (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True),
        "tokens": tokens.half(),
        "mask": mask,
    }
    return images, texts, [coarse, fine]


def make(name: str, **options):
    config = TrainConfig(method=name, embed_dim=16, options={**OPTIONS[name], **options})
    torch.manual_seed(0)
    return build_method(config, MethodDims(IMG, TXT, (3, 6)))


def avg_map(method, images: Features, texts: Features, fine: torch.Tensor) -> float:
    method.eval()
    with torch.no_grad():
        img, txt = method.embed_images(images), method.embed_texts(texts)
    assert torch.allclose(img.norm(dim=1), torch.ones(N), atol=1e-4)
    return cross_modal_map(img.numpy(), txt.numpy(), fine.numpy())["avg_map"]


def train(method, images: Features, texts: Features, labels, steps: int) -> list[float]:
    """Full-batch Adam steps on the method's summed losses; the total of each step."""
    optimizer = torch.optim.Adam(method.parameters(), lr=3e-3)
    totals = []
    for step in range(steps):
        method.train()
        total = sum(method.losses(images, texts, labels, progress=step / steps).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return totals


@pytest.mark.parametrize("name", [m for m in method_names() if m != "cca"])
def test_loss_falls_and_method_learns(name: str) -> None:
    images, texts, labels = synthetic()
    method = make(name)
    method.prepare(images, texts, labels)
    images, texts = method.transform_images(images), method.transform_texts(texts)
    before = avg_map(method, images, texts, labels[-1])
    totals = train(method, images, texts, labels, steps=40)
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5]), totals
    after = avg_map(method, images, texts, labels[-1])
    assert after > max(before, 0.5)


def test_cca_is_closed_form_and_beats_chance() -> None:
    images, texts, labels = synthetic()
    method = make("cca")
    assert not method.trainable
    method.prepare(images, texts, labels)
    assert avg_map(method, images, texts, labels[-1]) > 0.5  # chance is about 1/6


def test_adversary_and_levels_are_optional_parts() -> None:
    images, texts, labels = synthetic()
    with_adv = make("dhaml").losses(images, texts, labels, 0.5)
    without = make("dhaml", adv_weight=0.0).losses(images, texts, labels, 0.5)
    assert "adversary" in with_adv and "adversary" not in without
    single = build_method(
        TrainConfig(method="dhaml", embed_dim=16, options=SMALL), MethodDims(IMG, TXT, (6,))
    )
    assert len(single.image_tower.heads) == 1
    assert set(single.losses(images, texts, labels[1:], 0.5)) == {"metric", "classify", "adversary"}


def test_aaml_reranks_only_with_attention() -> None:
    images, texts, labels = synthetic()
    method = make("aaml")
    method.prepare(images, texts, labels)
    images, texts = method.transform_images(images), method.transform_texts(texts)
    method.eval()
    assert method.can_rerank
    with torch.no_grad():
        scores = method.pair_scores(
            {k: v[:4] for k, v in images.items()}, {k: v[:3] for k, v in texts.items()}
        )
    assert scores.shape == (4, 3)
    plain = make("aaml", attention=False)
    assert not plain.can_rerank and not make("dscmr").can_rerank
    with pytest.raises(ValueError, match="re-rank"):
        plain.pair_scores(images, texts)


@pytest.mark.parametrize(("name", "options"), [(m, {}) for m in method_names()]
                         + [("aaml", {"attention": False})])
def test_a_method_that_reads_no_tokens_embeds_texts_without_them(name: str, options: dict
                                                                 ) -> None:
    # The encoder has the text backbone skip token vectors for such methods (reads_tokens).
    images, texts, labels = synthetic()
    method = make(name, **options)
    method.prepare(images, texts, labels)
    method.eval()
    without = {**texts, "tokens": texts["tokens"][:, :0], "mask": texts["mask"][:, :0]}
    with torch.no_grad():
        full = method.embed_texts(method.transform_texts(texts))
        if method.reads_tokens:  # aaml with attention: its summary of the tokens counts once
            method.gate.fill_(1.0)  # training opens the gate, which starts at 0
            full = method.embed_texts(method.transform_texts(texts))
            different = method.embed_texts(method.transform_texts(
                {**texts, "tokens": torch.zeros_like(texts["tokens"])}))
            assert not torch.allclose(full, different)
            return
        assert torch.equal(full, method.embed_texts(method.transform_texts(without)))


def test_unknown_option_and_method_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="hiden"):
        make("dhaml", hiden=3)
    with pytest.raises(ConfigError, match="loss"):
        make("aaml", loss="hinge")
    with pytest.raises(ConfigError, match="unknown method"):
        build_method(TrainConfig(method="scan"), MethodDims(IMG, TXT, (6,)))


def paired_synthetic() -> tuple[Features, Features, list[torch.Tensor]]:
    """Like `synthetic`, plus an instance code that both modalities of a pair share: only a
    method that learns instance-level alignment can tell the paired item from its classmates."""
    gen = torch.Generator().manual_seed(1)
    images, texts, labels = synthetic()
    code = torch.randn(N, 8, generator=gen)
    images["pooled"] = images["pooled"] + 2 * code @ torch.randn(8, IMG, generator=gen)
    texts["pooled"] = texts["pooled"] + 2 * code @ torch.randn(8, TXT, generator=gen)
    return images, texts, labels


def paired_recall_at_1(method, images: Features, texts: Features) -> float:
    method.eval()
    with torch.no_grad():
        sim = method.embed_images(images) @ method.embed_texts(texts).T
    return (sim.argmax(dim=1) == torch.arange(N)).float().mean().item()


@pytest.mark.parametrize("name", ["dhaml", "aaml"])
def test_instance_term_finds_the_pair_not_just_its_class(name: str) -> None:
    images, texts, labels = paired_synthetic()
    recall = {}
    for weight in (0.0, 1.0):
        method = make(name, instance_weight=weight, adv_weight=0.0)
        method.prepare(images, texts, labels)
        feats_i, feats_t = method.transform_images(images), method.transform_texts(texts)
        train(method, feats_i, feats_t, labels, steps=60)
        recall[weight] = paired_recall_at_1(method, feats_i, feats_t)
    assert recall[1.0] > recall[0.0] + 0.2, recall


@pytest.mark.parametrize("text_side", ["learned", "backbone"])
def test_dhaml_instance_level_finds_the_pair(text_side: str) -> None:
    images, texts, labels = paired_synthetic()
    options = {"adv_weight": 0.0, "instance_weight": 1.0, "instance_level": True}
    method = make("dhaml", **options, instance_text=text_side)
    before = paired_recall_at_1(method, images, texts)
    train(method, images, texts, labels, steps=60)
    after = paired_recall_at_1(method, images, texts)
    # the retrieval vector is the finest label level beside the instance level
    extra = TXT if text_side == "backbone" else 16
    assert method.embed_texts(texts).shape == (N, 16 + extra)
    assert after > before + 0.2 and avg_map(method, images, texts, labels[1]) > 0.3, after


def test_instance_level_without_instance_term_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="instance_weight"):
        make("dhaml", instance_level=True, instance_weight=0.0)


def test_matches_make_every_describing_text_a_positive() -> None:
    """With `matches`, a text that describes two images (a shared keyword) is a positive of
    both; the loss then differs from the diagonal's, and equals it when matches is the eye."""
    images, texts, labels = paired_synthetic()
    method = make("dhaml", instance_weight=1.0, adv_weight=0.0, classify_weight=0.0,
                  metric_weight=1.0)
    method.eval()
    eye = torch.eye(N, dtype=torch.bool)
    shared = eye.clone()
    shared[0, 1] = shared[1, 0] = True
    with torch.no_grad():
        plain = method.losses(images, texts, labels, 0.0)["metric"]
        same = method.losses(images, texts, labels, 0.0, eye)["metric"]
        other = method.losses(images, texts, labels, 0.0, shared)["metric"]
    assert torch.isclose(plain, same) and not torch.isclose(plain, other)


@pytest.mark.parametrize("text_side", ["learned", "backbone"])
def test_dhaml_without_label_levels_trains_its_instance_level_alone(text_side: str) -> None:
    """A label-free corpus: zero label levels, so no classifier, no discriminator, no label
    block; the instance term alone learns the pairing and is the retrieval vector."""
    images, texts, _ = paired_synthetic()
    config = TrainConfig(method="dhaml", embed_dim=16,
                         options={**SMALL, "instance_weight": 1.0, "instance_text": text_side})
    torch.manual_seed(0)
    method = build_method(config, MethodDims(IMG, TXT, ()))
    assert not list(method.classifiers.parameters()) and not len(method.discriminators)
    assert len(method.image_tower.blocks) == 1
    assert (method.text_tower is None) == (text_side == "backbone")
    assert set(method.losses(images, texts, [], 0.0)) == {"metric"}
    before = paired_recall_at_1(method, images, texts)
    train(method, images, texts, [], steps=60)
    after = paired_recall_at_1(method, images, texts)
    assert method.embed_texts(texts).shape == (N, TXT if text_side == "backbone" else 16)
    assert after > before + 0.2, (before, after)


def test_only_methods_that_learn_from_pairs_pass_the_label_free_check() -> None:
    from models.methods import check_learns_from_pairs

    able = [TrainConfig(method="dhaml", options={"instance_weight": 1.0}),
            TrainConfig(method="triplet", options={"label_aware": False}),
            TrainConfig(method="cca")]
    for config in able:
        check_learns_from_pairs(config)
    for config in (TrainConfig(method="dhaml"), TrainConfig(method="triplet"),
                   TrainConfig(method="acmr"), TrainConfig(method="aaml")):
        with pytest.raises(ConfigError, match="Methods that train on pairs alone: cca"):
            check_learns_from_pairs(config)


def test_dhaml_text_geometry_keeps_the_text_backbones_neighbourhoods() -> None:
    """With text_geometry_weight the finest label level's texts keep the neighbourhoods of
    the text backbone's vectors closer than without (the term is trained and it acts)."""
    from models.losses.geometry import similarity_preservation

    images, texts, labels = synthetic()
    kept = {}
    for weight in (0.0, 10.0):
        method = make("dhaml", adv_weight=0.0, classify_weight=0.0, text_geometry_weight=weight)
        assert ("text_geometry" in method.losses(images, texts, labels, 0.0)) == (weight > 0)
        train(method, images, texts, labels, steps=40)
        method.eval()
        with torch.no_grad():
            fine = method.text_tower(texts["pooled"])[-1]
            kept[weight] = float(similarity_preservation(fine, texts["pooled"]))
    assert kept[10.0] < 0.85 * kept[0.0], kept
