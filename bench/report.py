"""The one renderer of every benchmark's markdown: bench/templates/NAME.md.j2 (Jinja2), filled
with a run's JSON and what its report module derives from it, with the filters of ENV below
(`x | f(".1f")` formats as format() does). The templates hold the prose and the tables."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).with_name("templates")
ENV = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, trim_blocks=True,
                  lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
ENV.filters["f"] = format
ENV.filters["json"] = json.dumps
ENV.filters["loads"] = lambda values: ", ".join(f"{v:.2f}" for v in values)
ENV.filters["median"] = statistics.median


def render(name: str, **context: Any) -> str:
    """bench/templates/NAME.md.j2 with `context`."""
    return ENV.get_template(f"{name}.md.j2").render(**context)


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.report NAME RESULT.json`: RESULT.md from NAME.md.j2 and that JSON alone,
    for the reports that derive nothing from their figures (docker/smoke.sh's)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("name", help="the template, bench/templates/NAME.md.j2")
    parser.add_argument("result", type=Path, help="the JSON; the markdown goes beside it")
    name, result = vars(parser.parse_args(argv)).values()
    result.with_suffix(".md").write_text(render(name, **json.loads(result.read_text())))


if __name__ == "__main__":
    main()
