"""The media store's stripes exclude each other across worker processes: two stores over one
media directory stand for two processes (an flock belongs to its open file, so two stores of
one process exclude each other as two processes do)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.media import MediaStore


def test_a_stripe_held_by_one_store_waits_the_other(tmp_path: Path) -> None:
    first, second = MediaStore(tmp_path), MediaStore(tmp_path)
    order: list[str] = []

    async def main() -> None:
        async with first.locked(["b:abc", "key sku-1"]):
            waiting = asyncio.create_task(second_takes("b:abc"))
            await asyncio.sleep(0.2)
            assert not waiting.done(), "the second store took a stripe the first holds"
            async with asyncio.timeout(5):  # another stripe is free
                async with second.locked(["b:other"]):
                    order.append("other")
            order.append("first releases")
        await asyncio.wait_for(waiting, 5)

    async def second_takes(name: str) -> None:
        async with second.locked([name]):
            order.append("second")

    asyncio.run(main())
    assert order == ["other", "first releases", "second"]
    first.close()
    second.close()
