"""The item use cases behind /v1/items: add (ingest) and delete, with the uploaded image bytes
kept consistent with the catalog.

`ItemIn` is one item as the edge validated it (text checked, image decoded, labels checked);
adding a field to items means a field here and its column in the catalog's `NewItem`, nothing
in between. An image and a text posted together are two items sharing the labels.

Order of an ingest, per content hash under the media store's lock (so a delete of the same
content cannot interleave): ask the catalog whether it already holds the content (then nothing
is written), write the bytes of new images, encode and store durably, and on failure remove
only the files this call wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image

from service.media import MediaStore
from service.retriever import Retriever

if TYPE_CHECKING:
    from index.records import NewItem


@dataclass(frozen=True)
class ImageInput:
    data: bytes  # as uploaded: stored content-addressed
    image: Image.Image  # decoded: what the encoder reads


@dataclass(frozen=True)
class ItemIn:
    text: str | None = None
    image: ImageInput | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stored:
    id: int
    modality: Literal["image", "text"]
    created: bool  # False: the same content was already stored (its id is returned)


@dataclass
class _Part:
    """One catalog item of an ItemIn: its image or its text."""
    new: NewItem
    query: str | Image.Image
    data: bytes | None = None  # image bytes, stored at new.source when the content is new


class Items:
    def __init__(self, retriever: Retriever, media: MediaStore, timeout_s: float) -> None:
        self.retriever = retriever
        self.media = media
        self.timeout_s = timeout_s  # for the vectors of an ingest (TimeoutError past it)

    async def add(self, items: Sequence[ItemIn]) -> list[Stored]:
        """One encoder batch and one durable write for all of them; results in input order
        (image before text within an item)."""
        parts = [part for item in items for part in self._parts(item)]
        async with self.media.locked([p.new.content_hash for p in parts if p.data is not None]):
            written = await self._write_new_media(parts)
            try:
                results = await self.retriever.ingest([p.new for p in parts],
                                                      [p.query for p in parts], self.timeout_s)
            except BaseException:
                for path in written:
                    self.media.remove(path)
                raise
            await self._drop_duplicates(parts, results, written)
        return [Stored(item_id, p.new.modality, created)
                for p, (item_id, created) in zip(parts, results, strict=True)]

    async def delete(self, item_id: int) -> bool:
        """True when the item existed; its uploaded image file goes with it."""
        record = await self.retriever.get(item_id)
        if record is None:
            return False
        async with self.media.locked([record.content_hash]):
            deleted = await self.retriever.delete(item_id)
            if deleted and record.modality == "image" and self.media.owns(record.source):
                await asyncio.to_thread(self.media.remove, Path(record.source or ""))
        return deleted

    def _parts(self, item: ItemIn) -> list[_Part]:
        from index.records import NewItem, bytes_hash, text_hash

        parts = []
        if item.image is not None:
            digest = bytes_hash(item.image.data)
            path = self.media.path(digest, item.image.data)
            parts.append(_Part(NewItem("image", digest, item.labels, source=str(path)),
                               item.image.image, item.image.data))
        if item.text is not None:
            parts.append(_Part(NewItem("text", text_hash(item.text), item.labels,
                                       text=item.text), item.text))
        return parts

    async def _write_new_media(self, parts: list[_Part]) -> list[Path]:
        """Write the bytes of images the catalog does not hold yet; the paths this call made."""
        written = []
        for part in parts:
            if part.data is None or part.new.source is None:
                continue
            known = await self.retriever.run(self.retriever.catalog.find, "image",
                                             part.new.content_hash)
            path = Path(part.new.source)
            if known is None and await asyncio.to_thread(self.media.write, path, part.data):
                written.append(path)
        return written

    async def _drop_duplicates(self, parts: list[_Part], results: list[tuple[int, bool]],
                               written: list[Path]) -> None:
        """Another process on the same index may have stored (or deleted) the content between
        the look-up and the write: keep a file exactly when the stored item points at it."""
        for part, (item_id, created) in zip(parts, results, strict=True):
            if part.data is None or part.new.source is None:
                continue
            path = Path(part.new.source)
            if created and path not in written:  # the item it was known as went meanwhile
                await asyncio.to_thread(self.media.write, path, part.data)
            elif not created and path in written:
                record = await self.retriever.get(item_id)
                if record is None or record.source != str(path):
                    self.media.remove(path)
