"""`xmr index build --checkpoint CKPT --data CORPUS --out INDEX`: the batch re-index job.

The edge of the index package: here the settings are read (index.settings: XMR_DEVICE,
XMR_VECTOR_BACKEND, XMR_MILVUS_*, XMR_RECALL_TARGET; flags win), the engine made (the encoder
loaded on its device, or a Ray actor pool) and progress shown; the job itself (index.build) only
sees an engine (index.engines) and a progress function.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from index.payload import TEXT_KEY, text_key
from index.records import NewItem, bytes_hash, text_hash
from models.device import HELP as DEVICE_HELP

if TYPE_CHECKING:
    from index.engines import Engine
    from index.settings import BuildSettings


def add_parser(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="build and manage index directories")
    actions = index.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="re-embed a corpus into a new index generation "
                               "and swap it in atomically (resumes an interrupted build)")
    build.add_argument("--checkpoint", type=Path, required=True)
    build.add_argument("--data", type=Path, required=True, help="corpus directory")
    build.add_argument("--out", type=Path, required=True, help="index directory")
    build.add_argument("--index-type", default="auto",
                       help="FAISS factory string (Flat, IVF1024,Flat, HNSW32, IVF1024,PQ32) "
                            "or auto (by corpus size)")
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="how vectors are computed: in this process, or by an actor pool "
                            "of encoders on Ray (docs/scaling.md); the index written is the same")
    build.add_argument("--address", default=None,
                       help="Ray cluster address (auto, ray://HEAD:10001); default: start a "
                            "local Ray instance")
    build.add_argument("--workers", type=int, default=None,
                       help="encoder actors for --engine ray (default: one per GPU of the "
                            "cluster, else one per CPU)")
    build.add_argument("--cache", type=Path, default=None,
                       help="backbone feature cache directory (the one `xmr train` filled): "
                            "corpus items already there are not run through the backbones again")
    build.add_argument("--device", default=None, help=DEVICE_HELP)
    build.add_argument("--recall-target", type=float, default=None,
                       help="recall@10 to tune the index's nprobe / efSearch to, on the "
                            "corpus's vectors of the other modality (XMR_RECALL_TARGET; "
                            "default 0.95)")
    build.add_argument("--text-fields", default=None, metavar="FIELD,FIELD",
                       help="metadata fields whose words hybrid search matches beside each "
                            "item's caption (XMR_TEXT_FIELDS; default none: the caption only)")
    build.add_argument("--fresh", action="store_true",
                       help="discard an unfinished build instead of resuming it")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--progress-json", action="store_true",
                       help="progress as one JSON line per committed batch on stdout "
                            '({"done": N, "total": M, "rate": items per second}) instead of a '
                            "bar: what a service's re-index job reads")
    index.set_defaults(run=run)


def corpus_items(data: Path) -> tuple[list[NewItem], tuple[str, ...]]:
    """The items a corpus makes, keyed by its row ids. A row is an image-text pair and an image
    may have several rows, so: one image item per distinct image file, keyed by the id of its
    first row and carrying that row's text (its caption) and labels; one text item per
    distinct text, keyed `<row id>:text` by the first row that has it. Row ids are unique in a
    corpus; a key used twice (a row id that is another row's text key) is refused."""
    from models.data.corpus import read_corpus

    corpus = read_corpus(data)
    images: dict[Path, NewItem] = {}
    texts: dict[str, NewItem] = {}  # by text_hash
    items: list[NewItem] = []
    for entry in corpus.items:
        path = corpus.image_path(entry).resolve()
        digest = text_hash(entry.text)
        try:
            if path not in images:
                images[path] = NewItem("image", bytes_hash(path.read_bytes()), entry.labels,
                                       text=entry.text, source=str(path), key=entry.id)
                items.append(images[path])
            if digest not in texts:
                texts[digest] = NewItem("text", digest, entry.labels, text=entry.text,
                                        key=text_key(entry.id))
                items.append(texts[digest])
        except FileNotFoundError as err:
            raise ValueError(f"{data}: row {entry.id!r}: image {entry.image!r}: no such file"
                             ) from err
        except (OSError, ValueError) as err:
            raise ValueError(f"{data}: row {entry.id!r}: image {entry.image!r}: {err}") from err
    keys = Counter(item.key for item in items)
    if twice := [key for key, n in keys.items() if n > 1]:
        raise ValueError(f"{data}: keys used by two items: {twice[:5]} (a row id equals "
                         f"another row's text key, `<row id>{TEXT_KEY}`)")
    return items, corpus.levels


def _engine(args: argparse.Namespace, device: str) -> Engine:
    """The local engine embeds in this process with the encoder loaded here (so a device that
    is not there fails now); the Ray engine on an actor pool (each actor loads its own)."""
    from index.engines import LocalEngine
    from index.ray_engine import RayEngine
    from models.embedder import CheckpointEmbedder, EncoderSpec
    from models.inference import Encoder

    cache = args.cache.resolve() if args.cache is not None else None
    spec = EncoderSpec(args.checkpoint.resolve(), cache)
    if args.engine == "ray":
        return RayEngine(spec, address=args.address, workers=args.workers,
                         batch_size=args.batch_size)
    if args.address is not None or args.workers is not None:
        raise SystemExit("xmr index build: --address and --workers need --engine ray")
    try:
        encoder = Encoder.load(args.checkpoint, device)
    except ValueError as err:  # e.g. cuda asked for on a machine without one
        raise SystemExit(f"xmr index build: {err}") from err
    return LocalEngine(spec, batch_size=args.batch_size,
                       embedder=CheckpointEmbedder(encoder, cache))


def _settings(args: argparse.Namespace) -> BuildSettings:
    from pydantic import ValidationError

    from index.settings import BuildSettings, setting_problems

    given = {key: getattr(args, key) for key in ("device", "recall_target", "text_fields")
             if getattr(args, key) is not None}
    try:
        return BuildSettings(**given)
    except ValidationError as err:
        raise SystemExit(f"xmr index build: {'; '.join(setting_problems(err, given))}") from err


@contextmanager
def _progress(args: argparse.Namespace) -> Iterator[Callable[[int, int], None] | None]:
    """The function the job reports (done, total) to: a tqdm bar, JSON lines, or nothing."""
    started = time.perf_counter()
    if args.progress_json:
        def line(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(json.dumps({"done": done, "total": total, "rate": round(rate, 2)}), flush=True)
        yield line
        return
    if args.no_progress:
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc="embedding", unit="item") as bar:
        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        yield update


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from index.build import build

    settings = _settings(args)
    started = time.perf_counter()
    try:
        planned, levels = corpus_items(args.data)  # CorpusError, or an image it cannot read
    except ValueError as err:
        raise SystemExit(f"xmr index build: {err}") from err
    engine = _engine(args, settings.device)
    with _progress(args) as progress:
        report = build(args.out, engine, planned, levels=levels, spec=args.index_type,
                       fresh=args.fresh, backend=settings.backend(),
                       checkpoint_path=args.checkpoint, cache_dir=args.cache,
                       recall_target=settings.recall_target, progress=progress,
                       text_fields=settings.text_fields)
    elapsed = time.perf_counter() - started
    print(f"{report.generation} is live: {report.counts} (embedded {report.embedded}, "
          f"replayed {report.replayed} live writes, {elapsed:.1f} s)")
    if report.skipped:
        print(f"left out {len(report.skipped)} unreadable images: {report.skipped[:5]}",
              file=sys.stderr)
    return 0
