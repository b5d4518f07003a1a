"""Request and response bodies (with the examples shown in /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

Modality = Literal["image", "text"]
SearchMode = Literal["hybrid", "vector", "lexical"]
Signal = Literal["vector", "caption", "lexical"]
Weight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
LabelFilter = dict[str, str]
# Keys, metadata and `where` are checked by the index layer's rules (service.queries), one
# place for JSON and forms; the schemas describe them.
Key = Annotated[str, WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": 256,
    "description": "your name for the item (1-256 characters, no control characters, unique); "
                   "posting an existing key replaces that item"})]
Metadata = Annotated[dict[str, Any], Field(description=(
    "any JSON object of at most 16 KB (as compact UTF-8 JSON); its top-level scalar fields "
    "can be filtered on with `where`"))]
WhereFilter = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    "description": "metadata filter {field: value}: equality on top-level metadata fields, "
                   "every pair must match"})]
ItemId = Annotated[int, Field(ge=0, le=2**63 - 1)]

PIXEL_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
             "AAAABJRU5ErkJggg==")  # a 1x1 red PNG
_LABELS_DOC = "label filter {level: value}; every pair must match (levels: see GET /v1/info)"
NEW_LABELS_DOC = ("store label values the index does not know yet (otherwise a 422 names "
                  "the known ones)")
K_DOC = ("number of results, 1 to XMR_MAX_K (GET /v1/info: max_k); default 10, or XMR_MAX_K "
          "when that is less")
_MODE_DOC = ("how text ranks the items: `hybrid` (what an image shows, the words it carries, and "
             "their BM25 match, fused), `vector` (the learned cross-modal score alone) or "
             "`lexical` (BM25 alone: only items holding a query word); default hybrid where the "
             "index holds words for the items searched, else vector")
_WEIGHTS_DOC = ("hybrid mode: weights of the signals `vector`, `caption`, `lexical` (>= 0), "
                "each given one replacing the index's (GET /v1/info: fusion)")
_EXPLAIN_DOC = "give each hit every signal's score (`signals`)"
_RERANK_DOC = ("re-rank the top candidates with the checkpoint's cross-attention scorer "
               "(aaml checkpoints only; 400 otherwise)")


def item_url(item_id: int, modality: str) -> str:
    return f"/v1/items/{item_id}/image" if modality == "image" else f"/v1/items/{item_id}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextQuery(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "cat face", "k": 10},
        {"text": "red fruit", "k": 5, "labels": {"group": "Food & Drink"}, "rerank": False},
        {"text": "running shoe", "k": 5, "where": {"brand": "acme", "in_stock": True}},
    ]})
    text: str = Field(description="the query text (at most XMR_MAX_TEXT_CHARS characters)")
    k: int | None = Field(None, description=K_DOC)
    labels: LabelFilter | None = Field(None, description=_LABELS_DOC)
    where: WhereFilter | None = None
    rerank: bool = Field(False, description=_RERANK_DOC)
    mode: SearchMode | None = Field(None, description=_MODE_DOC)
    weights: dict[Signal, Weight] | None = Field(None, description=_WEIGHTS_DOC)
    explain: bool = Field(False, description=_EXPLAIN_DOC)

    @model_validator(mode="after")
    def _some_weight(self) -> TextQuery:
        if self.weights and len(self.weights) == 3 and not any(self.weights.values()):
            raise ValueError("weights: at least one signal needs a weight above 0")
        return self


class ImageQuery(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"image_base64": PIXEL_PNG,
         "k": 5},
    ]})
    image_base64: str = Field(description="PNG, JPEG, WebP, GIF, ... bytes in base64 "
                                          "(a data: URL prefix is accepted)")
    k: int | None = Field(None, description=K_DOC)
    labels: LabelFilter | None = Field(None, description=_LABELS_DOC)
    where: WhereFilter | None = None
    rerank: bool = Field(False, description=_RERANK_DOC)


class SearchHit(BaseModel):
    id: int
    score: float = Field(description="cosine similarity, or the re-ranker's score when re-ranked")
    modality: Modality
    labels: list[str]
    url: str = Field(description="where to fetch the item (images: its bytes)")
    text: str | None = Field(None, description="a text item's text; an image's caption, when "
                                               "it was ingested or imported with one")
    key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float | None = Field(None, description="cosine similarity (re-ranked hits)")
    signals: dict[str, float | None] | None = Field(
        None, description="with explain: each signal's score of this hit (`vector`: cosine to "
                          "the item, `caption`: cosine to its words, `lexical`: BM25 of the "
                          "query in its words), null where that signal did not find it")


class SearchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "results": [{"id": 42, "score": 0.71, "modality": "image",
                     "labels": ["Animals & Nature", "animal-mammal"],
                     "url": "/v1/items/42/image", "text": "cat face", "key": "1F431",
                     "metadata": {}, "similarity": None}],
        "k": 10, "modality": "image", "reranked": False, "took_ms": 12.5,
        "checkpoint_id": "d29bed95f54b9787"}]})
    results: list[SearchHit]
    k: int
    modality: Modality = Field(description="modality of the results")
    reranked: bool
    mode: SearchMode | None = Field(None, description="how text ranked the results (text "
                                                      "queries and searches by item)")
    took_ms: float
    checkpoint_id: str


class SimilarQuery(_Strict):
    """Search with a stored item's vector (never re-encoded); the item is left out of its own
    results."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"key": "1F431", "k": 5, "modality": "text"},
        {"id": 42, "k": 10, "modality": "image", "where": {"brand": "acme"}},
    ]})
    id: ItemId | None = Field(None, description="the item's id (give id or key, not both)")
    key: Key | None = None
    k: int | None = Field(None, description=K_DOC)
    modality: Modality = Field(description="modality of the results")
    labels: LabelFilter | None = Field(None, description=_LABELS_DOC)
    where: WhereFilter | None = None
    mode: SearchMode = Field("vector", description="`vector`: the item's stored vector; "
                             "`hybrid` and `lexical` also match its words (its text, or an "
                             "image's caption)")


