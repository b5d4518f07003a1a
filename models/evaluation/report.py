"""An evaluation report: the pinned JSON, a markdown table and a precision-recall plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.metrics import (
    cross_modal_map,
    hierarchical_average_precisions,
    precision_recall_curve,
    recall_at_k,
)


def evaluate_embeddings(
    images: np.ndarray, texts: np.ndarray, labels: np.ndarray, levels: tuple[str, ...]
) -> dict[str, Any]:
    """mAP@all per level (headline = finest), hierarchy-weighted mAP, Recall@1/5/10.

    labels is (n, len(levels)) coarse to fine; row i of images is paired with row i of texts.
    """
    per_level = {
        name: cross_modal_map(images, texts, labels[:, i]) for i, name in enumerate(levels)
    }
    fine = per_level[levels[-1]]
    h_i2t = float(hierarchical_average_precisions(images, labels, texts, labels).mean())
    h_t2i = float(hierarchical_average_precisions(texts, labels, images, labels).mean())
    return {
        "i2t_map": fine["i2t_map"],
        "t2i_map": fine["t2i_map"],
        "avg_map": fine["avg_map"],
        "levels": per_level,
        "hierarchical": {"i2t_map": h_i2t, "t2i_map": h_t2i, "avg_map": (h_i2t + h_t2i) / 2},
        "recall": {"i2t": recall_at_k(images, texts), "t2i": recall_at_k(texts, images)},
        "n_items": int(len(images)),
    }


def markdown(report: dict[str, Any]) -> str:
    title = (
        f"# Evaluation: {report.get('method', '?')} on {report.get('split', '?')} "
        f"({report['n_items']} pairs)"
    )
    if report.get("avg_map") is None:  # a label-free corpus: pair recall only
        return "\n".join([title, "", report["note"], *recall_markdown(report)]) + "\n"
    lines = [
        title,
        "",
        "| level | image->text mAP@all | text->image mAP@all | mean |",
        "|---|---|---|---|",
    ]
    for name, row in report["levels"].items():
        lines.append(
            f"| {name} | {row['i2t_map']:.4f} | {row['t2i_map']:.4f} | {row['avg_map']:.4f} |"
        )
    h = report["hierarchical"]
    lines.append(
        f"| hierarchy-weighted | {h['i2t_map']:.4f} | {h['t2i_map']:.4f} | {h['avg_map']:.4f} |"
    )
    lines += recall_markdown(report)
    if "keywords" in report:
        lines += keyword_markdown(report["keywords"])
    return "\n".join(lines) + "\n"


def recall_markdown(report: dict[str, Any]) -> list[str]:
    lines = ["", "| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
    for direction, row in report["recall"].items():
        lines.append(f"| {direction} | {row['R@1']:.4f} | {row['R@5']:.4f} | {row['R@10']:.4f} |")
    return lines


def plot_precision_recall(
    images: np.ndarray, texts: np.ndarray, fine: np.ndarray, path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (q, db) in {"image->text": (images, texts), "text->image": (texts, images)}.items():
        recall, precision = precision_recall_curve(q, fine, db, fine)
        ax.plot(recall, precision, marker=".", label=name)
    ax.set(
        xlabel="recall", ylabel="interpolated precision", title=title, xlim=(0, 1), ylim=(0, 1.02)
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def keyword_markdown(kw: dict[str, Any]) -> list[str]:
    """The keyword-query table: this checkpoint beside chance and caption search."""
    lines = [
        "",
        f"Keyword queries: {kw['n_queries']} keywords against {kw['n_images']} images",
        "",
        "| ranking | keyword mAP@all | success@10 |",
        "|---|---|---|",
        f"| this checkpoint | {kw['map']:.4f} | {kw['success_at_10']:.4f} |",
    ]
    references = (("chance", "chance"), ("caption search (raw text backbone)", "caption_search"))
    for name, key in references:
        lines.append(f"| {name} | {kw[key]['map']:.4f} | {kw[key]['success_at_10']:.4f} |")
    for part in ("seen", "unseen"):
        if part in kw and kw[part]["n_queries"]:
            row, ref = kw[part], kw[part]["caption_search"]
            lines.append(
                f"| this checkpoint, the {row['n_queries']} {part} queries (caption search) "
                f"| {row['map']:.4f} ({ref['map']:.4f}) "
                f"| {row['success_at_10']:.4f} ({ref['success_at_10']:.4f}) |"
            )
    if "seen" in kw:
        lines += ["", "Seen: the query was a training caption (a name or keyword of a train item)."]
    return lines
