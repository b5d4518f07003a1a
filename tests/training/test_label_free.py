"""A captioned corpus without labels, end to end as a user runs it: the Karpathy layout made by
the fixture builder, `xmr data captions`, `xmr train` with the default config (dhaml on its
instance level alone), `xmr eval` (pair recall, mAP left out with its reason), `xmr index build`
and a real `xmr serve` searched both ways. Methods that need labels stop before training."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from models.data.corpus import read_corpus
from tests.fixtures import make_karpathy_layout
from tests.service.conftest import start_server
from xmr.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def captions_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("label-free")
    out = root / "corpus"
    assert main(["data", "captions", str(make_karpathy_layout(root / "src")), str(out)]) == 0
    corpus = read_corpus(out)
    assert not corpus.labelled and all(not item.labels for item in corpus.items)
    return out


def train(corpus: Path, run: Path, cache: Path, *extra: str) -> int:
    return main(["train", "--data", str(corpus), "--config", str(ROOT / "configs/default.yaml"),
                 "--out", str(run), "--epochs", "2", "--cache", str(cache), "--device", "cpu",
                 *extra])


@pytest.mark.parametrize("method", ["aaml", "acmr", "dscmr", "linear", "triplet"])
def test_a_method_that_needs_labels_stops_before_training(
    captions_corpus: Path, tmp_path: Path, method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    code = main(["train", "--data", str(captions_corpus), "--method", method, "--out",
                 str(tmp_path / "run"), "--cache", str(cache), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs label levels" in err and "Traceback" not in err
    assert "dhaml (with options.instance_weight > 0" in err and "cca" in err
    assert not (tmp_path / "run").exists() and not cache.exists()  # no feature was extracted


@pytest.mark.parametrize("config", ["method: triplet\noptions: {label_aware: false}\n",
                                    "method: cca\n"])
def test_other_methods_that_learn_from_pairs_train_without_labels(
    captions_corpus: Path, tmp_path: Path, config: str
) -> None:
    (tmp_path / "config.yaml").write_text(config + "text_backbone: char-ngram\nembed_dim: 8\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(captions_corpus), "--config", str(tmp_path / "config.yaml"),
                 "--out", str(run), "--epochs", "2", "--cache", str(tmp_path / "cache"),
                 "--device", "cpu"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"][0]["val_pair_recall"] >= 0


def test_char_ngram_text_backbone_trains_without_labels(captions_corpus: Path,
                                                       tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(captions_corpus, run, tmp_path / "cache", "--text-backbone", "char-ngram") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_avg_map"] is None
    assert all(0 <= e["val_pair_recall"] <= 1 and "classify" not in e for e in metrics["epochs"])


def test_default_config_trains_evaluates_indexes_and_serves(captions_corpus: Path,
                                                           tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert train(captions_corpus, run, cache) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert epochs and all("val_pair_recall" in e and "val_avg_map" not in e for e in epochs)
    assert metrics["best_val_score"] == epochs[metrics["best_epoch"]]["val_pair_recall"]

    report_path = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--data",
                 str(captions_corpus), "--json", str(report_path), "--cache", str(cache)]) == 0
    report = json.loads(report_path.read_text())
    assert report["avg_map"] is None and report["levels"] == {} and "no labels" in report["note"]
    test_items = read_corpus(captions_corpus).split("test")
    assert report["n_items"] == len(test_items) and report["n_images"] == 2
    for direction in ("i2t", "t2i"):
        recall = report["recall"][direction]
        assert set(recall) == {"R@1", "R@5", "R@10"} and 0 <= recall["R@1"] <= recall["R@5"] <= 1
        assert recall["R@10"] == 1.0  # every test image and caption is in a top 10 of 2 or 4
    assert "mAP is left out" in report_path.with_suffix(".md").read_text()

    index = tmp_path / "index"
    assert main(["index", "build", "--checkpoint", str(run / "checkpoint.pt"), "--data",
                 str(captions_corpus), "--out", str(index), "--cache", str(cache),
                 "--no-progress"]) == 0
    assert index_levels(index, run / "checkpoint.pt") == ()
    server = start_server(index, run / "checkpoint.pt", tmp_path / "serve.log", captions_corpus)
    try:
        search_both_ways(server, captions_corpus)
    finally:
        assert server.stop() == 0, server.log_text()[-2000:]


def index_levels(index: Path, checkpoint: Path) -> tuple[str, ...]:
    from index.catalog import Catalog
    from models.inference import Encoder

    encoder = Encoder.load(checkpoint)
    catalog = Catalog.open(index, checkpoint_id=encoder.checkpoint_id, dim=encoder.dim)
    try:
        return tuple(catalog.levels)
    finally:
        catalog.close()


def search_both_ways(server: object, corpus: Path) -> None:
    item = read_corpus(corpus).items[0]
    with server.client() as client:  # type: ignore[attr-defined]
        t2i = client.post("/v1/search/text-to-image", json={"text": item.text, "k": 3})
        assert t2i.status_code == 200, t2i.text
        hits = t2i.json()["results"]
        assert len(hits) == 3 and all(h["modality"] == "image" and h["labels"] == [] for h in hits)
        data = base64.b64encode((corpus / item.image).read_bytes()).decode()
        i2t = client.post("/v1/search/image-to-text", json={"image_base64": data, "k": 5})
        assert i2t.status_code == 200, i2t.text
        texts = i2t.json()["results"]
        assert len(texts) == 5 and all(h["modality"] == "text" and h["text"] for h in texts)
        filtered = client.post("/v1/search/text-to-image", json={
            "text": item.text, "k": 3, "labels": {"category": "animals"}})
        assert filtered.status_code == 422 and filtered.headers["content-type"] == PROBLEM
        assert "no label levels" in filtered.json()["detail"]
