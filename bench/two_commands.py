"""Time the README's two commands, cold (a fresh clone) and warm (the same clone again).

    python -m bench.two_commands [--source .] [--port 8765]

`make test` is timed to its exit; `make demo` until its search page answers a text-to-image
search for "cat" (the command keeps serving, so it is stopped once the answer is in). The demo
check is the README's promise: the text "cat" returns cat emoji among the first results.
Writes bench/results/two_commands.{json,md}. Run it on an otherwise idle machine: the cold
figures are dominated by pip and by EfficientNet on two cores, and contention inflates both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import ROOT, arguments, command, machine, timed, write_results
from bench.report import render

CAT_TOP_K = 5


def time_make_test(clone: Path) -> float:
    return timed(subprocess.run, ["make", "test"], cwd=clone, check=True,
                 stdout=subprocess.DEVNULL)[0]


def cat_results(port: int) -> list[dict] | None:
    """The first results for "cat", or None while the service is not answering yet."""
    try:
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/search/text-to-image",
                           json={"text": "cat", "k": CAT_TOP_K}, timeout=10)
    except httpx.HTTPError:
        return None
    return reply.json()["results"] if reply.status_code == 200 else None


def time_make_demo(clone: Path, port: int, log: Path,
                   limit_s: float = 3600) -> tuple[float, list[dict]]:
    """Seconds until "cat" is answered, and the hits, each with its item's content hash."""
    start = time.perf_counter()
    with log.open("ab") as sink:
        demo = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=clone, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - start < limit_s:
            if demo.poll() is not None:
                raise RuntimeError(f"make demo exited with {demo.returncode}; see {log}")
            results = cat_results(port)
            if results is not None:
                elapsed = time.perf_counter() - start
                for hit, digest in zip(results, content_hashes(port, results), strict=True):
                    hit["content_hash"] = digest
                return elapsed, results
            time.sleep(1)
        raise TimeoutError(f"make demo did not answer within {limit_s} s; see {log}")
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=60)


def cat_image_hashes(clone: Path) -> set[str]:
    """Hashes of the corpus images whose name has the word "cat" (cat face, black cat, ...)."""
    from index.records import bytes_hash
    from models.data.corpus import read_corpus

    corpus = read_corpus(clone / "artifacts/data/openmoji")
    return {bytes_hash(corpus.image_path(item).read_bytes())
            for item in corpus.items if "cat" in item.text.lower().split()}


def content_hashes(port: int, results: list[dict]) -> list[str]:
    return [httpx.get(f"http://127.0.0.1:{port}/v1/items/{hit['id']}", timeout=10)
            .json()["content_hash"] for hit in results]


def markdown(report: dict) -> str:
    """The table and the demo's answer; `notes` in the report, written after a run, close it."""
    return render("two_commands", **{"notes": "", **report}, top=CAT_TOP_K)


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--source", default=str(ROOT))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "xmr"
        subprocess.run(["git", "clone", "-q", args.source, str(clone)], check=True)
        log = Path(tempfile.gettempdir()) / "two_commands-demo.log"  # kept for a post-mortem
        seconds = {"test_cold": time_make_test(clone), "test_warm": time_make_test(clone)}
        seconds["demo_cold"], _ = time_make_demo(clone, args.port, log)
        seconds["demo_warm"], results = time_make_demo(clone, args.port, log)
        cats = cat_image_hashes(clone)
    report = {"command": command("bench.two_commands"), "machine": machine(), "seconds": seconds,
              "cat_results": [{k: h.get(k) for k in ("id", "score", "labels")}
                              | {"is_cat": h["content_hash"] in cats} for h in results],
              "cats_in_top": sum(h["content_hash"] in cats for h in results)}
    write_results(args.out, "two_commands", report, markdown(report))
    print(json.dumps(report, indent=2))
    return 0 if report["cats_in_top"] else 1


if __name__ == "__main__":
    sys.exit(main())
