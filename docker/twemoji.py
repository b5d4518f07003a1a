"""The pinned Twemoji SVGs (npm `@twemoji/svg`, graphics CC BY 4.0), a second view of each train
emoji of the demo corpus: the one place that names their version and integrity, used by the
Makefile (`make twemoji`) and by the Dockerfiles' demo bake alike.

    python docker/twemoji.py [--cache DIR] OUT   fetch, check and unpack the SVGs into OUT
    python docker/twemoji.py --cache DIR         only put the checked tarball into DIR
    python docker/twemoji.py --version           print the pinned version

The tarball comes from `npm pack`, so the registry, proxy and certificates the user's npm is
configured with are the ones used; nothing is unpacked before its sha512 matches the pin. With
--cache, a tarball already there is used instead of npm (docker/wheelhouse.sh leaves one in the
wheelhouse, so an image build needs no npm). Standard library only: it runs before any venv
exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

VERSION = "15.0.0"
# npm's `dist.integrity` of the tarball ("sha512-" + base64), written in hex.
SHA512 = ("6523de7f607a9c16989df81d4db032e23816f79a3ba62db13c6c06094f96313c"
          "68ec9e81d6530f4d6c12abfc13ba232af8dd24850f7409cbd8a75c05a10a68ff")
PACKAGE = f"@twemoji/svg@{VERSION}"
TARBALL = f"twemoji-svg-{VERSION}.tgz"


def pinned(data: bytes) -> bool:
    return hashlib.sha512(data).hexdigest() == SHA512


def npm_pack() -> bytes:
    """The package's tarball as the user's npm fetches it (its registry and its own integrity
    check against that registry's metadata)."""
    if shutil.which("npm") is None:
        sys.exit(f"fetching {PACKAGE} needs npm, or its tarball in --cache "
                 "(docker/wheelhouse.sh puts it in the wheelhouse)")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", folder, "--silent"],
                       check=True, stdout=subprocess.DEVNULL)
        packed = list(Path(folder).glob("*.tgz"))
        if len(packed) != 1:
            sys.exit(f"npm pack {PACKAGE} left {len(packed)} tarballs, not one")
        return packed[0].read_bytes()


def tarball(cache: Path | None) -> bytes:
    """The checked tarball: from `cache` when it holds it, else from npm (then kept there)."""
    kept = cache / TARBALL if cache is not None else None
    if kept is not None and kept.is_file():
        data = kept.read_bytes()
        if not pinned(data):
            sys.exit(f"{kept}: not the pinned tarball (its sha512 differs); delete it")
        return data
    data = npm_pack()
    if not pinned(data):
        sys.exit(f"npm pack {PACKAGE}: its sha512 is not the pinned {SHA512[:16]}...; "
                 "nothing unpacked")
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        part = kept.with_name(kept.name + ".part")
        part.write_bytes(data)
        part.replace(kept)
    return data


def unpack(data: bytes, out: Path) -> int:
    """The package's files into `out` (its leading `package/` dropped), replacing what was there;
    regular files only, none outside `out`. Returns how many SVGs it holds."""
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if not member.isfile() or len(path.parts) < 2:
                continue
            if path.is_absolute() or ".." in path.parts:
                sys.exit(f"{PACKAGE}: unsafe path {member.name!r} in the tarball")
            target = part.joinpath(*path.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has contents
            target.write_bytes(source.read())
    shutil.rmtree(out, ignore_errors=True)
    part.rename(out)
    return sum(1 for _ in out.glob("*.svg"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", help="folder to unpack the SVGs into")
    parser.add_argument("--cache", type=Path, help="folder that keeps the checked tarball")
    parser.add_argument("--version", action="store_true", help="print the pinned version")
    args = parser.parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    if args.out is None and args.cache is None:
        parser.error("give OUT, --cache DIR or both")
    data = tarball(args.cache)
    if args.out is not None:
        print(f"{args.out}: {unpack(data, args.out)} Twemoji {VERSION} SVGs (sha512 checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
