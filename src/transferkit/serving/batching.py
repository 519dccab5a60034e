"""Micro-batching: concurrent requests of one worker share one forward pass.

A request hands its inputs to :meth:`MicroBatcher.submit` and awaits its rows of probabilities. One task takes the
first waiting request, then keeps collecting others until ``max_items`` inputs are gathered or ``wait_s`` has
passed since the first arrived, runs them as one batch in a worker thread, and hands each request its rows. With
``wait_s = 0`` every request runs alone, in arrival order (the same thread, so the two modes are comparable).

A batch costs less per input than single requests when the model's per-call overhead or the processor's idle
width is large (small inputs, many cores, a GPU); on a saturated CPU it mostly adds the wait. ``benchmarks/
serve_load.py`` measures both on the same model.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class _Job:
    items: Sequence[Any]
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Runs ``predict(items) -> (len(items), C) array`` for concurrent callers, batching them when ``wait_s > 0``."""

    def __init__(self, predict: Callable[[Sequence[Any]], np.ndarray], *, wait_s: float = 0.0,
                 max_items: int = 32) -> None:
        self.predict = predict
        self.wait_s = float(wait_s)
        self.max_items = int(max_items)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferkit-predict")
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(items, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: _Job | None = None
        while True:
            job = pending or await self._queue.get()
            pending = None
            jobs, count = [job], len(job.items)
            if self.wait_s > 0:
                deadline = job.arrived + self.wait_s
                while count < self.max_items:
                    timeout = deadline - time.perf_counter()
                    try:
                        other = self._queue.get_nowait() if timeout <= 0 else \
                            await asyncio.wait_for(self._queue.get(), timeout)
                    except (asyncio.TimeoutError, asyncio.QueueEmpty):
                        break
                    if count + len(other.items) > self.max_items:
                        pending = other  # starts the next batch
                        break
                    jobs.append(other)
                    count += len(other.items)
            jobs = [j for j in jobs if not j.future.cancelled()]  # the client went away
            if not jobs:
                continue
            items = [item for j in jobs for item in j.items]
            try:
                proba = await loop.run_in_executor(self._executor, self.predict, items)
            except Exception as exc:
                if len(jobs) == 1:
                    if not jobs[0].future.done():
                        jobs[0].future.set_exception(exc)
                    continue
                # One request's inputs must not fail the others': run each request of the batch alone.
                for j in jobs:
                    await self._run_alone(loop, j)
                continue
            self.batches += 1
            self.items += len(items)
            start = 0
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(proba[start:start + len(j.items)])
                start += len(j.items)

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        if job.future.done():
            return
        try:
            proba = await loop.run_in_executor(self._executor, self.predict, job.items)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(job.items)
        if not job.future.done():
            job.future.set_result(proba)
