"""The quality benchmark's report: the thesis claims as verdicts (each ablation's summary
against its full method's, the seed spread deciding), the markdown and the plot."""

from __future__ import annotations

from typing import Any

from bench.harness import bars, pyplot
from bench.report import render

BASELINES = ["cca", "linear", "triplet", "acmr", "dscmr"]


def stat(part: dict, key: str) -> tuple[float, float]:
    """Mean and seed spread of one summary measure, whichever way the summary stores it."""
    if key == "avg_map":
        return part["avg_map_mean"], part["avg_map_std"]
    if isinstance(part[key], dict):
        return part[key]["mean"], part[key]["std"]
    return part[key], part[f"{key}_std"]


def verdict(with_part: dict, without_part: dict, key: str = "avg_map", higher: bool = True) -> dict:
    """Confirmed when the difference exceeds the larger seed spread, refuted when it is
    that far the other way, otherwise no measurable difference."""
    (a, sa), (b, sb) = stat(with_part, key), stat(without_part, key)
    delta = (a - b) if higher else (b - a)
    spread = max(sa, sb)
    out = {"with": round(a, 4), "without": round(b, 4), "delta": round(delta, 4)}
    if len(with_part["seeds"]) < 2 or len(without_part["seeds"]) < 2:
        return {**out, "spread": None, "verdict": "one seed only: undecided"}
    word = ("confirmed" if delta > spread else "refuted" if delta < -spread
            else "no measurable difference")
    return {**out, "spread": round(spread, 4), "verdict": word}


# Each thesis claim as (claim, method, the variant without the part, its measures: (name, the
# summary's key, whether higher is better)); a measure missing from either summary is left out.
FINEST, KEYWORDS = ("finest_avg_map", "avg_map", True), ("keyword_map", "keyword_map", True)
CLAIMS = [
    *(("1_adversary", m, f"{m}-no-adversary",
       [FINEST, ("modality_classifier_acc", "modality_classifier_acc", False)])
      for m in ("dhaml", "aaml")),
    ("2_hierarchy", "dhaml", "dhaml-single-level",
     [FINEST, ("hierarchical_map", "hierarchical_map", True)]),
    ("3_attention", "aaml", "aaml-no-attention",
     [FINEST, KEYWORDS, ("keyword_success_at_10", "keyword_success_at_10", True)]),
    ("4_polynomial_loss", "aaml", "aaml-triplet",
     [("final_avg_map", "avg_map", True), ("epochs_to_95", "epochs_to_95", False)]),
    ("4_polynomial_loss", "aaml", "aaml-all-informative",
     [("hardest_vs_all_informative", "avg_map", True)]),
    ("5_instance_term", "dhaml", "dhaml-no-instance",
     [FINEST, ("paired_r1", "paired_r1", True), KEYWORDS]),
]


def ablations(summary: dict[str, dict], levels: tuple[str, ...]) -> dict[str, Any]:
    """A verdict per claim and measure, for the claims whose two variants both ran; beside
    them, what the hierarchy and attention claims are read with."""
    out: dict[str, Any] = {}
    for claim, method, without, measures in CLAIMS:
        if method in summary and without in summary:
            on, off = summary[method], summary[without]
            out.setdefault(claim, {}).setdefault(method, {}).update(
                {name: verdict(on, off, key, higher) for name, key, higher in measures
                 if key == "avg_map" or key in on and key in off})
    top = levels[0]
    if "2_hierarchy" in out:
        on, hier = summary["dhaml"], out["2_hierarchy"]["dhaml"]
        hier[f"{top}_level_map"] = {"with": on["levels"][top]["mean"],
                                    "without": summary["dhaml-single-level"]["levels"][top]["mean"]}
        if "concat_retrieval" in on:
            cr = on["concat_retrieval"]
            hier["concat_retrieval"] = {"finest_avg_map": cr["avg_map"]["mean"],
                                        "hierarchical_map": cr["hierarchical_map"]["mean"],
                                        f"{top}_level_map": cr["levels"][top]["mean"]}
    if "3_attention" in out and "rerank_top20_avg_map" in summary["aaml"]:
        out["3_attention"]["aaml"]["rerank_top20_avg_map"] = summary["aaml"]["rerank_top20_avg_map"]
    return out


def figure(result: dict) -> Any:
    """Test mAP of every method and ablation, and the validation curves of the first seed."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(13, 4.5))
    summary = {**result["methods"], **result["ablation_runs"]}
    colours = ["tab:gray" if n in BASELINES else "tab:blue" if n in result["methods"]
               else "tab:orange" for n in summary]
    bars(left, list(summary), {"test": [s["avg_map_mean"] for s in summary.values()]},
         bar={"yerr": [s["avg_map_std"] for s in summary.values()], "capsize": 3,
              "color": colours}, ticks={"rotation": 60, "ha": "right"},
         ylabel="test avg mAP@all (finest level)",
         title="methods (blue), baselines (gray), ablations (orange)")
    for r in result["runs"]:
        if r["variant"] in ("aaml", "aaml-triplet", "dhaml") and r["seed"] == result["seeds"][0]:
            right.plot(range(1, len(r["val_curve"]) + 1), r["val_curve"], label=r["variant"])
    right.set(xlabel="epoch", ylabel="validation avg mAP", title="convergence (first seed)")
    right.legend()
    return fig


def markdown(result: dict) -> str:
    return render("quality", **{"keyword_references": None, **result},
                  summary={**result["methods"], **result["ablation_runs"]})


def keyword_references(rows: list[dict]) -> dict[str, Any] | None:
    """Chance and caption search: the same for every run (they do not depend on the model)."""
    found = next((r["keywords"] for r in rows if r.get("keywords")), None)
    if found is None:
        return None
    refs = {key: found[key] for key in ("n_queries", "n_images", "chance", "caption_search",
                                        "lexical") if key in found}
    for part in ("seen", "unseen"):
        if part in found:
            refs[part] = {k: found[part][k] for k in ("n_queries", "caption_search")}
    return refs
