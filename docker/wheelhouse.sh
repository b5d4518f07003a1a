#!/usr/bin/env bash
# Fill docker/wheelhouse with wheels for the image's dependencies (pyproject's [project]
# dependencies, the optional groups named in $EXTRAS, pip and setuptools), taken from wherever
# this machine's pip finds them (its find-links and local indexes), so `docker build --build-arg
# PIP_NO_INDEX=1` works without PyPI; and with the pinned Twemoji tarball the demo bake imports
# (docker/twemoji.py), so BAKE_DEMO=1 works without npm. The wheels must suit the image:
# CPython 3.11 on x86_64 glibc (bookworm).
#
#   [EXTRAS=scale] docker/wheelhouse.sh [PYTHON]   (default: .venv/bin/python, else python3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3.11 )}
OUT=docker/wheelhouse
REQ=$(mktemp)
trap 'rm -f "$REQ"' EXIT
"$PY" docker/requirements.py --extras "${EXTRAS:-}" > "$REQ"
# (pip warns once per package about local index directories it has no entry in: noise.)
nice -n 10 "$PY" -m pip wheel -q --wheel-dir "$OUT" -r "$REQ" 'setuptools>=68' pip \
  2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
# (in a folder of its own: pip's --find-links would read a .tgz beside the wheels as an sdist)
"$PY" docker/twemoji.py --cache "$OUT/npm"
echo "$OUT: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
