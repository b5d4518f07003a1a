"""Print the image's requirements, one a line, from pyproject.toml alone (so the dependency layer
is rebuilt only when pyproject.toml changes, not on every code change).

    python docker/requirements.py [pyproject.toml] [--extras scale,...] [--faiss faiss-gpu-cu12]

--extras adds optional-dependency groups (a group naming `xmr[other]` pulls that group in too);
--faiss replaces faiss-cpu (same `faiss` module) for the GPU image.
"""

from __future__ import annotations

import argparse
import re
import tomllib


def requirements(pyproject: str, extras: list[str], faiss: str | None) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    groups = project.get("optional-dependencies", {})
    out = list(project["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in groups[extra]:  # KeyError names an unknown extra
            own = re.fullmatch(rf"{project['name']}\[(.+)\]", req.replace(" ", ""))
            if own:
                pending.extend(own.group(1).split(","))
            else:
                out.append(req)
    if faiss:
        out = [faiss if re.match(r"faiss-cpu\b", req) else req for req in out]
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml")
    parser.add_argument("--extras", default="", help="comma-separated optional groups")
    parser.add_argument("--faiss", help="the faiss distribution instead of faiss-cpu")
    args = parser.parse_args()
    extras = [e for e in args.extras.split(",") if e]
    print("\n".join(requirements(args.pyproject, extras, args.faiss)))
