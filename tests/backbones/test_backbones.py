"""Backbones load from wheels (no download) and the cache serves repeats without them."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.backbones.cache import FeatureCache
from models.backbones.extract import image_features, text_features
from models.backbones.image import EfficientNetLite
from models.backbones.text import MAX_TOKENS, CharNgram, MiniLM, split_words


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("img")
    paths = []
    for n, colour in enumerate([(255, 0, 0), (0, 255, 0), (255, 0, 0)]):  # 0 and 2: same bytes
        path = root / f"{n}.png"
        Image.new("RGB", (40, 30), colour).save(path)
        paths.append(path)
    return paths


class Counting:
    """A real backbone that counts how many items reach it."""

    def __init__(self, inner) -> None:
        self.inner, self.id, self.dim, self.seen = inner, inner.id, inner.dim, 0
        self.size = getattr(inner, "size", None)

    def encode(self, batch):
        self.seen += len(batch)
        return self.inner.encode(batch)


def test_image_features_and_cache(images: list[Path], tmp_path: Path) -> None:
    backbone = Counting(EfficientNetLite())
    cache = FeatureCache(tmp_path / "cache")
    first = image_features(images, backbone, cache, progress=False)
    assert first.pooled.shape == (3, 1280) and first.regions.shape == (3, 49, 1280)
    assert backbone.seen == 2  # identical content computed once
    np.testing.assert_allclose(first.pooled[0], first.pooled[2])
    assert not np.allclose(first.pooled[0], first.pooled[1])
    second = image_features(images, backbone, cache, progress=False)
    assert backbone.seen == 2  # all from the cache
    np.testing.assert_array_equal(first.pooled, second.pooled)
    np.testing.assert_array_equal(first.regions, second.regions)


def test_minilm_features_and_cache(tmp_path: Path) -> None:
    backbone = Counting(MiniLM())
    cache = FeatureCache(tmp_path / "cache")
    texts = ["a cat", "grinning face with big eyes", "a cat"]
    out = text_features(texts, backbone, cache, progress=False)
    assert out.pooled.shape == (3, 384) and out.tokens.shape == (3, MAX_TOKENS, 384)
    assert out.mask[0].sum() == 2 and out.mask[1].sum() == 5  # word tokens only
    assert np.allclose(np.linalg.norm(out.pooled, axis=1), 1, atol=1e-4)
    assert backbone.seen == 2
    text_features(texts, backbone, cache, progress=False)
    assert backbone.seen == 2
    # Similar meaning is closer than unrelated meaning.
    cat, kitten, tax = MiniLM().encode(["a cat", "a kitten", "income tax return"]).pooled
    assert cat @ kitten > cat @ tax


def test_minilm_traced_forward_matches_sentence_transformers() -> None:
    # Other batch sizes and lengths than the trace's example, through the model's own modules.
    backbone = MiniLM()
    assert isinstance(backbone.transformer, torch.jit.ScriptFunction)  # not the eager fallback
    texts = ["grinning face with big eyes", "a cat", "flag: United Kingdom", "x" * 300]
    ours = backbone.encode(texts)
    with torch.inference_mode():
        theirs = backbone.model(backbone.model.preprocess(texts))
    np.testing.assert_allclose(ours.pooled, theirs["sentence_embedding"].numpy(), atol=1e-5)
    first_words = theirs["token_embeddings"][1, 1].numpy()  # "a cat": row 1, after [CLS]
    np.testing.assert_allclose(ours.tokens[1, 0].astype(np.float32), first_words, atol=1e-2)


def test_minilm_tokenizes_as_sentence_transformers_does() -> None:
    """`inputs` runs the tokenizer alone (the ONNX query path loads no model): the same ids and
    mask as the model's own preprocessing, on every CLDR English emoji name and keyword and on
    edge cases (spaces around, empty, past MAX_TOKENS, other scripts)."""
    from models.data.keywords import cldr_keywords, cldr_names

    texts = sorted({*cldr_names().values(), *(w for ws in cldr_keywords().values() for w in ws)})
    texts += ["", " ", "  a cat  ", "\tdog\n", "a " * 50, "x" * 300, "喜笑颜开", "CAFÉ 😀"]
    backbone = MiniLM()
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        ours, theirs = backbone.inputs(batch), backbone.model.preprocess(batch)
        assert torch.equal(ours[0], theirs["input_ids"]), batch
        assert torch.equal(ours[1], theirs["attention_mask"]), batch


def test_text_backbones_skip_token_vectors_on_request() -> None:
    texts = ["grinning face with big eyes", "a cat", "喜笑颜开"]
    for backbone in (MiniLM(), CharNgram.fit(texts * 4 + ["a dog", "a red car"], dim=4)):
        full, pooled = backbone.encode(texts), backbone.encode(texts, tokens=False)
        np.testing.assert_array_equal(pooled.pooled, full.pooled)
        assert pooled.tokens.shape == (3, 0, full.tokens.shape[2])
        assert pooled.mask.shape == (3, 0)


def test_char_ngram_any_language_and_state_round_trip() -> None:
    texts = ["我爱北京天安门", "猫在睡觉", "狗在公园里跑步", "a cat sleeps", "le chat dort"]
    model = CharNgram.fit(texts, dim=4)
    restored = CharNgram.from_state(model.state())
    a, b = model.encode(["北京的猫"]), restored.encode(["北京的猫"])
    assert model.id == restored.id
    np.testing.assert_allclose(a.pooled, b.pooled, atol=1e-6)
    assert a.mask.sum() == 2  # two 2-character pieces
    assert split_words("le café 北京的猫") == ["le", "café", "北京", "的猫"]


def per_text_char_ngram(model: CharNgram, texts: list[str]) -> tuple[np.ndarray, ...]:
    """The naive path: float64 TF-IDF times the components, one vectoriser call per text."""
    def project(batch: list[str]) -> np.ndarray:
        return np.asarray(model.vectorizer.transform(batch) @ model.components.T, np.float32)

    tokens = np.zeros((len(texts), MAX_TOKENS, model.dim), dtype=np.float16)
    mask = np.zeros((len(texts), MAX_TOKENS), dtype=bool)
    for row, text in enumerate(texts):
        words = split_words(text)[:MAX_TOKENS]
        if words:
            tokens[row, : len(words)] = project(words)
            mask[row, : len(words)] = True
    return project(texts), tokens, mask


def test_char_ngram_batched_words_match_per_text_path() -> None:
    train = ["新华社北京电 国务院总理今天在人民大会堂会见了来访的外国代表团。", "a cat sleeps",
             "le chat dort sur le canapé", "股市今日小幅上涨，科技板块领涨。", "狗在公园里跑步"]
    model = CharNgram.fit(train * 3, dim=6)
    long_chinese = "经济" * 40 + "，" + "北京的猫在睡觉" * 5  # more pieces than MAX_TOKENS
    texts = [long_chinese, "!!! ...", "a cat and a cat", "新华社北京电 今天 GDP 5.2%", "狗"]
    # The vectorised TF-IDF counting gives sklearn's own numbers, not just close ones.
    np.testing.assert_array_equal(model._tfidf(texts).toarray(),
                                  model.vectorizer.transform(texts).toarray())
    pooled, tokens, mask = per_text_char_ngram(model, texts)
    got = model.encode(texts)
    np.testing.assert_array_equal(got.mask, mask)
    assert mask[0].all() and not mask[1].any()
    np.testing.assert_allclose(got.pooled, pooled, atol=1e-6)
    np.testing.assert_allclose(got.tokens.astype(np.float32), tokens.astype(np.float32), atol=2e-3)
