"""How much finest-label information do the backbone features hold, and does unfreezing help?

    flock /work/heavy.lock nice -n 10 python bench/feature_probes.py \
        --data artifacts/data/openmoji --cache artifacts/cache

Issue 3 asks the thesis methods for >= 0.60 finest-level mAP on OpenMoji; every method ties at
0.53-0.56, and embedding each item as a per-modality class posterior, with no cross-modal
training at all, scores the same (bench/posterior_ceiling.py). This script asks whether other
readings of the frozen backbones hold more label information, and whether training the last
image block does, with one measure: finest-label (subgroup) accuracy of a linear probe
(standardised features, multinomial logistic regression, C = 1, fixed up front), fitted on the
whole train split and scored on the test split. A diagnostic: nothing here selects a model.

(a) views of the cached features: image pooled / max over the 7x7 regions / regions mean+max;
    text pooled / max over tokens / pooled+max.
(b) EfficientNet-Lite0 stage ends (blocks 2, 4, 7, 10, 14, 15 and the head conv, each pooled
    as mean+max over positions), extracted once per run from the images.
(c) the last block (15) + head conv trained with a linear head by cross-entropy from the
    block-14 maps, vs the same head on the frozen tail trained the same way; several seeds,
    --epochs 10 by default (about 2 min per trained run on one core; the whole run ~10 min).

Each probe's test posteriors are also scored as retrieval embeddings against the other
modality's pooled-feature posteriors (the posterior ceiling's mAP@all, finest level), to put the
accuracies on the scale of issue 3. Writes bench/results/feature_probes.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import RESULTS, ROOT, Data, verdict  # noqa: E402

from models.backbones.cache import FeatureCache  # noqa: E402
from models.backbones.extract import _decode_ahead  # noqa: E402
from models.data.corpus import Corpus, Item, read_corpus  # noqa: E402
from models.evaluation.report import evaluate_embeddings  # noqa: E402
from models.features import FeatureSet  # noqa: E402

STAGE_ENDS = (2, 4, 7, 10, 14, 15)  # last block of each stage: 24, 40, 80, 112, 192, 320 ch
TAIL_FROM = 14  # (c) trains the blocks after this one and the head conv
BATCH = 32
LABEL = {"test_acc": "test accuracy", "posterior_map": "posterior mAP"}


# ---- linear probes -------------------------------------------------------------------------


def probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int
) -> tuple[float, np.ndarray]:
    """Test accuracy and test class posteriors (n_test, n_classes) of a logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(train_x), train_y)
    test_s = scaler.transform(test_x)
    post = np.zeros((len(test_x), n_classes), dtype=np.float32)
    post[:, clf.classes_] = clf.predict_proba(test_s)
    return float((clf.predict(test_s) == test_y).mean()), post


def posterior_map(
    images: np.ndarray, texts: np.ndarray, labels: np.ndarray, levels: tuple[str, ...]
) -> float:
    """Finest-level avg mAP@all with both modalities embedded as L2-normalised posteriors."""
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (images, texts)]
    return float(evaluate_embeddings(unit[0], unit[1], labels, levels)["avg_map"])


def cached_views(fs: FeatureSet) -> dict[str, np.ndarray]:
    regions = fs.image_regions.astype(np.float32)
    tokens = np.where(fs.text_mask[..., None], fs.text_tokens.astype(np.float32), -np.inf)
    token_max = tokens.max(axis=1)
    return {
        "image pooled": fs.image_pooled,
        "image region max": regions.max(axis=1),
        "image region mean+max": np.concatenate([regions.mean(1), regions.max(1)], axis=1),
        "text pooled": fs.text_pooled,
        "text token max": token_max,
        "text pooled+max": np.concatenate([fs.text_pooled, token_max], axis=1),
    }


# ---- EfficientNet-Lite0 stage ends -----------------------------------------------------------


