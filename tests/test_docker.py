"""The demo's Twemoji tarball: one pin (docker/twemoji.py) that `make demo` and both Dockerfiles'
demo bake read, and a fetcher that unpacks nothing unchecked or outside its folder. (Building
the images themselves is `make docker-smoke`, which needs a Docker engine.)"""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.util
import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.gpu"]
spec = importlib.util.spec_from_file_location("twemoji", ROOT / "docker" / "twemoji.py")
assert spec is not None and spec.loader is not None
twemoji = importlib.util.module_from_spec(spec)
spec.loader.exec_module(twemoji)


def test_the_pin_is_written_once() -> None:
    readers = [ROOT / "Makefile", ROOT / "README.md", *DOCKERFILES]
    for path in readers:
        text = path.read_text()
        assert twemoji.SHA512 not in text and f"svg-{twemoji.VERSION}.tgz" not in text, path
    dry_run = subprocess.run(["make", "-n", "--always-make", "twemoji"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert f"docker/twemoji.py artifacts/vendor/twemoji-svg-{twemoji.VERSION}\n" in dry_run


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_baked_demo_imports_the_make_demo_corpus(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "python /src/docker/twemoji.py --cache /wheelhouse/npm /tmp/twemoji" in text
    assert "xmr data openmoji /corpora/openmoji --twemoji /tmp/twemoji" in text
    assert "COPY --from=builder --chown=xmr:xmr /corpora/ /data/corpora/" in text
    assert text.count("xmr data openmoji /") == 1  # the runtime stage only trains on it
    assert "!docker/twemoji.py\n" in (ROOT / ".dockerignore").read_text()  # in the context


def tgz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/link.svg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return out.getvalue()


def test_unpack_drops_the_package_folder_and_keeps_regular_files_only(tmp_path: Path) -> None:
    out = tmp_path / "svg"
    (out / "old.svg").parent.mkdir()
    (out / "old.svg").write_text("from an earlier version")
    data = tgz({"package/1f431.svg": b"<svg/>", "package/sub/LICENSE": b"CC BY 4.0"})
    assert twemoji.unpack(data, out) == 1
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["1f431.svg", "sub/LICENSE"]
    assert not (out / "link.svg").exists() and not (out / "old.svg").exists()


def test_unpack_refuses_a_path_out_of_its_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unsafe path"):
        twemoji.unpack(tgz({"package/../../evil.svg": b"x"}), tmp_path / "a" / "svg")
    assert not (tmp_path / "evil.svg").exists() and not (tmp_path / "a" / "svg").exists()


def test_a_cached_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / twemoji.TARBALL).write_bytes(tgz({"package/1f431.svg": b"<svg/>"}))
    with pytest.raises(SystemExit, match="not the pinned tarball"):
        twemoji.tarball(tmp_path)


def test_no_registry_or_mirror_is_written_into_the_fetchers() -> None:
    for name in ("twemoji.py", "make-base.sh"):
        assert "://" not in (ROOT / "docker" / name).read_text(), name


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """An npm registry on 127.0.0.1 serving one `@twemoji/svg` at the pinned version, whose
    tarball is not the pinned one: (its URL, that tarball)."""
    data = tgz({"package/1f431.svg": b"<svg/>"})

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith(".tgz"):
                body, kind = data, "application/octet-stream"
            else:
                dist = {"tarball": f"{base}/svg.tgz", "integrity":
                        "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()}
                version = {"name": "@twemoji/svg", "version": twemoji.VERSION, "dist": dist}
                body = json.dumps({"name": "@twemoji/svg", "versions": {twemoji.VERSION: version},
                                   "dist-tags": {"latest": twemoji.VERSION}}).encode()
                kind = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", data
    server.shutdown()


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_the_tarball_comes_from_the_users_npm_registry_and_is_still_checked(
        registry: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, data = registry
    monkeypatch.setenv("npm_config_registry", url)
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    assert twemoji.npm_pack() == data  # what the configured registry served
    with pytest.raises(SystemExit, match="sha512 is not the pinned"):
        twemoji.tarball(tmp_path / "kept")
    assert not (tmp_path / "kept").exists()
