"""The quality benchmark's report: the thesis claims as verdicts (each ablation's summary
against its full method's, the seed spread deciding between confirmed, refuted and no
measurable difference), the markdown tables (label mAP, what people type, ablations) and the plot
of bench/results/quality.png."""

from __future__ import annotations

import json
from typing import Any

from bench.harness import pyplot

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
    levels = result["levels"]
    lines = [
        "# Retrieval quality on OpenMoji (test split, mAP@all, mean ± std over seeds "
        f"{result['seeds']})", "", f"Command: `{result['command']}`  ",
        f"Wall time: {result['wall_seconds'] / 60:.1f} min on {result['machine']}."
        + ("" if result["complete"] else " **Incomplete: cut short by the session clock; the "
           "seeds column says how many seeds each row has.**"),
        "",
        f"| method | avg mAP ({levels[-1]}) | i2t | t2i | "
        + " | ".join(f"{lv} avg" for lv in levels)
        + " | hierarchy-weighted | R@1 i2t / t2i | modality-clf acc | epochs to 95% | train s"
        " | seeds |",
        "|---" * (10 + len(levels)) + "|",
    ]
    for name, s in {**result["methods"], **result["ablation_runs"]}.items():
        lvl = " | ".join(f"{s['levels'][lv]['mean']:.3f} ± {s['levels'][lv]['std']:.3f}"
                         for lv in levels)
        lines.append(
            f"| {name} | **{s['avg_map_mean']:.3f} ± {s['avg_map_std']:.3f}** | "
            f"{s['i2t_map']['mean']:.3f} | {s['t2i_map']['mean']:.3f} | {lvl} | "
            f"{s['hierarchical_map']['mean']:.3f} | {s['recall']['i2t']['R@1']['mean']:.3f} / "
            f"{s['recall']['t2i']['R@1']['mean']:.3f} | {s['modality_classifier_acc']['mean']:.3f}"
            f" | {s['epochs_to_95']['mean']:.1f} | {s['train_seconds']['mean']:.0f} | "
            f"{len(s['seeds'])} |")
    lines += [*keyword_table(result), "", "## Ablations (thesis claims)", "",
              "| claim | method | measure | with | without | delta | seed spread | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for claim, per_method in result["ablations"].items():
        for method, measures in per_method.items():
            for measure, v in measures.items():
                if isinstance(v, dict) and "verdict" in v:
                    lines.append(f"| {claim} | {method} | {measure} | {v['with']} | {v['without']}"
                                 f" | {v['delta']} | {v['spread']} | {v['verdict']} |")
                else:
                    lines.append(f"| {claim} | {method} | {measure} | {json.dumps(v)} | | | | |")
    return "\n".join(lines) + "\n"


def keyword_table(result: dict) -> list[str]:
    """What people type: keyword queries and the exact item, beside chance and caption search."""
    refs = result.get("keyword_references")
    if not refs:
        return []
    lines = [
        "", f"## What people type: {refs['n_queries']} keyword queries on the {refs['n_images']} "
        "test images", "",
        "An image is relevant when CLDR lists the keyword for its emoji; success@10 = share of "
        "queries with a relevant image in the top 10; exact item = paired R@1 / R@10 (the name "
        "finds its own image and back, mean of both directions).", "",
        "| method | keyword mAP | success@10 | mAP seen / unseen queries | paired R@1 "
        "| paired R@10 | subgroup avg mAP | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in {**result["methods"], **result["ablation_runs"]}.items():
        if "keyword_map" not in s:
            continue
        by = s.get("keyword_by_query")
        split = f"{by['seen']['map']:.3f} / {by['unseen']['map']:.3f}" if by else ""
        lines.append(
            f"| {name} | **{s['keyword_map']:.3f} ± {s['keyword_map_std']:.3f}** | "
            f"{s['keyword_success_at_10']:.3f} ± {s['keyword_success_at_10_std']:.3f} | {split} | "
            f"{s['paired_r1']['mean']:.3f} | {s['paired_r10']['mean']:.3f} | "
            f"{s['avg_map_mean']:.3f} ± {s['avg_map_std']:.3f} | {len(s['seeds'])} |")
    for name, key in (("chance", "chance"), ("caption search (raw MiniLM, query vs name)",
                                             "caption_search")):
        ref = refs[key]
        lines.append(f"| {name} | {ref['map']:.3f} | {ref['success_at_10']:.3f} | | | | | |")
    seen = refs.get("seen")
    if seen:
        unseen = refs["unseen"]
        lines += [
            "", f"Seen queries ({seen['n_queries']}) were a training caption (a train emoji's name "
            f"or keyword); unseen ones ({unseen['n_queries']}) were not. Caption search gets "
            f"{seen['caption_search']['map']:.3f} / {unseen['caption_search']['map']:.3f} mAP "
            "on them.",
        ]
    if "dhaml-test-items-trained" in result["ablation_runs"]:
        lines += [
            "", "dhaml-test-items-trained is a diagnostic, not a method (in both tables): the "
            "default config trained with the test images added, each with its name and never its "
            "keywords. The queries are the same, so its gap to dhaml is what new items cost.",
        ]
    return lines


def keyword_references(rows: list[dict]) -> dict[str, Any] | None:
    """Chance and caption search: the same for every run (they do not depend on the model)."""
    found = next((r["keywords"] for r in rows if r.get("keywords")), None)
    if found is None:
        return None
    refs = {key: found[key] for key in ("n_queries", "n_images", "chance", "caption_search")}
    for part in ("seen", "unseen"):
        if part in found:
            refs[part] = {k: found[part][k] for k in ("n_queries", "caption_search")}
    return refs
