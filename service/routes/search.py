"""Search routes: text or image in, images or texts out (cross-modal and same-modality).
Thin: inputs are checked by service.queries, the work is service.search; errors become
problems in service.problems' handlers."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import JsonBody, RetrieverDep, SettingsDep
from service.problems import responses
from service.queries import image_search, similar_search, text_search
from service.schemas import ImageQuery, SearchResponse, SimilarQuery, TextQuery
from service.search import search, similar

router = APIRouter(prefix="/v1/search", tags=["search"])
ERRORS = responses(400, 409, 413, 415, 422, 503)


_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "k": {"type": "integer", "default": 10},
                    "labels": {"type": "string", "description": 'JSON {"level": "value"}'},
                    "where": {"type": "string",
                              "description": 'JSON {"field": value}: metadata equality'},
                    "rerank": {"type": "boolean", "default": False},
                }}},
            "application/json": {"schema": ImageQuery.model_json_schema()},
        },
    }
}


@router.post("/text-to-image", response_model=SearchResponse, responses=ERRORS,
             dependencies=[JsonBody], summary="Images for a text")
async def text_to_image(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                        ) -> SearchResponse:
    asked = text_search(query.text, query.k, query.labels, query.where, query.rerank, settings)
    return await search(retriever, settings, asked, "image")


@router.post("/text-to-text", response_model=SearchResponse, responses=ERRORS,
             dependencies=[JsonBody], summary="Texts for a text")
async def text_to_text(query: TextQuery, retriever: RetrieverDep, settings: SettingsDep
                       ) -> SearchResponse:
    asked = text_search(query.text, query.k, query.labels, query.where, query.rerank, settings)
    return await search(retriever, settings, asked, "text")


@router.post("/image-to-text", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Texts for an image")
async def image_to_text(request: Request, retriever: RetrieverDep, settings: SettingsDep
                        ) -> SearchResponse:
    return await search(retriever, settings, await image_search(request, settings), "text")


@router.post("/image-to-image", response_model=SearchResponse, responses=ERRORS,
             openapi_extra=_IMAGE_BODY, summary="Images for an image")
async def image_to_image(request: Request, retriever: RetrieverDep, settings: SettingsDep
                         ) -> SearchResponse:
    return await search(retriever, settings, await image_search(request, settings), "image")


@router.post("/similar", response_model=SearchResponse, responses=responses(404, 415, 422, 503),
             dependencies=[JsonBody], summary="Items like a stored item (by id or key)")
async def search_similar(query: SimilarQuery, retriever: RetrieverDep, settings: SettingsDep
                         ) -> SearchResponse:
    return await similar(retriever, settings, similar_search(query, settings))
