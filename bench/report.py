"""The one renderer of every benchmark's markdown: bench/templates/NAME.md.j2 (Jinja2), filled
with a run's JSON and what its report module derives from it. The templates hold the prose and
the tables; the modules compute figures and plots.

In a template, `x | f(".1f")` formats a number as format() does, `json` is json.dumps and `loads`
formats load averages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).with_name("templates")
ENV = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                  autoescape=False)
ENV.filters["f"] = format
ENV.filters["json"] = json.dumps
ENV.filters["loads"] = lambda values: ", ".join(f"{v:.2f}" for v in values)


def render(name: str, **context: Any) -> str:
    """bench/templates/NAME.md.j2 with `context`."""
    return ENV.get_template(f"{name}.md.j2").render(**context)