class ItemIn(_Strict):
    """An image, a text, or both (a pair: two items sharing the labels, key and metadata; the
    image has the key, the text the key + ":text", and the image carries the text as its
    caption)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "grinning face", "labels": ["Smileys & Emotion", "face-smiling"]},
        {"image_base64": PIXEL_PNG,
         "text": "a red dot", "labels": ["shapes"]},
        {"text": "trail running shoe, red", "key": "sku-1042",
         "metadata": {"brand": "acme", "price": 89.5}},
    ]})
    text: str | None = None
    image_base64: str | None = None
    labels: list[str] = Field(default_factory=list, description="one value per label level, "
                                                                 "coarse to fine, or none")
    new_labels: bool = Field(False, description=NEW_LABELS_DOC)
    key: Key | None = None
    metadata: Metadata | None = None


class BatchIn(_Strict):
    items: list[ItemIn] = Field(description="at most XMR_MAX_BATCH_ITEMS entries")


class Ingested(BaseModel):
    id: int
    modality: Modality
    created: bool = Field(description="false when the item's key existed (the item was "
                                      "replaced, same id) or, without a key, the same content "
                                      "was already stored (its id, unchanged)")
    status: Literal[200, 201] = Field(description="this item's own status: 201 created, 200 "
                                                  "replaced or already stored")
    key: str | None = None
    url: str


class IngestResponse(BaseModel):
    items: list[Ingested]


class ItemOut(BaseModel):
    id: int
    modality: Modality
    labels: list[str]
    text: str | None = None
    url: str
    content_hash: str
    checkpoint_id: str
    key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class JobIn(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"data": "artifacts/data/openmoji"},
        {"data": "artifacts/data/openmoji", "checkpoint": "artifacts/runs/aaml/checkpoint.pt"},
    ]})
    data: str = Field(description="corpus directory (manifest.jsonl) on the server")
    checkpoint: str | None = Field(None, description="checkpoint to re-embed with "
                                                     "(default: the one being served)")


JobState = Literal["queued", "running", "succeeded", "failed"]


class JobOut(BaseModel):
    id: str
    state: JobState
    progress: float | None = Field(None, description="done / total, 0..1 (1 once succeeded)")
    done: int | None = Field(None, description="items embedded (or found unreadable) so far")
    total: int | None = Field(None, description="items the build embeds")
    rate: float | None = Field(None, description="items per second so far")
    message: str = ""
    data: str
    checkpoint: str = Field(description="the checkpoint the build embeds with")
    cache: str = Field(description="the backbone feature cache the build reads through (and "
                                   "adds to): the one the live index was built with")
    created_at: float
    finished_at: float | None = None
    exit_code: int | None = None
    log_tail: list[str] = Field(default_factory=list,
                                description="the build's last log lines (not its progress)")


class JobsOut(BaseModel):
    jobs: list[JobOut]
