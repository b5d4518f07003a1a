"""The batch re-index job behind `xmr index build`: a whole new generation, swapped in atomically.

1. Plan. Every corpus item (index.cli.corpus_items: keyed by the corpus row ids) plus every
   item of the live generation that the corpus lacks (ingested through the service: re-embedded
   from its stored text or media file, so a rebuild never drops them), with their keys and
   metadata. Ids stay stable: an item the live generation knows (by key, else by content:
   index.plan) keeps its id; new ones get ids reserved in the live database, which the service
   then never hands out. The live journal position is read in the same snapshot.
2. Embed. Batches stream through the encoder while a thread decodes the next image batch; each
   batch is committed to the new generation's database, so an interrupted build resumes from
   the last committed batch (a generation still marked BUILDING, of the same checkpoint).
3. Index. One FAISS store per modality (type by corpus size unless given), trained on a sample,
   its search parameter tuned to a recall target on the other modality's vectors
   (index.tuning; recorded in the manifest), snapshotted.
4. Catch up and swap. Writes made to the live generation meanwhile are replayed from its journal
   (adds re-embedded, deletes applied), first without a lock, then the last few under the live
   database's write lock, inside which CURRENT is replaced and the old generation sealed. Until
   that instant every search is served by the old generation; after it, a service's next write
   finds its generation replaced and moves (Catalog.reload), so no write is lost.
"""

from __future__ import annotations

import fcntl
import json
import logging
import queue
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from index import generations
from index.backends import BackendSettings, close_store, create_store, drop_external_stores
from index.engines import Engine
from index.manifest import Manifest
from index.metadata import DATABASE, SPACES, Metadata
from index.plan import Identity, as_new, identity, keep_live_metadata, match_live
from index.records import MODALITIES, NewItem
from index.snapshots import Generation, create_generation, write_snapshot
from index.store import FaissStore, VectorStore
from index.tuning import DEFAULT_TARGET, tune_other_modality
from models.fusion import Fusion

log = logging.getLogger(__name__)
STATE = "build.json"
LOCK = "BUILD.lock"


class Encoder(Protocol):
    """What the job needs of models.inference.Encoder (kept structural: index/ has no torch)."""

    dim: int
    checkpoint_id: str

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Any]) -> np.ndarray: ...


Decode = Callable[[str], Any]  # image source -> what encode_images takes


@dataclass(frozen=True)
class BuildReport:
    generation: Path
    embedded: int  # items embedded by this run (a resumed run skips committed ones)
    skipped: list[str]  # image sources that could not be decoded (left out, logged)
    replayed: int  # live writes replayed before the swap
    counts: dict[str, int]


