"""The quality benchmark's report: the thesis claims as verdicts (each ablation's summary
against its full method's, the seed spread deciding between confirmed, refuted and no
measurable difference), the markdown tables (label mAP, what people type, ablations) and the plot
of bench/results/quality.png."""

from __future__ import annotations

from typing import Any

from bench.harness import pyplot
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


def ablations(summary: dict[str, dict], levels: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    adv = {}
    for m in ("dhaml", "aaml"):
        if m in summary and f"{m}-no-adversary" in summary:
            on, off = summary[m], summary[f"{m}-no-adversary"]
            adv[m] = {"finest_avg_map": verdict(on, off), "modality_classifier_acc": verdict(
                on, off, "modality_classifier_acc", higher=False)}
    if adv:
        out["1_adversary"] = adv
    if "dhaml" in summary and "dhaml-single-level" in summary:
        on, off = summary["dhaml"], summary["dhaml-single-level"]
        hier = {"finest_avg_map": verdict(on, off),
                "hierarchical_map": verdict(on, off, "hierarchical_map"),
                f"{levels[0]}_level_map": {"with": on["levels"][levels[0]]["mean"],
                                           "without": off["levels"][levels[0]]["mean"]}}
        if "concat_retrieval" in on:
            cr = on["concat_retrieval"]
            hier["concat_retrieval"] = {"finest_avg_map": cr["avg_map"]["mean"],
                                        "hierarchical_map": cr["hierarchical_map"]["mean"],
                                        f"{levels[0]}_level_map": cr["levels"][levels[0]]["mean"]}
        out["2_hierarchy"] = {"dhaml": hier}
    if "aaml" in summary and "aaml-no-attention" in summary:
        att = {"finest_avg_map": verdict(summary["aaml"], summary["aaml-no-attention"])}
        if "keyword_map" in summary["aaml"] and "keyword_map" in summary["aaml-no-attention"]:
            for key in ("keyword_map", "keyword_success_at_10"):
                att[key] = verdict(summary["aaml"], summary["aaml-no-attention"], key)
        if "rerank_top20_avg_map" in summary["aaml"]:
            att["rerank_top20_avg_map"] = summary["aaml"]["rerank_top20_avg_map"]
        out["3_attention"] = {"aaml": att}
    if "aaml" in summary and "aaml-triplet" in summary:
        poly, trip = summary["aaml"], summary["aaml-triplet"]
        loss = {"final_avg_map": verdict(poly, trip),
                "epochs_to_95": verdict(poly, trip, "epochs_to_95", higher=False)}
        if "aaml-all-informative" in summary:
            loss["hardest_vs_all_informative"] = verdict(poly, summary["aaml-all-informative"])
        out["4_polynomial_loss"] = {"aaml": loss}
    if "dhaml" in summary and "dhaml-no-instance" in summary:
        on, off = summary["dhaml"], summary["dhaml-no-instance"]
        instance = {"finest_avg_map": verdict(on, off), "paired_r1": verdict(on, off, "paired_r1")}
        if "keyword_map" in on and "keyword_map" in off:
            instance["keyword_map"] = verdict(on, off, "keyword_map")
        out["5_instance_term"] = {"dhaml": instance}
    return out


def figure(result: dict, rows: list[dict]) -> Any:
    """Test mAP of every method and ablation, and the validation curves of the first seed."""
    fig, (bars, curves) = pyplot().subplots(1, 2, figsize=(13, 4.5))
    summary = {**result["methods"], **result["ablation_runs"]}
    names = list(summary)
    bars.bar(range(len(names)), [summary[n]["avg_map_mean"] for n in names],
             yerr=[summary[n]["avg_map_std"] for n in names], capsize=3,
             color=["tab:gray" if n in BASELINES else "tab:blue" if n in result["methods"]
                    else "tab:orange" for n in names])
    bars.set_xticks(range(len(names)), names, rotation=60, ha="right")
    bars.set(ylabel="test avg mAP@all (finest level)",
             title="methods (blue), baselines (gray), ablations (orange)")
    for name in ("aaml", "aaml-triplet", "dhaml"):
        for r in rows:
            if r["variant"] == name and r["seed"] == result["seeds"][0]:
                curves.plot(range(1, len(r["val_curve"]) + 1), r["val_curve"], label=name)
    curves.set(xlabel="epoch", ylabel="validation avg mAP", title="convergence (first seed)")
    curves.legend()
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
