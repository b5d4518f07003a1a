"""Where re-index jobs are recorded, so that every worker process of the service answers for
every job: one JSON file per job under `INDEX/jobs/`, written whole (a temporary file renamed
over it) by the process that runs the job, read by any.

One job runs at a time across the processes: the runner holds an flock on `INDEX/jobs/.running`
for as long as its job runs. A job recorded as queued or running while nobody holds that lock
was left by a process that stopped; it is reported as failed.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

KEEP = 50  # the last KEEP jobs are remembered
FOLDER = "jobs"  # in the index directory
RUNNING = ".running"
ORPHANED = "failed: the service process that ran it stopped"


class JobBoard:
    def __init__(self, index: Path) -> None:
        self.folder = index / FOLDER
        self._held: int | None = None  # the RUNNING lock's file, while this process runs a job

    def claim(self) -> bool:
        """Take the one running slot; False when a job runs (in any process)."""
        if self._held is not None:
            return False
        fd = self._lock_file()
        for _attempt in range(3):  # another process's `running` holds it for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            self._held = fd
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        if self._held is not None:
            os.close(self._held)  # closing the file drops its flock
            self._held = None

    def running(self) -> bool:
        """Whether any process holds the running slot."""
        if self._held is not None:
            return True
        if not (self.folder / RUNNING).exists():
            return False
        fd = self._lock_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def save(self, job: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{job['id']}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self.folder / f"{job['id']}.json")

    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            job = json.loads((self.folder / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None
        return self._checked(job)

    def all(self) -> list[dict[str, Any]]:
        """The jobs remembered, oldest first; older ones beyond KEEP are forgotten here."""
        jobs = [job for path in self.folder.glob("*.json")
                if (job := self.get(path.stem)) is not None]
        jobs.sort(key=lambda job: job["created_at"])
        for old in jobs[:-KEEP]:
            (self.folder / f"{old['id']}.json").unlink(missing_ok=True)
        return jobs[-KEEP:]

    def _checked(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["state"] in ("queued", "running") and not self.running():
            job = {**job, "state": "failed", "message": ORPHANED}
        return job

    def _lock_file(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        return os.open(self.folder / RUNNING, os.O_RDWR | os.O_CREAT)
