"""The item use cases behind /v1/items: add (ingest, upsert by key) and delete (by id or key),
with the uploaded image bytes kept consistent with the catalog.

`ItemToAdd` is one item as the edge validated it (text, labels, key and metadata checked, image
decoded); adding a field to items means a field here and its column in the catalog's
`NewItem`, nothing in between. An image and a text posted together are two items sharing the
labels and metadata: the image has the key and carries the text as its caption, the text is
keyed `<key>:text` (as the index job keys a corpus row's two items).

An uploaded image file is named by its content, and several items may hold one content (keyed
items may share a photo), so a file goes only when no item holds its content any more: after a
delete, and after an upsert that gave a key new bytes (the replaced item's file).

Order of an ingest, under the media store's locks of its keys and of every content hash it may
touch (so neither a delete of the same content nor another upsert of the same key can
interleave): read the items the keys name now (taking the locks of their contents too, and
reading again once all are held), ask the catalog whether it already holds each new content
(then nothing is written), write the bytes of new images, encode and store durably (on failure
remove only the files this call wrote), then settle the files: each stored item's file exists,
and files no item holds any more are removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from index.payload import text_key as pair_text_key
from service.labels import check_items_labels, with_vocabulary
from service.media import MediaStore
from service.retriever import Retriever

if TYPE_CHECKING:
    from index.records import NewItem, Record

KEY_LOCK = "key "  # + an item key: the media lock stripe an upsert of that key holds


@dataclass(frozen=True)
class ImageInput:
    data: bytes  # as uploaded: stored content-addressed
    image: Image.Image  # decoded: what the encoder reads


@dataclass(frozen=True)
class ItemToAdd:
    text: str | None = None
    image: ImageInput | None = None
    labels: tuple[str, ...] = ()
    key: str | None = None
    metadata: dict[str, Any] | None = None
    new_labels: bool = False  # its label values may be new to the index


@dataclass(frozen=True)
class Stored:
    id: int
    modality: Literal["image", "text"]
    created: bool  # False: its key existed (replaced), or without a key equal content did
    key: str | None = None


@dataclass
class _Part:
    """One catalog item of an ItemToAdd: its image or its text."""
    new: NewItem
    query: str | Image.Image
    data: bytes | None = None  # image bytes, stored at new.source when the content is new


class Items:
    def __init__(self, retriever: Retriever, media: MediaStore, timeout_s: float) -> None:
        self.retriever = retriever
        self.media = media
        self.timeout_s = timeout_s  # for the vectors of an ingest (TimeoutError past it)

    async def add(self, items: Sequence[ItemToAdd]) -> list[Stored]:
        """One encoder batch and one durable write for all of them; results in input order
        (image before text within an item)."""
        if any(item.labels for item in items):
            await with_vocabulary(self.retriever, lambda known: check_items_labels(
                [(item.labels, item.new_labels) for item in items], known))
        parts = [part for item in items for part in self._parts(item)]
        keys = [p.new.key for p in parts if p.new.key is not None]
        hashes = [p.new.content_hash for p in parts if p.data is not None]
        previous = await self.retriever.get_by_keys(keys) if keys else []
        while True:
            held = hashes + [r.content_hash for r in previous] + [KEY_LOCK + k for k in keys]
            async with self.media.locked(held):
                now = await self.retriever.get_by_keys(keys) if keys else []
                if {r.content_hash for r in now} <= {r.content_hash for r in previous}:
                    results = await self._add_locked(parts, now)
                    break
            previous = now  # an upsert of these keys landed before the locks were taken
        if any(item.new_labels for item in items):
            await self.retriever.label_values(refresh=True)  # values it may have added
        return [Stored(item_id, p.new.modality, created, p.new.key)
                for p, (item_id, created) in zip(parts, results, strict=True)]

    async def _add_locked(self, parts: list[_Part], previous: list[Record]
                          ) -> list[tuple[int, bool]]:
        """The write, under the locks of its keys and of every content hash it may touch."""
        written = await self._write_new_media(parts)
        try:
            results = await self.retriever.ingest([p.new for p in parts],
                                                  [p.query for p in parts], self.timeout_s)
        except BaseException:
            for path in written:
                self.media.remove(path)
            raise
        await self._settle_media(parts, results, written, previous)
        return results

    async def delete(self, item_id: int) -> bool:
        """True when the item existed; its uploaded image file goes when no item holds it."""
        record = await self.retriever.get(item_id)
        if record is None:
            return False
        async with self.media.locked([record.content_hash]):
            deleted = await self.retriever.delete(item_id)
            if deleted:
                await self._release_media([record])
        return deleted

    async def delete_by_key(self, key: str) -> Record | None:
        """The item deleted (None: no item has this key); its file as in `delete`."""
        record = await self.retriever.get_by_key(key)
        if record is None:
            return None
        async with self.media.locked([record.content_hash]):
            deleted = await self.retriever.delete_by_key(key)
            if deleted is None or deleted.content_hash == record.content_hash:
                await self._release_media([] if deleted is None else [deleted])
                return deleted
        async with self.media.locked([deleted.content_hash]):  # replaced meanwhile
            await self._release_media([deleted])
        return deleted

    def _parts(self, item: ItemToAdd) -> list[_Part]:
        from index.records import NewItem, bytes_hash, text_hash

        parts = []
        labels, metadata = item.labels, item.metadata or {}
        text_key = item.key
        if item.image is not None:
            digest = bytes_hash(item.image.data)
            path = self.media.path(digest, item.image.data)
            parts.append(_Part(NewItem("image", digest, labels, item.text, str(path),
                                       item.key, metadata),
                               item.image.image, item.image.data))
            text_key = None if item.key is None else pair_text_key(item.key)
        if item.text is not None:
            parts.append(_Part(NewItem("text", text_hash(item.text), labels, item.text,
                                       key=text_key, metadata=metadata), item.text))
        return parts

    async def _write_new_media(self, parts: list[_Part]) -> list[Path]:
        """Write the bytes of images the catalog does not hold yet; the paths this call made."""
        written = []
        for part in parts:
            if part.data is None or part.new.source is None:
                continue
            known = await self.retriever.find_image(part.new.content_hash)
            path = Path(part.new.source)
            if known is None and await asyncio.to_thread(self.media.write, path, part.data):
                written.append(path)
        return written

    async def _settle_media(self, parts: list[_Part], results: list[tuple[int, bool]],
                            written: list[Path], previous: list[Record]) -> None:
        """After the write: the file of each stored image exists (another process on the same
        index may have deleted the item the content was known as, and its file), and a file
        no item holds any more goes: one this call wrote for content stored under another
        file (a corpus image), or a later item of the batch replaced; a replaced item's."""
        if not previous and all(part.data is None for part in parts):
            return  # texts only: no file to settle
        ids = [item_id for item_id, _ in results]
        now = await self.retriever.get_many(ids)
        held = {record.source for record in now if record is not None}
        for part in parts:
            if part.data is not None and part.new.source is not None \
                    and part.new.source in held:
                await asyncio.to_thread(self.media.write, Path(part.new.source), part.data)
        for path in written:
            if str(path) not in held:
                self.media.remove(path)
        await self._release_media([r for r in previous if r.source not in held])

    async def _release_media(self, records: list[Record]) -> None:
        """Remove the uploaded files of these (deleted or replaced) records whose content no
        item holds any more; the caller holds their content hashes' locks."""
        for record in records:
            if record.modality != "image" or not self.media.owns(record.source):
                continue
            if await self.retriever.find_image(record.content_hash) is None:
                await asyncio.to_thread(self.media.remove, Path(record.source or ""))
