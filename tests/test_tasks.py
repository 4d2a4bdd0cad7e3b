"""TaskSet: tasks kept until done, failures logged with the task's name, cancelled and awaited together."""

from __future__ import annotations

import asyncio
import gc

from structlog.testing import capture_logs

from voicelive_sip._tasks import TaskSet


async def test_a_spawned_task_is_held_until_it_ends_and_returns_its_result() -> None:
    tasks = TaskSet()
    release = asyncio.Event()

    async def job() -> int:
        await release.wait()
        return 7

    task = tasks.spawn(job(), name="job")
    del task
    gc.collect()  # asyncio alone holds tasks weakly: the set must keep this one alive
    assert len(tasks) == 1
    release.set()
    assert await tasks.wait(timeout=None)
    assert len(tasks) == 0


async def test_a_failed_task_is_logged_with_its_name_and_reason() -> None:
    tasks = TaskSet()

    async def broken() -> None:
        raise ValueError("no such digit")

    with capture_logs() as logs:
        task = tasks.spawn(broken(), name="call.dtmf")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    [failed] = [entry for entry in logs if entry["event"] == "task.failed"]
    assert failed["task"] == "call.dtmf"
    assert failed["error_type"] == "ValueError"
    assert failed["error"] == "no such digit"
    assert failed["log_level"] == "error"


async def test_cancelled_tasks_are_not_reported_as_failures() -> None:
    tasks = TaskSet()
    never = asyncio.Event()
    with capture_logs() as logs:
        task = tasks.spawn(never.wait(), name="idle")
        assert not await tasks.wait(timeout=0)  # still running
        tasks.cancel()
        assert await tasks.wait(timeout=None)
    assert task.cancelled()
    assert len(tasks) == 0
    assert not [entry for entry in logs if entry["event"] == "task.failed"]


async def test_wait_with_nothing_running_is_immediately_true() -> None:
    assert await TaskSet().wait(timeout=0)
