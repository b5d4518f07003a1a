"""Several captions per image end to end: a tiny corpus whose train images carry keyword rows
and whose keywords.json lists every item's keywords trains with the default config's choices,
and `xmr eval` reports the keyword queries beside chance and caption search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.data.corpus import read_corpus, write_corpus
from models.data.keywords import write_keywords
from xmr.cli import main

WORDS = {"art": ["painting", "portrait"], "biology": ["cell", "tissue"],
         "geography": ["river", "mountain"]}


@pytest.fixture
def keyword_corpus(wikipedia_src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "corpus"
    assert main(["data", "wikipedia", str(wikipedia_src), str(out)]) == 0
    corpus = read_corpus(out)
    rows, keywords = list(corpus.items), {}
    for item in corpus.items:
        words = WORDS[item.labels[0]]
        keywords[item.id] = words
        if item.split == "train":  # only train items' keywords become training rows
            rows += [type(item)(f"{item.id}~{n}", item.image, w, item.labels, "train")
                     for n, w in enumerate(words, start=1)]
    write_corpus(out, rows, corpus.levels, corpus.label_sets)
    write_keywords(out, keywords, "test")
    return out


def test_keyword_rows_train_and_eval_reports_keyword_queries(keyword_corpus: Path,
                                                            tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "method: dhaml\ntext_backbone: char-ngram\nbatch_size: 8\nembed_dim: 8\n"
        "val_fraction: 0.34\nselect_on: labels_and_keywords\n"
        "options: {hidden: 16, instance_weight: 1.0, instance_level: true, "
        "instance_text: backbone}\n", encoding="utf-8")
    run, cache = tmp_path / "run", str(tmp_path / "cache")
    assert main(["train", "--data", str(keyword_corpus), "--config", str(config), "--out",
                 str(run), "--epochs", "3", "--cache", cache, "--device", "cpu"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert all("val_keyword_map" in epoch for epoch in metrics["epochs"])
    report_path = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--data",
                 str(keyword_corpus), "--json", str(report_path), "--cache", cache]) == 0
    keywords = json.loads(report_path.read_text())["keywords"]
    assert keywords["n_queries"] == 6 and keywords["n_images"] == 3
    for key in ("map", "success_at_10"):
        assert 0 <= keywords[key] <= 1
        assert 0 < keywords["chance"][key] <= 1 and 0 <= keywords["caption_search"][key] <= 1
    # every test keyword was a training caption here
    assert keywords["seen"]["n_queries"] == 6 and keywords["unseen"]["n_queries"] == 0
    assert "Keyword queries" in report_path.with_suffix(".md").read_text()
