"""Per-column work on a thread pool, shared by :func:`~mlwatch.stats.drift.prepared.prepare`
and the drivers of :mod:`.drift` (:func:`~mlwatch.stats.drift.compare`,
:func:`~mlwatch.stats.drift.battery`): ``workers`` threads, up to 4 by default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from mlwatch.stats.columns import CATEGORICAL


def _default_workers(tasks: int) -> int:
    return max(1, min(tasks, os.cpu_count() or 1, 4))


def _run(tasks: Sequence[Callable[[], Any]], workers: int | None) -> list[Any]:
    """Run tasks, on threads when there are several (numpy sorts release the GIL)."""
    n = _default_workers(len(tasks)) if workers is None else max(1, workers)
    if n == 1 or len(tasks) < 2:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlwatch-drift") as pool:
        return list(pool.map(lambda t: t(), tasks))


def _run_columns(
    names: Sequence[str], kinds: Mapping[str, str], task: Callable[[str], Any], workers: int | None
) -> list[Any]:
    """``[task(name) for name in names]``, categorical columns together on one thread.

    Counting categories is Python-level hashing that holds the GIL, sorting numbers is
    not: two threads counting categories would only take turns, so all categorical
    columns form one job (submitted first, as the longest) while numeric columns spread
    over the other workers.
    """
    categorical = [n for n in names if kinds[n] == CATEGORICAL]
    numeric = [n for n in names if kinds[n] != CATEGORICAL]
    jobs: list[Callable[[], list[tuple[str, Any]]]] = []
    if categorical:
        jobs.append(lambda: [(n, task(n)) for n in categorical])
    jobs += [partial(lambda n: [(n, task(n))], n) for n in numeric]
    done = dict(pair for batch in _run(jobs, workers) for pair in batch)
    return [done[n] for n in names]