@torch.inference_mode()
def stage_pass(net: Any, pixels: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Mean+max pooled stage ends and the block-TAIL_FROM map of one batch (eval mode).

    Follows EfficientNet.extract_features (no drop-connect at inference)."""
    out = {}
    x = net._swish(net._bn0(net._conv_stem(pixels)))
    for i, block in enumerate(net._blocks):
        x = block(x)
        if i == TAIL_FROM:
            tail_input = x
        if i in STAGE_ENDS:
            out[f"block {i}"] = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
    head = net._swish(net._bn1(net._conv_head(x)))
    out["head"] = torch.cat([head.mean((2, 3)), head.amax((2, 3))], 1)
    return out, tail_input


def extract_stages(
    corpus: Corpus, items: list[Item], net: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Stage features (name -> (n, 2c) float32) and block-14 maps (n, 192, 7, 7) float16."""
    stages: dict[str, list[np.ndarray]] = {}
    maps = []
    contents = [corpus.image_path(item).read_bytes() for item in items]
    for pixels in _decode_ahead(contents, BATCH):  # the feature cache's decoding
        feats, tail_input = stage_pass(net, torch.from_numpy(pixels))
        for name, value in feats.items():
            stages.setdefault(name, []).append(value.numpy())
        maps.append(tail_input.half().numpy())
    return {k: np.concatenate(v) for k, v in stages.items()}, np.concatenate(maps)


# ---- (c) partial fine-tune ------------------------------------------------------------------


class Tail(torch.nn.Module):
    """Blocks after TAIL_FROM + head conv of EfficientNet-Lite0, mean-pooled, and a linear head."""

    def __init__(self, net: Any, n_classes: int) -> None:
        super().__init__()
        self.blocks: torch.nn.ModuleList = copy.deepcopy(net._blocks[TAIL_FROM + 1 :])
        self.conv, self.bn, self.act = (
            copy.deepcopy(m) for m in (net._conv_head, net._bn1, net._swish)
        )
        self.head: torch.nn.Module = torch.nn.Sequential(
            torch.nn.Dropout(0.2), torch.nn.Linear(1280, n_classes)
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.act(self.bn(self.conv(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))


def train_tail(
    net: Any,
    maps: tuple[np.ndarray, np.ndarray],
    scorer: Scorer,
    seed: int,
    epochs: int,
    tune: bool,
) -> dict:
    """Cross-entropy, AdamW (head lr 1e-3, tail lr 1e-4, wd 1e-4), batch 64, last epoch scored.

    Same seed, same head initialisation and batch order whether the tail is trained or not."""
    torch.manual_seed(seed)
    model = Tail(net, scorer.n_classes)
    tail = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    for p in tail:
        p.requires_grad_(tune)
    groups = [{"params": list(model.head.parameters()), "lr": 1e-3}]
    opt = torch.optim.AdamW(
        groups + ([{"params": tail, "lr": 1e-4}] if tune else []), weight_decay=1e-4
    )
    train, test = (torch.from_numpy(m) for m in maps)
    started = time.perf_counter()
    body: Any = model.pool
    if not tune:  # the frozen tail runs in eval mode: its pooled output is fixed, compute it once
        model.eval()
        train, test = batched(model.pool, train), batched(model.pool, test)
        body = torch.nn.Identity()
    labels, curve = torch.from_numpy(scorer.train_y), []
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(train)).split(64):
            loss = F.cross_entropy(model.head(body(train[idx].float())), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        logits = batched(lambda x: model.head(body(x)), test).numpy()
        curve.append(float((logits.argmax(1) == scorer.test_y).mean()))
    return {
        "seed": seed,
        "test_acc": curve[-1],
        "curve": curve,
        "posteriors": softmax(logits),
        "seconds": round(time.perf_counter() - started, 1),
    }


@torch.no_grad()
def batched(fn: Any, x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """fn over x in chunks, without autograd (the caller sets eval mode)."""
    return torch.cat([fn(chunk.float()) for chunk in x.split(size)])


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ---- the three measurements ------------------------------------------------------------------


class Scorer:
    """Finest labels of both splits; scores a probe by test accuracy and posterior mAP."""

    def __init__(self, data: Data) -> None:
        self.levels = data.corpus.levels
        fine = len(self.levels) - 1
        self.n_classes = len(data.corpus.label_sets[self.levels[fine]])
        self.train_y = data.labels(data.train_items, [fine])[:, 0]
        self.test_levels = data.labels(data.test_items, list(range(fine + 1)))
        self.test_y = self.test_levels[:, fine]
        self.reference: dict[str, np.ndarray] = {}  # modality -> posteriors of its pooled probe

    def map_of(self, modality: str, post: np.ndarray) -> float:
        if modality == "image":
            return posterior_map(post, self.reference["text"], self.test_levels, self.levels)
        return posterior_map(self.reference["image"], post, self.test_levels, self.levels)

    def fit(self, train_x: np.ndarray, test_x: np.ndarray) -> tuple[float, np.ndarray]:
        return probe(train_x, self.train_y, test_x, self.test_y, self.n_classes)

    def row(self, name: str, modality: str, dims: int, acc: float, post: np.ndarray) -> dict:
        row = {
            "name": name,
            "modality": modality,
            "dims": dims,
            "test_acc": round(acc, 4),
            "posterior_map": round(self.map_of(modality, post), 4),
        }
        print(f"{name:26s} {dims:5d} d  acc {acc:.3f}  mAP {row['posterior_map']:.3f}", flush=True)
        return row


def views_rows(data: Data, scorer: Scorer) -> list[dict]:
    """(a); also sets the reference posteriors (the pooled views) every other row pairs with."""
    train, test = cached_views(data.train), cached_views(data.test)
    fits = {k: scorer.fit(train[k], test[k]) for k in train}
    scorer.reference = {m: fits[f"{m} pooled"][1] for m in ("image", "text")}
    return [scorer.row(k, k.split()[0], train[k].shape[1], *fits[k]) for k in train]


def stage_rows(data: Data, scorer: Scorer) -> tuple[list[dict], dict, tuple]:
    net = data.backbones.image.net
    train, train_maps = extract_stages(data.corpus, data.train_items, net)
    test, test_maps = extract_stages(data.corpus, data.test_items, net)
    # the stage pass must reproduce the cached pooled feature (same images, same network)
    check = {
        "max_abs_diff_head_mean_vs_cached_pooled": float(
            np.abs(train["head"][:, :1280] - data.train.image_pooled).max()
        )
    }
    combos = {**{k: [k] for k in train}, "blocks 14+15+head": ["block 14", "block 15", "head"]}
    rows = []
    for name, parts in combos.items():
        train_x, test_x = (np.concatenate([s[p] for p in parts], 1) for s in (train, test))
        rows.append(scorer.row(name, "image", train_x.shape[1], *scorer.fit(train_x, test_x)))
    return rows, check, (train_maps, test_maps)


def finetune_rows(data: Data, scorer: Scorer, maps: tuple, seeds: list[int], epochs: int) -> dict:
    net = data.backbones.image.net
    out: dict[str, Any] = {}
    for name, tune in (("frozen tail, linear head", False), ("tail trained, linear head", True)):
        runs = []
        for seed in seeds:
            run = train_tail(net, maps, scorer, seed, epochs, tune)
            run["posterior_map"] = round(scorer.map_of("image", run.pop("posteriors")), 4)
            print(
                f"{name:26s} seed {seed} acc {run['test_acc']:.3f} mAP "
                f"{run['posterior_map']:.3f} ({run['seconds']:.0f}s)",
                flush=True,
            )
            runs.append(run)
        out[name] = {
            "test_acc": mean_std([r["test_acc"] for r in runs]),
            "posterior_map": mean_std([r["posterior_map"] for r in runs]),
            "seeds": seeds,
            "runs": runs,
        }
    return out


def measure(data: Data, seeds: list[int], epochs: int) -> dict[str, Any]:
    scorer = Scorer(data)
    views = views_rows(data, scorer)
    stages, check, maps = stage_rows(data, scorer)
    return {
        "n_train": len(data.train_items),
        "n_test": len(data.test_items),
        "n_classes": scorer.n_classes,
        "seeds": seeds,
        "epochs": epochs,
        "views": views,
        "stages": stages,
        "stage_check": check,
        "finetune": (tails := finetune_rows(data, scorer, maps, seeds, epochs)),
        # trained minus frozen, against the larger seed std (quality.py's ablation verdict)
        "trained_vs_frozen": {
            k: verdict(tails["tail trained, linear head"], tails["frozen tail, linear head"], k)
            for k in ("test_acc", "posterior_map")
        },
    }


def mean_std(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "std": round(std, 4)}


# ---- report ----------------------------------------------------------------------------------


def markdown(r: dict) -> str:
    loads = [" / ".join(map(str, r[k])) for k in ("load_before", "load_after")]
    check = r["stage_check"]["max_abs_diff_head_mean_vs_cached_pooled"]
    lines = [
        "# Linear probes of the backbone features on OpenMoji (finest label, test split)",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}. Wall time {r['wall_seconds'] / 60:.1f} min; load average "
        f"(1/5/15 min) {loads[0]} before, {loads[1]} after.",
        "",
        f"Fitted on the whole train split ({r['n_train']} items), scored on the test split "
        f"({r['n_test']} items, {r['n_classes']} finest classes). A diagnostic: every setting "
        "was fixed before the run and nothing here selects a model. Probe: standardised "
        "features, multinomial logistic regression, C = 1 (deterministic: one fit). "
        "Posterior mAP: finest-level avg mAP@all when this probe's test posteriors embed its "
        "modality and the other modality's pooled-feature posteriors embed the other (image "
        "pooled + text pooled is the posterior ceiling fitted on the whole train split).",
        "",
        "## (a) Views of the cached features",
        "",
        *probe_table(r["views"]),
        "",
        "## (b) EfficientNet-Lite0 stage ends (mean+max over positions)",
        "",
        f"Check: the stage pass reproduces the cached pooled feature (max abs difference "
        f"{check:.2g}).",
        "",
        *probe_table(r["stages"]),
        "",
        *finetune_section(r),
    ]
    return "\n".join(lines) + "\n"


def probe_table(rows: list[dict]) -> list[str]:
    return [
        "| probe | dims | test acc (finest) | posterior mAP@all |",
        "|---|---|---|---|",
        *(
            f"| {x['name']} | {x['dims']} | {x['test_acc']:.3f} | {x['posterior_map']:.3f} |"
            for x in rows
        ),
    ]


def finetune_section(r: dict) -> list[str]:
    lines = [
        f"## (c) Last block + head conv trained vs frozen (seeds {r['seeds']}, "
        f"{r['epochs']} epochs, last epoch scored)",
        "",
        "From cached block-14 maps: block 15 + head conv + its batch norm (ReLU6, mean-pooled) and "
        "a dropout-0.2 linear head, cross-entropy, AdamW (head lr 1e-3, tail lr 1e-4, "
        "weight decay 1e-4), batch 64, no augmentation; frozen: the same head on the same "
        "tail in eval mode, trained the same way.",
        "",
        "| run | test acc mean ± std | per seed | posterior mAP mean ± std | s per run |",
        "|---|---|---|---|---|",
    ]
    for name, x in r["finetune"].items():
        seeds = " / ".join(f"{run['test_acc']:.3f}" for run in x["runs"])
        secs = statistics.mean(run["seconds"] for run in x["runs"])
        lines.append(
            f"| {name} | {x['test_acc']['mean']:.3f} ± {x['test_acc']['std']:.3f} | {seeds} | "
            f"{x['posterior_map']['mean']:.3f} ± {x['posterior_map']['std']:.3f} | {secs:.0f} |"
        )
    late = [
        statistics.mean(u["curve"][-1] - u["curve"][max(0, len(u["curve"]) - 3)] for u in x["runs"])
        for x in r["finetune"].values()
    ]
    lines += [
        "",
        f"Both heads train for a fixed, short budget (--epochs; the last two epochs still moved "
        f"test accuracy by {' / '.join(f'{v:+.3f}' for v in late)}, frozen / trained), "
        f"so compare with the linear probe of the same frozen pooled feature fitted to "
        f"convergence in (a): {r['views'][0]['test_acc']:.3f} accuracy, "
        f"{r['views'][0]['posterior_map']:.3f} posterior mAP.",
        "",
    ]
    for key, v in r["trained_vs_frozen"].items():
        lines.append(
            f"Trained minus frozen, {LABEL[key]}: {v['delta']:+.3f} (larger seed std "
            f"{v['spread']}): {v['verdict']}.  "
        )
    return lines


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (views, stages, curves) = plt.subplots(1, 3, figsize=(15, 4.5))
    names = [x["name"] for x in r["views"]]
    views.barh(
        names,
        [x["test_acc"] for x in r["views"]],
        color=["tab:blue" if x["modality"] == "image" else "tab:green" for x in r["views"]],
    )
    views.set(
        xlabel="test accuracy (finest label)", title="(a) cached feature views", xlim=(0.4, 0.8)
    )
    names = [x["name"] for x in r["stages"]]
    stages.plot(names[:-1], [x["test_acc"] for x in r["stages"][:-1]], "o-")
    stages.plot(names[-1:], [r["stages"][-1]["test_acc"]], "s", color="tab:purple")
    pooled = r["views"][0]["test_acc"]
    for ax in (stages, curves):
        ax.axhline(pooled, ls="--", color="tab:gray", lw=1, label="probe: image pooled")
    stages.set(ylabel="test accuracy", title="(b) EfficientNet-Lite0 stage ends (mean+max)")
    stages.tick_params(axis="x", rotation=45)
    for (name, x), color in zip(r["finetune"].items(), ("tab:gray", "tab:red"), strict=True):
        runs = np.array([run["curve"] for run in x["runs"]])
        epochs = np.arange(1, runs.shape[1] + 1)
        curves.plot(epochs, runs.mean(0), color=color, label=name)
        curves.fill_between(epochs, runs.min(0), runs.max(0), color=color, alpha=0.2)
    curves.set(
        xlabel="epoch", ylabel="test accuracy", title="(c) tail trained vs frozen (seed range)"
    )
    curves.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine(threads: int) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    cores = f"{os.cpu_count()} CPU cores (shared)"
    return f"{platform.machine()} {cpu}, {cores}, {threads} torch thread(s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "artifacts/data/openmoji")
    parser.add_argument("--cache", type=Path, default=ROOT / "artifacts/cache")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10, help="(c) epochs per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see quality.py)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite OUT's .md and .png from its .json"
    )
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((args.out / "feature_probes.json").read_text())
        (args.out / "feature_probes.md").write_text(markdown(result))
        plot(result, args.out / "feature_probes.png")
        return 0
    load_before, started = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    torch.set_num_threads(args.threads)
    data = Data(read_corpus(args.data), FeatureCache(args.cache), torch.device("cpu"))
    result = {
        "command": "flock /work/heavy.lock nice -n 10 python bench/feature_probes.py "
        + " ".join(sys.argv[1:]),
        "machine": machine(args.threads),
        "load_before": load_before,
        **measure(data, [int(s) for s in args.seeds.split(",")], args.epochs),
    }
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_probes.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "feature_probes.md").write_text(markdown(result))
    plot(result, args.out / "feature_probes.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
