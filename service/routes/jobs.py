"""Re-index jobs: start one (`xmr index build` in a child process), watch it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.deps import JobsDep, Writer
from service.negotiation import ByMediaType
from service.problems import Problem, responses
from service.schemas import JobIn, JobOut, JobsOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=ByMediaType)
JobId = Annotated[str, Path(max_length=64, pattern=r"^[0-9a-f]+$")]


@router.post("", response_model=JobOut, status_code=202, dependencies=[Writer],
             responses=responses(401, 403, 409, 415, 422),
             summary="Re-embed a corpus into a new index generation and swap it in")
async def start_job(body: JobIn, jobs: JobsDep) -> JobOut:
    return JobOut.model_validate(jobs.start(body.data, body.checkpoint).public())


@router.get("", response_model=JobsOut)
async def list_jobs(jobs: JobsDep) -> JobsOut:
    return JobsOut(jobs=[JobOut.model_validate(job) for job in jobs.all()])


@router.get("/{job_id}", response_model=JobOut, responses=responses(404, 422))
async def get_job(job_id: JobId, jobs: JobsDep) -> JobOut:
    job = jobs.get(job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    return JobOut.model_validate(job)