def build(root: Path, encoder: Encoder, planned: Sequence[NewItem], decode: Decode, *,
          levels: Sequence[str] = (), spec: str = "auto", batch_size: int = 64,
          progress: bool = True, fresh: bool = False, engine: Engine | None = None,
          backend: BackendSettings | None = None, checkpoint_path: Path | None = None,
          recall_target: float = DEFAULT_TARGET, text_fields: Sequence[str] = (),
          fusion: Fusion | None = None) -> BuildReport:
    """`engine`: None embeds here with `encoder`; otherwise the engine computes the vectors
    (the encoder still names the checkpoint and re-embeds the few replayed live writes).
    `checkpoint_path`: the encoder's checkpoint file, named in the manifest so that a service
    serving this index can load it when the new generation goes live under it.
    `backend`: the vector store of the new generation (None: FAISS).
    `recall_target`: the recall@10 each approximate index is tuned to (index.tuning).
    `text_fields`: metadata fields whose words hybrid search matches (index.words); `fusion`:
    how it combines its signals (None: models.fusion's default); both go into the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise RuntimeError(f"another `xmr index build` is running on {root}") from err
        job = _Job(root, encoder, decode, batch_size, progress, engine,
                   backend or BackendSettings(), checkpoint_path, recall_target)
        words = _Words(tuple(text_fields), fusion or Fusion())
        return job.run(planned, tuple(levels), spec, fresh, words)


class _Job:
    def __init__(self, root: Path, encoder: Encoder, decode: Decode, batch_size: int,
                 progress: bool, engine: Engine | None, backend: BackendSettings,
                 checkpoint_path: Path | None, recall_target: float) -> None:
        self.root, self.encoder, self.decode = root, encoder, decode
        self.batch_size, self.progress = batch_size, progress
        self.engine, self.backend = engine, backend
        self.checkpoint_path, self.recall_target = checkpoint_path, recall_target
        self.skipped: list[str] = []

    def run(self, planned: Sequence[NewItem], levels: tuple[str, ...], spec: str,
            fresh: bool, words: _Words) -> BuildReport:
        live_path = generations.current(self.root)
        live = Metadata(live_path / DATABASE) if live_path else None
        try:
            gen_path, base_seq = self._start(live_path, live, levels, fresh, words)
            new = Metadata(gen_path / DATABASE)
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
        generations.prune(self.root, backend=self.backend)
        return BuildReport(gen_path, embedded, self.skipped, replayed, counts)

    # -- 1. plan ----------------------------------------------------------------------------
    def _start(self, live_path: Path | None, live: Metadata | None, levels: tuple[str, ...],
               fresh: bool, words: _Words) -> tuple[Path, int]:
        """Resume an unfinished build of this checkpoint on the same base, or start one."""
        base = live_path.name if live_path else None
        for gen in reversed(generations.generations(self.root)):
            if not (gen / generations.BUILDING).exists():
                continue
            state = _read_state(gen)
            same = (state.get("checkpoint_id") == self.encoder.checkpoint_id
                    and state.get("base") == base and not fresh)
            if same:
                log.info("resuming the unfinished build %s", gen.name)
                return gen, int(state["base_seq"])
            drop_external_stores(gen)  # an abandoned build of another checkpoint or base
            shutil.rmtree(gen)
        extra = {} if self.checkpoint_path is None else \
            {"checkpoint": str(self.checkpoint_path.resolve())}
        manifest = Manifest(self.encoder.checkpoint_id, int(self.encoder.dim), levels, extra=extra,
                            text_fields=words.fields, fusion=words.fusion.as_dict())
        gen = create_generation(self.root, manifest, backend=self.backend)
        base_seq = live.high_water() if live is not None else 0
        state = {"checkpoint_id": self.encoder.checkpoint_id, "base": base,
                 "base_seq": base_seq}
        (gen / STATE).write_text(json.dumps(state))
        return gen, base_seq

    def _plan(self, planned: Sequence[NewItem], live: Metadata | None,
              new: Metadata) -> list[tuple[int, NewItem]]:
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
    def _reserve(live: Metadata | None, new: Metadata, n: int) -> int:
        owner = live if live is not None else new
        with owner.write(allow_sealed=True):
            first = owner.reserve_ids(n)
        with new.write():
            new.set_next_id(first + n)
        return first

    # -- 2. embed ---------------------------------------------------------------------------
    def _embed(self, new: Metadata, work: list[tuple[int, NewItem]]) -> int:
        bar = tqdm(total=len(work), desc="embedding", unit="item", disable=not self.progress)
        done = 0
        batches = self._encoded(work) if self.engine is None else self._engine_batches(work)
        for batch, vectors in batches:
            with new.write():
                new.insert([item for _, item in batch], vectors, self.encoder.checkpoint_id,
                           ids=[item_id for item_id, _ in batch])
            done += len(batch)
            bar.update(len(batch) + (len(batch) == 0))
        bar.close()
        return done

    def _encoded(self, work: list[tuple[int, NewItem]]
                 ) -> Iterator[tuple[list[tuple[int, NewItem]], np.ndarray]]:
        """Text batches, then image batches decoded one batch ahead on a thread (decoding and
        encoding overlap; torch and Pillow both release the GIL in their heavy parts)."""
        texts = [w for w in work if w[1].modality == "text"]
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            yield batch, self.encoder.encode_texts([item.text or "" for _, item in batch])
        images = [w for w in work if w[1].modality == "image"]
        for batch, decoded in self._decoded_ahead(images):
            yield batch, (self.encoder.encode_images(decoded) if batch
                          else np.zeros((0, self.encoder.dim), np.float32))

    def _engine_batches(self, work: list[tuple[int, NewItem]]
                        ) -> Iterator[tuple[list[tuple[int, NewItem]], np.ndarray]]:
        assert self.engine is not None
        modalities = [item.modality for _, item in work]
        payloads = [(item.text or "") if item.modality == "text" else (item.source or "")
                    for _, item in work]
        for rows, vectors in self.engine.stream(modalities, payloads):
            readable = np.isfinite(vectors).all(axis=1)
            for row in rows[~readable]:
                log.warning("left out image item %d: unreadable %s", work[row][0], payloads[row])
                self.skipped.append(payloads[row])
            yield [work[row] for row in rows[readable]], vectors[readable]

    def _decoded_ahead(self, work: list[tuple[int, NewItem]]
                       ) -> Iterator[tuple[list[tuple[int, NewItem]], list[Any]]]:
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for start in range(0, len(work), self.batch_size):
                    if stop.is_set():
                        return
                    ready.put(self._decode_batch(work[start:start + self.batch_size]))
                ready.put(None)
            except BaseException as err:  # surfaced in the consumer
                ready.put(err)

        thread = threading.Thread(target=produce, name="decode", daemon=True)
        thread.start()
        try:
            while (got := ready.get()) is not None:
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stop.set()

    def _decode_batch(self, batch: list[tuple[int, NewItem]]
                      ) -> tuple[list[tuple[int, NewItem]], list[Any]]:
        kept, decoded = [], []
        for item_id, item in batch:
            try:
                decoded.append(self.decode(item.source or ""))
                kept.append((item_id, item))
            except (ValueError, OSError) as err:
                log.warning("left out image item %d: %s", item_id, err)
                self.skipped.append(item.source or "")
        return kept, decoded

    def _caption(self, new: Metadata) -> None:
        """Caption vectors of the images with words (index.words): a pair's text vector where
        the words are a text item's text, else the words embedded as a text."""
        with new.write():
            new.caption_from_pairs()
        with new.read():
            todo = new.uncaptioned()
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            vectors = self.encoder.encode_texts([words for _, words in batch])
            with new.write():
                new.set_captions([item_id for item_id, _ in batch], vectors)

    # -- 3. index ---------------------------------------------------------------------------
    def _index(self, gen_path: Path, new: Metadata, spec: str) -> None:
        """One store per modality on the chosen backend, trained on a sample when its type
        needs it, its search parameter tuned on the other modality (index.tuning) and recorded
        in the manifest, then snapshotted (the store saves the tuned value with itself)."""
        dim = int(self.encoder.dim)
        stores: dict[str, VectorStore] = {}
        with new.read():
            seq = new.high_water()
            vectors = {m: new.all_vectors(m, dim) for m in SPACES}
        tuned: dict[str, dict] = {}
        for modality, (ids, rows) in vectors.items():
            store = create_store(dim, gen_path, self.backend, name=modality, spec=spec,
                                 n_hint=len(ids), gpu=False)
            if isinstance(store, FaissStore) and not store.is_trained:
                store.train(rows)
            store.add(ids, rows)
            stores[modality] = store
            if isinstance(store, FaissStore):
                tuned[modality] = tune_other_modality(store, modality, vectors,
                                                      self.recall_target).as_dict()
            log.info("%s: %d vectors in %s %s", modality, len(ids),
                     getattr(store, "spec", type(store).__name__), tuned.get(modality, ""))
        manifest = replace(Manifest.read(gen_path), search=tuned)
        manifest.write(gen_path)
        gen = Generation(gen_path, manifest, new, stores, seq)
        try:
            write_snapshot(gen)
        finally:
            for store in stores.values():
                close_store(store)

    # -- 4. catch up and swap -----------------------------------------------------------------
    def _swap(self, gen_path: Path, new: Metadata, live: Metadata | None, base_seq: int) -> int:
        if live is None:
            generations.swap(self.root, gen_path)
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
            next_id = int(live.db.execute(
                "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'items'"
            ).fetchone()[0]) + 1
            with new.write():
                new.set_next_id(next_id)
            generations.swap(self.root, gen_path)
            live.seal(gen_path.name)
        return replayed

    def _replay(self, new: Metadata, live: Metadata, since: int) -> tuple[int, int]:
        """Apply live journal entries after `since` to the new generation."""
        entries = live.journal_since(since)
        if not entries:
            return since, 0
        final: dict[int, str] = {}
        for _seq, op, item_id, _modality in entries:
            final[item_id] = op
        records = live.get_many([i for i, op in final.items() if op == "add"])
        for item_id, op in final.items():
            record = records.get(item_id)
            if op == "del" or record is None:
                with new.write():
                    new.delete(item_id)
            else:
                self._put(new, item_id, as_new(record))
        return entries[-1][0], len(entries)

    def _put(self, new: Metadata, item_id: int, item: NewItem) -> None:
        """Make the new generation hold `item` under `item_id` as the live one does (re-embedded
        unless its content is there already). The live id was handed to a client, so it wins
        over an item the plan gave the same key, or the same content without a key."""
        present = new.get(item_id)
        same = present is not None and (present.modality, present.content_hash) == (
            item.modality, item.content_hash)
        batch, vectors = ([], None) if same else next(iter(self._encoded([(item_id, item)])),
                                                      ([], None))
        with new.write():
            clash = new.id_of_key(item.key) if item.key is not None else new.id_of(
                item.modality, item.content_hash, unkeyed=True)
            if clash is not None and clash != item_id:
                new.delete(clash)
            if same:
                new.replace(item_id, item, self.encoder.checkpoint_id)
                return
            new.delete(item_id)
            if batch and vectors is not None:
                new.insert([item], vectors, self.encoder.checkpoint_id, ids=[item_id])
        self._caption(new)


@dataclass(frozen=True)
class _Words:
    """What hybrid search of the new generation matches, and how it fuses (the manifest's)."""
    fields: tuple[str, ...]
    fusion: Fusion


def _read_state(gen: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((gen / STATE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
