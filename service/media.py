"""Uploaded image bytes, stored content-addressed under the catalog's media directory (kept
across index generations) and removed when the item that uses them is deleted.

Ingest and delete of the same content hash, and upserts of the same key, are serialised by a
striped lock, so a delete never removes a file an ingest just attached to the (same,
deduplicated) item, and no upsert leaves behind the file of an item another one replaced.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import zlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from PIL import Image

STRIPES = 64
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp",
            "TIFF": ".tif"}


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks = [asyncio.Lock() for _ in range(STRIPES)]

    def lock(self, content_hash: str) -> asyncio.Lock:
        return self._locks[zlib.crc32(content_hash.encode()) % STRIPES]

    @asynccontextmanager
    async def locked(self, names: list[str]) -> AsyncIterator[None]:
        """Hold the stripes of these names (content hashes, item keys), taken in one global
        order (no deadlock between two batches)."""
        ordered = sorted({id(self.lock(n)): self.lock(n) for n in names}.items())
        async with AsyncExitStack() as stack:
            for _, lock in ordered:
                await stack.enter_async_context(lock)
            yield

    def path(self, content_hash: str, data: bytes) -> Path:
        """media/ab/abcdef...png for content hash "b:abcdef..." (no colon in file names)."""
        digest = content_hash.rpartition(":")[2]
        return self.root / digest[:2] / f"{digest}{suffix(data)}"

    def owns(self, source: str | None) -> bool:
        if not source:
            return False
        try:
            return Path(source).resolve().is_relative_to(self.root.resolve())
        except (OSError, ValueError):
            return False

    @staticmethod
    def write(path: Path, data: bytes) -> bool:
        """Durably write `path` unless it exists; True when this call created it."""
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)


def suffix(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return SUFFIXES.get(image.format or "", ".img")
    except Exception:  # decode_image already refused unreadable bytes
        return ".img"

