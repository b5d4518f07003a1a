"""BM25 as SQLite FTS5's `bm25()` computes it, over an in-memory inverted index of FTS5's own
tokens (models.lexical tokenizes).

FTS5 stays the store: the words of an item are written in the item's transaction, and the
tokenizer is FTS5's. Scoring happens here because FTS5 computes `bm25()` one matching row at a
time through its auxiliary-function interface, and counts the rows holding each query word by
walking that word's whole posting list, on every query: a cost that grows with every row a
query's words hold. Here each token's postings are arrays, and a query is a few vectorised
operations over the postings of its tokens, however common they are.

The score is FTS5's, with its defaults (k1 = 1.2, b = 0.75, one column of weight 1): for each
query phrase (a query word's token; a token given twice counts twice, as two FTS5 phrases do)
held by n of the N rows, idf = ln((N - n + 0.5) / (n + 0.5)) (1e-6 where that is not positive),
and a row holding it tf times, with D tokens against the table's mean avgdl, gains
idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * D / avgdl)). A row holding no query token is not
found.

Each document sits in a slot; a token's postings are the slots of the documents holding it
and how often each does. A removed document's slot is marked free at once and its postings are
skipped by every query; they are cut out, and the free slots reused, once free slots make up a
quarter of all slots.

A query word's gains (its live slots and what each gains) are kept once computed, until the next
write changes what they depend on (the row count, the mean length, its postings): a service
answers many queries between writes, and most of them share common words.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

K1 = 1.2
B = 0.75


class Postings:
    """Documents (rowid -> its FTS5 tokens) and BM25 over them. Not thread-safe: the caller
    serialises access (an index generation's lock)."""

    def __init__(self) -> None:
        self._token_id: dict[str, int] = {}
        self._slots: list[np.ndarray] = []  # per token id: slots holding it (int64)
        self._tf: list[np.ndarray] = []  # per token id: how often each of those holds it
        self._rowid = np.zeros(0, np.int64)  # per slot: its document's rowid, -1 free
        self._length = np.zeros(0)  # per slot: its document's token count
        self._slot_of: dict[int, int] = {}
        self._free: list[int] = []  # free slots whose postings are cut out: reusable
        self._stale = 0  # free slots whose postings are not cut out yet
        self._tokens = 0  # over every document
        self._gains: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per token id, until a write

    @classmethod
    def load(cls, rowids: np.ndarray, postings: Mapping[str, tuple[np.ndarray, np.ndarray]]
             ) -> Postings:
        """Every document at once: `rowids` (those holding no token too) and, per token, the
        rowids holding it and how often each does."""
        out = cls()
        rowids = np.unique(np.asarray(rowids, np.int64))
        out._rowid = rowids
        out._length = np.zeros(len(rowids))
        out._slot_of = dict(zip(rowids.tolist(), range(len(rowids)), strict=True))
        for token, (holding, tf) in postings.items():
            slots = np.searchsorted(rowids, holding)
            out._token_id[token] = len(out._slots)
            out._slots.append(slots)
            out._tf.append(np.asarray(tf, np.float64))
            np.add.at(out._length, slots, tf)
        out._tokens = int(out._length.sum())
        return out

    def __len__(self) -> int:
        return len(self._slot_of)

    def set(self, documents: Iterable[tuple[int, Sequence[str]]]) -> None:
        """Add each (rowid, tokens) document, replacing one of the same rowid."""
        found = [(int(rowid), Counter(tokens)) for rowid, tokens in documents]
        self.remove(rowid for rowid, _ in found)
        self._gains.clear()
        by_token: dict[int, tuple[list[int], list[int]]] = {}
        for rowid, counts in found:
            slot = self._take_slot(rowid, sum(counts.values()))
            for token, tf in counts.items():
                token_id = self._token_id.setdefault(token, len(self._token_id))
                slots, tfs = by_token.setdefault(token_id, ([], []))
                slots.append(slot)
                tfs.append(tf)
        for token_id, (slots, tfs) in by_token.items():
            if token_id == len(self._slots):
                self._slots.append(np.zeros(0, np.int64))
                self._tf.append(np.zeros(0))
            self._slots[token_id] = np.concatenate([self._slots[token_id], slots])
            self._tf[token_id] = np.concatenate([self._tf[token_id], tfs])

    def remove(self, rowids: Iterable[int]) -> None:
        """Drop these documents (rowids not held are ignored)."""
        self._gains.clear()
        for rowid in rowids:
            slot = self._slot_of.pop(int(rowid), None)
            if slot is not None:
                self._tokens -= int(self._length[slot])
                self._rowid[slot] = -1
                self._length[slot] = 0
                self._stale += 1
        if self._stale * 4 > len(self._rowid):
            self._cut_stale()

    def scores(self, phrases: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, BM25 scores) of the documents holding any of `phrases` (query tokens)."""
        slots: list[np.ndarray] = []
        gains: list[np.ndarray] = []
        for phrase in phrases:
            token_id = self._token_id.get(phrase)
            if token_id is None:
                continue
            held, gain = self._gains_of(token_id)
            if len(held):
                slots.append(held)
                gains.append(gain)
        if not slots:
            return np.zeros(0, np.int64), np.zeros(0)
        if len(slots) == 1:
            return self._rowid[slots[0]], gains[0]
        held, gain = np.concatenate(slots), np.concatenate(gains)
        if len(held) * 16 < len(self._rowid):  # few postings: sort them, else sum by slot
            found, where = np.unique(held, return_inverse=True)
            return self._rowid[found], np.bincount(where, gain)
        total = np.bincount(held, gain, minlength=len(self._rowid))
        # Every gain is above 0, so a matched slot sums above 0 (compared first: numpy finds
        # the set entries of a boolean array several times faster than those of a float one).
        found = np.flatnonzero(total > 0)
        return self._rowid[found], total[found]

    def _gains_of(self, token_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(live slots holding the token, each one's BM25 gain for it)."""
        if token_id in self._gains:
            return self._gains[token_id]
        held, tf = self._slots[token_id], self._tf[token_id]
        if self._stale:
            live = self._rowid[held] >= 0
            held, tf = held[live], tf[live]
        rows = len(self._slot_of)
        idf = math.log((rows - len(held) + 0.5) / (len(held) + 0.5))
        idf = idf if idf > 0 else 1e-6
        norm = K1 * (1 - B + B * self._length[held] / (self._tokens / rows if rows else 1.0))
        self._gains[token_id] = held, idf * (tf * (K1 + 1)) / (tf + norm)
        return self._gains[token_id]

    def best(self, phrases: Sequence[str], k: int, allow: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best (rowids, scores), best first, ties by rowid; `allow`: only these
        rowids (None: any)."""
        rowids, scores = self.scores(phrases)
        if allow is not None:
            keep = np.isin(rowids, allow)
            rowids, scores = rowids[keep], scores[keep]
        if len(scores) > k:  # every row tied with the k-th best stays for the tie-break
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth
            rowids, scores = rowids[keep], scores[keep]
        order = np.lexsort((rowids, -scores))[:k]
        return rowids[order], scores[order]

    def _take_slot(self, rowid: int, length: int) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._rowid[slot] = rowid
        self._length[slot] = length
        self._slot_of[rowid] = slot
        self._tokens += length
        return slot

    def _grow(self) -> None:
        size = len(self._rowid)
        more = max(16, size)
        self._rowid = np.concatenate([self._rowid, np.full(more, -1, np.int64)])
        self._length = np.concatenate([self._length, np.zeros(more)])
        self._free = list(range(size + more - 1, size - 1, -1))  # lowest slot first

    def _cut_stale(self) -> None:
        for token_id, held in enumerate(self._slots):
            live = self._rowid[held] >= 0
            self._slots[token_id] = held[live]
            self._tf[token_id] = self._tf[token_id][live]
        used = set(self._slot_of.values())
        self._free = [slot for slot in range(len(self._rowid) - 1, -1, -1) if slot not in used]
        self._stale = 0
