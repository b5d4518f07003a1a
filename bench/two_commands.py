"""Time the README's two commands from a fresh clone, cold and then warm: `make test` to its
exit, `make demo` (on a free port) until it answers a text-to-image search for "cat" with cat
emoji among the first results, the README's promise. Run it on an otherwise idle machine."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import ROOT, Process, arguments, command, machine, publish, timed
from bench.report import render

CAT_TOP_K = 5


def time_make_test(clone: Path) -> float:
    return timed(subprocess.run, ["make", "test"], cwd=clone, check=True,
                 stdout=subprocess.DEVNULL)[0]


def time_make_demo(clone: Path, log: Path) -> tuple[float, list[dict]]:
    """Seconds from `make demo` until it answers "cat", and the hits, each with its item's
    content hash; then the demo, which would keep serving, is stopped."""
    start = time.perf_counter()
    demo = Process(["make", "demo", "PORT={port}"], dict(os.environ), log, "/readyz", cwd=clone,
                   limit_s=3600)
    try:
        reply = httpx.post(f"{demo.url}/v1/search/text-to-image",
                           json={"text": "cat", "k": CAT_TOP_K}, timeout=10)
        reply.raise_for_status()
        elapsed, hits = time.perf_counter() - start, reply.json()["results"]
        for hit in hits:
            item = httpx.get(f"{demo.url}/v1/items/{hit['id']}", timeout=10).json()
            hit["content_hash"] = item["content_hash"]
        return elapsed, hits
    finally:
        demo.stop()


def cat_image_hashes(clone: Path) -> set[str]:
    """Hashes of the corpus images whose name has the word "cat" (cat face, black cat, ...)."""
    from index.records import bytes_hash
    from models.data.corpus import read_corpus

    corpus = read_corpus(clone / "artifacts/data/openmoji")
    return {bytes_hash(corpus.image_path(item).read_bytes())
            for item in corpus.items if "cat" in item.text.lower().split()}


def markdown(report: dict) -> str:
    """The table and the demo's answer; `notes` in the report, written after a run, close it."""
    return render("two_commands", **{"notes": "", **report}, top=CAT_TOP_K)


def run(source: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "xmr"
        subprocess.run(["git", "clone", "-q", source, str(clone)], check=True)
        logs = Path(tempfile.gettempdir())  # the demo's logs are kept for a post-mortem
        seconds = {"test_cold": time_make_test(clone), "test_warm": time_make_test(clone)}
        seconds["demo_cold"], _ = time_make_demo(clone, logs / "two_commands-demo-cold.log")
        seconds["demo_warm"], results = time_make_demo(clone, logs / "two_commands-demo-warm.log")
        cats = cat_image_hashes(clone)
    return {"command": command("bench.two_commands"), "machine": machine(), "seconds": seconds,
            "cat_results": [{k: h.get(k) for k in ("id", "score", "labels")}
                            | {"is_cat": h["content_hash"] in cats} for h in results],
            "cats_in_top": sum(h["content_hash"] in cats for h in results)}


def main() -> int:
    args = arguments(__doc__, source=(str(ROOT), "the repository to clone")).parse_args()
    result = publish(args, "two_commands", lambda: run(args.source), markdown)
    return 0 if result["cats_in_top"] else 1


if __name__ == "__main__":
    sys.exit(main())
