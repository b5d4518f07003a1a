"""The multipart forms of the upload routes, as FastAPI parses them (`Annotated[Model, Form()]`):
the counterparts of service.schemas' JSON bodies. Structured fields are JSON strings (pydantic's
`Json`); a field no model names is refused with a 422, as in a JSON body."""

from __future__ import annotations

from typing import Any

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, Json, RootModel

from service.schemas import K_DOC, NEW_LABELS_DOC, Key, LabelFilter, WhereFilter


class LabelList(RootModel[list[str]]):
    """Labels coarse to fine. A model, not `list[str]`: FastAPI reads a list-typed form field
    from repeated fields, where this one is a single JSON field."""


_LABELS = 'label filter as JSON, {"level": "value"}'
_WHERE = 'metadata filter as JSON, {"field": value}: equality on top-level fields'


class ImageSearchForm(BaseModel):
    """An image search by upload; k, labels, where and rerank may come as query parameters
    instead (a form field wins)."""

    model_config = ConfigDict(extra="forbid")
    file: UploadFile = Field(description="the query image (image/* or "
                                         "application/octet-stream)")
    k: int | None = Field(None, description=K_DOC)
    labels: Json[LabelFilter] | None = Field(None, description=_LABELS)
    where: Json[WhereFilter] | None = Field(None, description=_WHERE)
    rerank: bool | None = Field(None, description="re-rank with the cross-attention scorer")


class ImageSearchParams(BaseModel):
    """The query parameters an upload search may carry instead of form fields."""

    k: int | None = Field(None, description=K_DOC)
    labels: Json[LabelFilter] | None = Field(None, description=_LABELS)
    where: Json[WhereFilter] | None = Field(None, description=_WHERE)
    rerank: bool | None = None


class ItemForm(BaseModel):
    """An image (`file`), a text, or both (a pair), as ItemIn."""

    model_config = ConfigDict(extra="forbid")
    file: UploadFile | None = Field(None, description="the image (image/* or "
                                                      "application/octet-stream)")
    text: str | None = None
    labels: Json[LabelList] | None = Field(None, description='JSON ["coarse", "fine"]')
    new_labels: bool = Field(False, description=NEW_LABELS_DOC)
    key: Key | None = None
    metadata: Json[dict[str, Any]] | None = Field(None, description="a JSON object")
