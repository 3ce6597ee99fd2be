"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(func: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``func``, in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def compile_checkout(repo: object) -> None:
    """Byte-compile the checkout's package, as ``pip install`` does for an installed copy.

    Without it, a machine with PYTHONDONTWRITEBYTECODE recompiles every module on every
    CLI call, and the benchmark would time the compiler, not the tool.
    """
    import compileall
    import os

    compileall.compile_dir(os.path.join(os.fspath(repo), "esp_secure_build"), quiet=1)  # type: ignore[arg-type]
