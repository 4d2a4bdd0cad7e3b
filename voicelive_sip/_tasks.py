"""TaskSet: the background tasks of one owner (a call, the gateway, the user agent), none of them lost.

asyncio keeps only weak references to tasks, so a task nobody holds can be collected mid-flight, and the
exception of a task nobody awaits is reported only when it is garbage-collected, if at all. A `TaskSet` holds
each task until it finishes and logs a failure at once as `task.failed` with the task's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._logger import get_logger

__all__ = ["TaskSet"]

T = TypeVar("T")

log = get_logger("voicelive_sip.tasks")


class TaskSet:
    """Spawn tasks that are kept alive until done, have failures logged, and can be cancelled together."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` as a task named `name`; the set holds it until it ends and logs it if it fails."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error(
                "task.failed",
                task=task.get_name(),
                error_type=type(error).__name__,
                error=str(error),
                exc_info=error,
            )

    def cancel(self) -> None:
        """Cancel every task still running (they finish cancelling on their next step)."""
        for task in self._tasks:
            task.cancel()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until every task has ended, at most `timeout` seconds; True if none is left running."""
        pending = [task for task in self._tasks if not task.done()]
        if not pending:
            return True
        _, still_running = await asyncio.wait(pending, timeout=timeout)
        return not still_running
