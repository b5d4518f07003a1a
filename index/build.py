"""The batch re-index job behind `xmr index build`: a whole new generation, swapped in atomically.

1. Plan. Every corpus item (index.cli.corpus_items: keyed by the corpus row ids) plus every
   item of the live generation that the corpus lacks (ingested through the service: re-embedded
   from its stored text or media file, so a rebuild never drops them), with their keys and
   metadata. Ids stay stable: an item the live generation knows (by key, else by content:
   index.plan) keeps its id; new ones get ids reserved in the live database, which the service
   then never hands out. The live journal position is read in the same snapshot.
2. Embed. The engine (index.engines) streams vectors in batches; each batch is committed to the
   new generation's database, so an interrupted build resumes from the last committed batch (a
   generation still marked BUILDING, of the same checkpoint). Progress is reported as
   (done, total) to the caller's function.
3. Index. One vector store per modality (type by corpus size unless given), trained on a sample,
   its search parameter tuned to a recall target on the other modality's vectors
   (index.tuning; recorded in the manifest), snapshotted.
4. Catch up and swap. Writes made to the live generation meanwhile are replayed from its journal
   (adds re-embedded by the same engine, deletes applied), first without a lock, then the last
   few under the live database's write lock, inside which CURRENT is replaced and the old
   generation sealed. Until that instant every search is served by the old generation; after
   it, a service's next write finds its generation replaced and moves (Catalog.reload), so no
   write is lost.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from index import layout
from index.backends import BackendSettings, create_store, drop_external_stores
from index.database import DATABASE, SPACES, ItemDatabase
from index.engines import Engine, embed_rows
from index.generation import Generation, create_generation, write_snapshot
from index.manifest import Manifest
from index.plan import Identity, as_new, identity, keep_live_metadata, match_live
from index.records import MODALITIES, NewItem
from index.store import VectorStore
from index.tuning import DEFAULT_TARGET, tune_other_modality
from models.fusion import Fusion

log = logging.getLogger(__name__)
STATE = "build.json"
LOCK = "BUILD.lock"


Progress = Callable[[int, int], None]  # (items embedded so far, items to embed)
Work = list[tuple[int, NewItem]]  # (id in the new generation, item)


@dataclass(frozen=True)
class BuildReport:
    generation: Path
    embedded: int  # items embedded by this run (a resumed run skips committed ones)
    skipped: list[str]  # image sources that could not be decoded (left out, logged)
    replayed: int  # live writes replayed before the swap
    counts: dict[str, int]


def build(root: Path, engine: Engine, planned: Sequence[NewItem], *,
          levels: Sequence[str] = (), spec: str = "auto", fresh: bool = False,
          backend: BackendSettings | None = None, checkpoint_path: Path | None = None,
          cache_dir: Path | None = None, recall_target: float = DEFAULT_TARGET,
          progress: Progress | None = None, text_fields: Sequence[str] = (),
          fusion: Fusion | None = None) -> BuildReport:
    """`engine`: computes every vector (the planned items' and the replayed live writes') and
    names the checkpoint they come from.
    `checkpoint_path`: that checkpoint's file, named in the manifest so that a service
    serving this index can load it when the new generation goes live under it.
    `cache_dir`: the backbone feature cache the engine reads through, named in the manifest so
    that the next build (a service's re-index job) reads through it too.
    `backend`: the vector store of the new generation (None: FAISS).
    `recall_target`: the recall@10 each approximate index is tuned to (index.tuning).
    `progress`: called with (done, total) after each committed batch.
    `text_fields`: metadata fields whose words hybrid search matches (index.words); `fusion`:
    how it combines its signals (None: models.fusion's default); both go into the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise RuntimeError(f"another `xmr index build` is running on {root}") from err
        sources = {name: str(path.resolve()) for name, path in
                   (("checkpoint", checkpoint_path), ("feature_cache", cache_dir)) if path}
        run = _BuildRun(root, engine, progress, backend or BackendSettings(), sources,
                        recall_target)
        return run.run(planned, tuple(levels), spec, fresh,
                       _Words(tuple(text_fields), fusion or Fusion()))


class _BuildRun:
    def __init__(self, root: Path, engine: Engine, progress: Progress | None,
                 backend: BackendSettings, sources: dict[str, str],
                 recall_target: float) -> None:
        self.root, self.engine, self.progress = root, engine, progress
        self.backend = backend
        self.sources, self.recall_target = sources, recall_target
        self.skipped: list[str] = []

    def run(self, planned: Sequence[NewItem], levels: tuple[str, ...], spec: str,
            fresh: bool, words: _Words) -> BuildReport:
        live_path = layout.current(self.root)
        live = ItemDatabase(live_path / DATABASE) if live_path else None
        try:
            gen_path, base_seq = self._start(live_path, live, levels, fresh, words)
            new = ItemDatabase(gen_path / DATABASE)
            try:
                work = self._plan(planned, live, new)
                embedded = self._embed(new, work)
                self._caption(new)
                self._index(gen_path, new, spec)
                replayed = self._swap(gen_path, new, live, base_seq)
                counts = {m: new.count(m) for m in MODALITIES}
            finally:
                new.close()
        finally:
            if live is not None:
                live.close()
        layout.prune(self.root, backend=self.backend)
        return BuildReport(gen_path, embedded, self.skipped, replayed, counts)

    # -- 1. plan ----------------------------------------------------------------------------
    def _start(self, live_path: Path | None, live: ItemDatabase | None, levels: tuple[str, ...],
               fresh: bool, words: _Words) -> tuple[Path, int]:
        """Resume an unfinished build of this checkpoint on the same base, or start one."""
        base = live_path.name if live_path else None
        for gen in reversed(layout.generations(self.root)):
            if not (gen / layout.BUILDING).exists():
                continue
            state = _read_state(gen)
            same = (state.get("checkpoint_id") == self.engine.checkpoint_id
                    and state.get("base") == base and not fresh)
            if same:
                log.info("resuming the unfinished build %s", gen.name)
                return gen, int(state["base_seq"])
            drop_external_stores(gen)  # an abandoned build of another checkpoint or base
            shutil.rmtree(gen)
        manifest = Manifest(self.engine.checkpoint_id, int(self.engine.dim), levels,
                            extra=dict(self.sources), text_fields=words.fields,
                            fusion=words.fusion.as_dict())
        gen = create_generation(self.root, manifest, backend=self.backend)
        base_seq = live.high_water() if live is not None else 0
        state = {"checkpoint_id": self.engine.checkpoint_id, "base": base,
                 "base_seq": base_seq}
        (gen / STATE).write_text(json.dumps(state))
        return gen, base_seq

    def _plan(self, planned: Sequence[NewItem], live: ItemDatabase | None,
              new: ItemDatabase) -> Work:
        """(id, item) still to embed: corpus items, then live-only items; ids as module doc."""
        items: dict[Identity, NewItem] = {}
        for item in planned:
            items.setdefault(identity(item), item)
        known: dict[Identity, int] = {}
        if live is not None:
            with live.read():
                records = live.all_items()
            known = match_live(items, records)
            keep_live_metadata(items, known, records)
            kept = set(known.values())
            for record in records:
                if record.id not in kept:  # live-only: ingested through the service
                    items.setdefault(identity(record), as_new(record))
                    known.setdefault(identity(record), record.id)

        def committed(ident: Identity, item: NewItem) -> bool:  # by an interrupted run
            if ident in known:
                return new.get(known[ident]) is not None
            return (new.id_of_key(item.key) if item.key is not None
                    else new.id_of(item.modality, item.content_hash, unkeyed=True)) is not None

        todo = [(ident, item) for ident, item in items.items() if not committed(ident, item)]
        fresh = [ident for ident, _ in todo if ident not in known]
        if fresh:
            first = self._reserve(live, new, len(fresh))
            known.update({ident: first + n for n, ident in enumerate(fresh)})
        return [(known[ident], item) for ident, item in todo]

    @staticmethod
    def _reserve(live: ItemDatabase | None, new: ItemDatabase, n: int) -> int:
        owner = live if live is not None else new
        with owner.write(allow_sealed=True):
            first = owner.reserve_ids(n)
        with new.write():
            new.set_next_id(first + n)
        return first

    # -- 2. embed ---------------------------------------------------------------------------
    def _embed(self, new: ItemDatabase, work: Work) -> int:
        done, skipped = 0, len(self.skipped)
        for batch, vectors in self._vectors(work):
            with new.write():
                new.insert([item for _, item in batch], vectors, self.engine.checkpoint_id,
                           ids=[item_id for item_id, _ in batch])
            done += len(batch)
            if self.progress is not None:  # items left out count as done: they were tried
                self.progress(done + len(self.skipped) - skipped, len(work))
        return done

    def _vectors(self, work: Work) -> Iterator[tuple[Work, np.ndarray]]:
        """(items, their vectors) as the engine finishes batches; an image it could not read
        is left out, logged and reported."""
        modalities = [item.modality for _, item in work]
        payloads = [(item.text or "") if item.modality == "text" else (item.source or "")
                    for _, item in work]
        for rows, vectors in self.engine.stream(modalities, payloads):
            readable = np.isfinite(vectors).all(axis=1)
            for row in rows[~readable]:
                log.warning("left out image item %d: unreadable %s", work[row][0], payloads[row])
                self.skipped.append(payloads[row])
            yield [work[row] for row in rows[readable]], vectors[readable]

    def _caption(self, new: ItemDatabase) -> None:
        """Caption vectors of the images with words (index.words): a pair's text vector where
        the words are a text item's text (a corpus build encodes nothing more), else the words
        embedded as a text."""
        with new.write():
            new.caption_from_pairs()
        with new.read():
            todo = new.uncaptioned()
        if todo:
            vectors = embed_rows(self.engine, ["text"] * len(todo), [w for _, w in todo],
                                 int(self.engine.dim))
            with new.write():
                new.set_captions([item_id for item_id, _ in todo], vectors)

    # -- 3. index ---------------------------------------------------------------------------
    def _index(self, gen_path: Path, new: ItemDatabase, spec: str) -> None:
        """One store per modality on the chosen backend, trained on a sample when its type
        needs it, its search parameter tuned on the other modality (index.tuning) and recorded
        in the manifest, then snapshotted (the store saves the tuned value with itself)."""
        dim = int(self.engine.dim)
        stores: dict[str, VectorStore] = {}
        with new.read():
            seq = new.high_water()
            vectors = {m: new.all_vectors(m, dim) for m in SPACES}
        tuned: dict[str, dict] = {}
        for modality, (ids, rows) in vectors.items():
            store = create_store(dim, gen_path, self.backend, name=modality, spec=spec,
                                 n_hint=len(ids), gpu=False)
            store.train(rows)
            store.add(ids, rows)
            stores[modality] = store
            tuned[modality] = tune_other_modality(store, modality, vectors,
                                                  self.recall_target).as_dict()
            log.info("%s: %d vectors in %s %s", modality, len(ids), store.spec, tuned[modality])
        manifest = replace(Manifest.read(gen_path), search=tuned)
        manifest.write(gen_path)
        gen = Generation(gen_path, manifest, new, stores, seq)
        try:
            write_snapshot(gen)
        finally:
            for store in stores.values():
                store.close()

    # -- 4. catch up and swap -----------------------------------------------------------------
    def _swap(self, gen_path: Path, new: ItemDatabase, live: ItemDatabase | None,
              base_seq: int) -> int:
        if live is None:
            layout.swap(self.root, gen_path)
            return 0
        seq, replayed = base_seq, 0
        for _round in range(5):  # converge while the service keeps writing
            seq, n = self._replay(new, live, seq)
            replayed += n
            if n < 10:
                break
        with live.write():  # no live write can commit from here to the swap
            seq, n = self._replay(new, live, seq)
            replayed += n
            next_id = live.next_id()
            with new.write():
                new.set_next_id(next_id)
            layout.swap(self.root, gen_path)
            live.seal(gen_path.name)
        return replayed

    def _replay(self, new: ItemDatabase, live: ItemDatabase, since: int) -> tuple[int, int]:
        """Apply live journal entries after `since` to the new generation."""
        entries = live.journal_since(since)
        if not entries:
            return since, 0
        final: dict[int, str] = {}
        for _seq, op, item_id, _modality in entries:
            final[item_id] = op
        records = live.get_many([i for i, op in final.items() if op == "add"])
        for item_id, op in final.items():
            if op == "del" or item_id not in records:
                with new.write():
                    new.delete(item_id)
        adds = [(item_id, as_new(records[item_id])) for item_id in final if item_id in records]
        embedded = self._embedded([(i, item) for i, item in adds if not _same(new, i, item)])
        for item_id, item in adds:
            if item_id not in embedded and not _same(new, item_id, item):
                embedded.update(self._embedded([(item_id, item)]))  # its row went meanwhile
            self._put(new, item_id, item, embedded)
        return entries[-1][0], len(entries)

    def _embedded(self, work: Work) -> dict[int, np.ndarray | None]:
        """Vectors by id (None: an image that could not be read)."""
        out: dict[int, np.ndarray | None] = {item_id: None for item_id, _ in work}
        for batch, rows in self._vectors(work):
            out.update({item_id: row for (item_id, _), row in zip(batch, rows, strict=True)})
        return out

    def _put(self, new: ItemDatabase, item_id: int, item: NewItem,
             embedded: dict[int, np.ndarray | None]) -> None:
        """Make the new generation hold `item` under `item_id` as the live one does: with its
        vector in `embedded` when it was re-embedded (None there: its image could not be read,
        so it is left out), else keeping the vector of the same content there already. The
        live id was handed to a client, so it wins over an item the plan gave the same key, or
        the same content without a key."""
        with new.write():
            clash = new.id_of_key(item.key) if item.key is not None else new.id_of(
                item.modality, item.content_hash, unkeyed=True)
            if clash is not None and clash != item_id:
                new.delete(clash)
            if item_id not in embedded:
                new.replace(item_id, item, self.engine.checkpoint_id)
                return
            new.delete(item_id)
            if (vector := embedded[item_id]) is not None:
                new.insert([item], vector[None, :], self.engine.checkpoint_id, ids=[item_id])
        self._caption(new)


@dataclass(frozen=True)
class _Words:
    """What hybrid search of the new generation matches, and how it fuses (the manifest's)."""
    fields: tuple[str, ...]
    fusion: Fusion


def _same(new: ItemDatabase, item_id: int, item: NewItem) -> bool:
    """The new generation holds this content under this id already."""
    present = new.get(item_id)
    return present is not None and (present.modality, present.content_hash) == (
        item.modality, item.content_hash)


def _read_state(gen: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((gen / STATE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
