"""The job board as two worker processes share it: one running slot, and jobs whose process
stopped reported as failed. Two boards over one folder stand for two processes (flock locks
belong to each open file, so they exclude each other within one process too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.job_board import KEEP, ORPHANED, JobBoard
from service.jobs import JobManager
from service.settings import Settings


def job(job_id: str, state: str = "running", created_at: float = 1.0) -> dict[str, object]:
    return {"id": job_id, "state": state, "message": "", "created_at": created_at}


def test_one_running_slot_across_boards(tmp_path: Path) -> None:
    first, second = JobBoard(tmp_path), JobBoard(tmp_path)
    assert not second.running()
    assert first.claim()
    assert second.running() and not second.claim() and not first.claim()
    first.save(job("a1"))
    assert second.get("a1") == job("a1")  # running, and its runner holds the slot
    first.release()
    assert not second.running()
    assert second.get("a1") == {**job("a1"), "state": "failed", "message": ORPHANED}
    assert second.claim()
    second.release()


def test_finished_jobs_read_as_saved_and_old_ones_are_forgotten(tmp_path: Path) -> None:
    board = JobBoard(tmp_path)
    for n in range(KEEP + 3):
        board.save(job(f"{n:04x}", "succeeded", created_at=float(n)))
    kept = board.all()
    assert [j["id"] for j in kept] == [f"{n:04x}" for n in range(3, KEEP + 3)]
    assert board.get("0000") is None and board.get("nothing") is None


def test_a_job_that_cannot_be_recorded_leaves_the_slot_free(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    corpus, checkpoint = tmp_path / "corpus", tmp_path / "checkpoint.pt"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("")
    checkpoint.write_bytes(b"")
    jobs = JobManager(Settings(index=tmp_path / "index", checkpoint=checkpoint), lambda: None)

    def disk_full(job: dict[str, object]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jobs.board, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        jobs.start(str(corpus), None)
    assert not jobs.board.running(), "a job that never started holds the running slot"
