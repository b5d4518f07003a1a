"""Search routes: text or image in, images or texts out (cross-modal and same-modality).
Thin: inputs are checked by service.queries, the work is service.search; errors become
problems in service.problems' handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query

from service.deps import RetrieverDep, SettingsDep, Utf8Fields
from service.forms import ImageSearchForm, ImageSearchParams
from service.negotiation import ByMediaType
from service.problems import responses
from service.queries import image_search, similar_search, text_search, upload_search
from service.schemas import ImageQuery, SearchResponse, SimilarQuery, TextQuery
from service.search import search, similar

router = APIRouter(prefix="/v1/search", tags=["search"], route_class=ByMediaType)
ERRORS = responses(400, 409, 413, 415, 422, 503)
UploadForm = Annotated[ImageSearchForm, Form(media_type="multipart/form-data")]
UploadParams = Annotated[ImageSearchParams, Query()]
# The image routes take JSON {"image_base64", ...} or a multipart upload (field `file`): one
# route for each (service.negotiation), under one OpenAPI operation; the upload's is its summary.


@router.post("/text-to-image", response_model=SearchResponse, responses=ERRORS,
             summary="Images for a text")
async def text_to_image(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                        ) -> SearchResponse:
    asked = text_search(query, settings)
    return await search(retriever, settings, asked, "image")


@router.post("/text-to-text", response_model=SearchResponse, responses=ERRORS,
             summary="Texts for a text")
async def text_to_text(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                       ) -> SearchResponse:
    asked = text_search(query, settings)
    return await search(retriever, settings, asked, "text")


@router.post("/image-to-text", response_model=SearchResponse, responses=ERRORS)
async def image_to_text_json(query: ImageQuery, retriever: RetrieverDep, settings: SettingsDep
                             ) -> SearchResponse:
    return await search(retriever, settings, await image_search(query, settings), "text")


@router.post("/image-to-text", response_model=SearchResponse, responses=ERRORS,
             dependencies=[Utf8Fields], summary="Texts for an image")
async def image_to_text(form: UploadForm, params: UploadParams, retriever: RetrieverDep,
                        settings: SettingsDep) -> SearchResponse:
    return await search(retriever, settings, await upload_search(form, params, settings), "text")


@router.post("/image-to-image", response_model=SearchResponse, responses=ERRORS)
async def image_to_image_json(query: ImageQuery, retriever: RetrieverDep, settings: SettingsDep
                              ) -> SearchResponse:
    return await search(retriever, settings, await image_search(query, settings), "image")


@router.post("/image-to-image", response_model=SearchResponse, responses=ERRORS,
             dependencies=[Utf8Fields], summary="Images for an image")
async def image_to_image(form: UploadForm, params: UploadParams, retriever: RetrieverDep,
                         settings: SettingsDep) -> SearchResponse:
    return await search(retriever, settings, await upload_search(form, params, settings),
                        "image")


@router.post("/similar", response_model=SearchResponse, responses=responses(404, 415, 422, 503),
             summary="Items like a stored item (by id or key)")
async def search_similar(query: SimilarQuery, retriever: RetrieverDep, settings: SettingsDep
                         ) -> SearchResponse:
    return await similar(retriever, settings, similar_search(query, settings))
