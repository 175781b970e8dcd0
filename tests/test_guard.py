"""The time limit of the Redis guard, on its own: it ends what overruns it."""

import asyncio
import logging

import pytest

from asgilook.caching.guard import RedisGuard

LIMIT = 0.02


def guard():
    return RedisGuard(LIMIT, logging.getLogger('test'))


async def stubborn(done, cancels):
    """Takes every cancel as a reason to wait some more, until ``done``."""
    while True:
        try:
            await done.wait()
            return 'finished'
        except asyncio.CancelledError:
            cancels.append(1)


def test_an_operation_within_the_limit_gives_its_result():
    async def quick():
        await asyncio.sleep(0)
        return 'answer'

    assert asyncio.run(guard().timed(quick())) == 'answer'


def test_an_error_within_the_limit_is_the_operations_own():
    async def failing():
        raise ConnectionError('refused')

    with pytest.raises(ConnectionError, match='refused'):
        asyncio.run(guard().timed(failing()))


def test_an_overrun_is_cancelled_again_until_it_ends():
    async def run():
        done = asyncio.Event()
        cancels = []
        asyncio.get_running_loop().call_later(LIMIT * 10, done.set)
        with pytest.raises(TimeoutError):
            await guard().timed(stubborn(done, cancels))
        # The task is usable afterwards: no cancel of the limit is left over.
        assert asyncio.current_task().cancelling() == 0
        await asyncio.sleep(0)
        return cancels

    assert len(asyncio.run(run())) >= 3


def test_a_cancel_from_outside_during_an_overrun_still_cancels():
    async def run():
        done = asyncio.Event()
        task = asyncio.create_task(guard().timed(stubborn(done, [])))
        await asyncio.sleep(LIMIT * 3)
        task.cancel()
        await asyncio.sleep(LIMIT)
        done.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_a_cancel_from_outside_within_the_limit_is_not_a_timeout():
    async def run():
        task = asyncio.create_task(guard().timed(asyncio.sleep(10)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
