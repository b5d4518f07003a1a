"""The one owner of the served encoder's lifecycle: loading, preloading a re-index job's
checkpoint, following an index rebuilt under the service, and swapping encoders.

Every vector carries the checkpoint id of the encoder that made it, and is only ever compared
with items of that same checkpoint: when a new checkpoint comes in, the catalog (whose
generation names its checkpoint, as every hit's record does) and the encoder change one after
the other, and a query that straddles the change is encoded again instead of being searched in
the wrong space. No lock is held across requests and none is dropped: they wait for the pair to
agree (`settle`), at most `swap_wait_s`, then a CheckpointMismatch (a 503 problem).

An index rebuilt under a running service by `xmr index build` with another checkpoint (not
through /v1/jobs) is followed too: the first request that meets the new generation starts
loading the checkpoint its manifest names, and the encoder is swapped when it is ready; until
then requests wait (bounded) and get a 503, and when that checkpoint cannot be loaded a 409.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.settings import Settings
from service.vectors import CheckpointMismatch

if TYPE_CHECKING:
    from index.catalog import Catalog
    from models.inference import Encoder

log = logging.getLogger("service.lifecycle")
OnEncoderThread = Callable[[Callable[[], Any]], Awaitable[Any]]


def load_encoder(path: str | Path, settings: Settings) -> Encoder:
    """The encoder of a checkpoint file, as the settings run it (blocking: call it in a
    thread). `encoder_threads`: each worker thread's OpenMP team."""
    from models.inference import Encoder

    return Encoder.load(path, settings.device, settings.encoder_threads,
                        settings.encoder_runtime)


class EncoderLifecycle:
    """Holds the served encoder; `on_encoder_thread` runs a swap on an encoder worker."""

    def __init__(self, encoder: Encoder, catalog: Catalog, settings: Settings,
                 on_encoder_thread: OnEncoderThread) -> None:
        self._encoder = encoder
        self._catalog = catalog
        self._settings = settings
        self._on_encoder_thread = on_encoder_thread
        self._swaps = 0
        self._checkpoint_path = str(settings.checkpoint)  # the file the encoder came from
        self._preloaded: dict[str, Encoder] = {}  # by checkpoint id (a re-index job's)
        self._following: dict[str, asyncio.Task[None]] = {}
        self._unloadable: dict[str, str] = {}  # checkpoint id -> why it cannot be followed

    @property
    def current(self) -> Encoder:
        return self._encoder

    @property
    def checkpoint_path(self) -> str:
        """The checkpoint file of the served encoder (what a re-index job re-embeds with)."""
        return self._checkpoint_path

    @property
    def swaps(self) -> int:
        return self._swaps

    async def settle(self) -> None:
        """After a stale vector: wait, at most `swap_wait_s`, for the encoder and the catalog's
        generation to name one checkpoint (a swap half done, or a generation of another
        checkpoint being followed); CheckpointMismatch past that."""
        deadline = asyncio.get_running_loop().time() + self._settings.swap_wait_s
        while (wanted := self._catalog.checkpoint_id) != self._encoder.checkpoint_id:
            self._follow(wanted)
            if wanted in self._unloadable:
                raise CheckpointMismatch(self._unloadable[wanted], loading=False)
            if asyncio.get_running_loop().time() >= deadline:
                raise CheckpointMismatch(
                    f"the index now serves checkpoint {wanted} and this service encodes with "
                    f"{self._encoder.checkpoint_id}: the encoder of {wanted} is loading",
                    loading=True)
            await asyncio.sleep(0.02)

    async def preload(self, path: str) -> str | None:
        """Load the encoder of checkpoint `path` ahead of its generation (a re-index job's),
        unless it is the one served: its checkpoint id, or None. A request that meets the new
        generation first swaps it in."""
        from models.inference import checkpoint_id

        wanted = await asyncio.to_thread(checkpoint_id, path)
        if wanted == self._encoder.checkpoint_id:
            return None
        self._preloaded[wanted] = await asyncio.to_thread(load_encoder, path, self._settings)
        return wanted

    async def adopt(self, path: str, preloaded: str | None) -> str:
        """Serve the generation CURRENT names, built from checkpoint `path` (a re-index job's),
        with the encoder `preload` gave `preloaded` when there is one; says what changed."""
        new = None if preloaded is None else self._preloaded.pop(preloaded, None)
        if new is not None and self._encoder.checkpoint_id == new.checkpoint_id:
            new = None  # a request met the new generation first and swapped it in
        await self.reload(new)
        self._checkpoint_path = path
        swapped = f" and checkpoint {self._encoder.checkpoint_id}" if preloaded else ""
        return f"serving the new generation{swapped}"

    async def reload(self, new_encoder: Encoder | None = None) -> bool:
        """Adopt the index generation CURRENT names, and `new_encoder` with it when given."""
        if new_encoder is None:
            return await asyncio.to_thread(self._catalog.reload)

        def swap() -> bool:  # on an encoder thread; a batch that other workers are running
            self._encoder = new_encoder  # with the old encoder gives stale vectors, encoded again
            self._swaps += 1
            return self._catalog.reload()

        changed: bool = await self._on_encoder_thread(swap)
        if self._catalog.checkpoint_id != new_encoder.checkpoint_id:
            log.error("index serves checkpoint %s but the new encoder is %s",
                      self._catalog.checkpoint_id, new_encoder.checkpoint_id)
        log.info("now serving checkpoint %s", new_encoder.checkpoint_id)
        return changed

    def _follow(self, checkpoint: str) -> None:
        """Start loading the encoder of the catalog's checkpoint (once)."""
        if checkpoint not in self._following and checkpoint not in self._unloadable:
            task = asyncio.get_running_loop().create_task(self._load_and_swap(checkpoint))
            self._following[checkpoint] = task
            task.add_done_callback(lambda _: self._following.pop(checkpoint, None))

    async def _load_and_swap(self, checkpoint: str) -> None:
        from models.inference import checkpoint_id

        try:
            encoder = self._preloaded.get(checkpoint)  # `adopt` drops it
            if encoder is None:
                path = self._catalog.checkpoint_path
                if path is None:
                    raise ValueError("its manifest does not name the checkpoint file")
                if await asyncio.to_thread(checkpoint_id, path) != checkpoint:
                    raise ValueError(f"{path} is no longer that checkpoint")
                log.warning("the index now serves checkpoint %s: loading %s", checkpoint, path)
                encoder = await asyncio.to_thread(load_encoder, path, self._settings)
            if self._encoder.checkpoint_id != checkpoint == self._catalog.checkpoint_id:
                await self.reload(encoder)
                self._checkpoint_path = self._catalog.checkpoint_path or self._checkpoint_path
        except Exception as err:  # answered to every request as a 409 problem
            self._unloadable[checkpoint] = (
                f"the index {self._settings.index} now serves checkpoint {checkpoint} (rebuilt "
                f"by `xmr index build`), whose encoder this service cannot load ({err}); "
                "restart it with that build's --checkpoint")
            log.error("%s", self._unloadable[checkpoint])
