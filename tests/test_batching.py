"""Micro-batching isolation: a failure of one item in a batch fails only that item's request."""

from __future__ import annotations

import asyncio

import pytest

from service.batching import MicroBatcher


def _doubling(items: list[int]) -> list[int]:
    """A batch function that, like a tokenizer meeting unencodable text, raises for the whole batch."""
    if any(item < 0 for item in items):
        raise ValueError("negative item")
    return [2 * item for item in items]


def _per_item(items: list[int]) -> list[int | Exception]:
    return [ValueError(f"bad {item}") if item < 0 else 2 * item for item in items]


async def _submit_all(fn, items: list[int]) -> tuple[list[object], list[int]]:
    sizes: list[int] = []
    batcher = MicroBatcher(fn, max_size=16, max_wait_ms=200, name="t", on_batch=lambda n, _: sizes.append(n))
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(item) for item in items), return_exceptions=True)
    finally:
        await batcher.stop()
    return results, sizes


@pytest.mark.parametrize("fn", [_doubling, _per_item], ids=["batch-raises", "item-exception"])
def test_a_poison_item_fails_only_itself(fn) -> None:
    items = [1, 2, -3, 4, 5]
    results, sizes = asyncio.run(_submit_all(fn, items))
    assert sizes == [5], "all items should have ridden in one batch"
    for item, result in zip(items, results, strict=True):
        if item < 0:
            assert isinstance(result, ValueError)
        else:
            assert result.value == 2 * item and result.batch_size == 5


def test_a_result_count_mismatch_is_retried_per_item() -> None:
    def drops_last(items: list[int]) -> list[int]:
        return [2 * item for item in items][: max(1, len(items) - 1)]

    results, _ = asyncio.run(_submit_all(drops_last, [1, 2, 3]))
    assert [r.value for r in results] == [2, 4, 6]


def test_a_lone_failing_item_gets_its_error() -> None:
    results, _ = asyncio.run(_submit_all(_doubling, [-1]))
    assert isinstance(results[0], ValueError)
