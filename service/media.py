"""Uploaded image bytes, stored content-addressed under the catalog's media directory (kept
across index generations) and removed when the item that uses them is deleted.

Ingest and delete of the same content hash, and upserts of the same key, are serialised by a
striped lock, so a delete never removes a file an ingest just attached to the (same,
deduplicated) item, and no upsert leaves behind the file of an item another one replaced. A
stripe is an asyncio lock within the process and an flock on a file under `media/.locks/`
across the service's worker processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import tempfile
import zlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from PIL import Image

STRIPES = 64
LOCKS = ".locks"  # in the media directory: one file per stripe
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp",
            "TIFF": ".tif"}


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks = [asyncio.Lock() for _ in range(STRIPES)]
        self._files: dict[int, int] = {}  # stripe -> its lock file, opened on first use

    @staticmethod
    def stripe(name: str) -> int:
        return zlib.crc32(name.encode()) % STRIPES

    @asynccontextmanager
    async def locked(self, names: list[str]) -> AsyncIterator[None]:
        """Hold the stripes of these names (content hashes, item keys), taken in one global
        order (no deadlock between two batches, in one process or across processes)."""
        async with AsyncExitStack() as stack:
            for stripe in sorted({self.stripe(n) for n in names}):
                await stack.enter_async_context(self._locks[stripe])
                await stack.enter_async_context(self._file_locked(stripe))
            yield

    @asynccontextmanager
    async def _file_locked(self, stripe: int) -> AsyncIterator[None]:
        """The stripe's flock, polled without blocking: a blocking call would hold the event
        loop, or, in a thread, outlive a cancelled request and keep the lock."""
        if stripe not in self._files:
            folder = self.root / LOCKS
            folder.mkdir(parents=True, exist_ok=True)
            self._files[stripe] = os.open(folder / f"{stripe:02d}", os.O_RDWR | os.O_CREAT)
        fd = self._files[stripe]
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.002)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

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

