"""What every benchmark section shares: timing, the machine, tables, memory.

Timing follows DESIGN 7: a time means something only as a ratio to another
time measured in the same run, so :func:`median_times` interleaves the
repeats of every callable it compares (load on a shared machine then hits
them alike) and drops a warm-up call of each (compilation, first-touch page
faults, caches).
"""

import os
import platform
import statistics
import time

import numba
import numpy as np
import scipy
import sklearn


def median_times(functions, repeats=3, pause=0.0, warmup=True):
    """Median wall time of each callable, repeats interleaved.

    Parameters
    ----------
    functions : sequence of callables
        Called with no argument.
    repeats : int
        Timed calls of each callable.
    pause : float
        Seconds to sleep before each timed call: BLAS and OpenMP worker
        threads spin for a while after a call, and would slow the next one.
    warmup : bool
        Make one untimed call of each first.

    Returns
    -------
    list of float
        Seconds, in the order of ``functions``.
    """
    if warmup:
        for function in functions:
            function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def cpu_model():
    """The CPU's model name, as the operating system reports it."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return "unknown BLAS"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (f"{pool.get('internal_api')} {pool.get('version')}, "
                    f"{pool.get('num_threads')} threads")
    return "unknown BLAS"


def machine_summary():
    """One paragraph naming the machine and the libraries that set the speed."""
    numba.get_num_threads()  # starts the threading layer, so it can be named
    total = _meminfo("MemTotal")
    memory = "" if total is None else f", {total / 2**30:.0f} GiB memory"
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}){memory}; Python "
        f"{platform.python_version()}, numpy {np.__version__} ({_blas()}), "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
        f"numba {numba.__version__} ({numba.threading_layer()} layer, "
        f"{numba.get_num_threads()} threads)"
    )


def markdown_table(headers, rows):
    """A Markdown table; ``None`` cells print as an en dash."""
    def cell(value):
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value, digits=2):
    """A number with ``digits`` decimals, ``None`` kept for an empty cell."""
    return None if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------
# Memory: resident set size from /proc (Linux).  tracemalloc cannot be used:
# it does not see what Numba's compiled code or BLAS allocate.
# ----------------------------------------------------------------------
def _meminfo(key, path="/proc/meminfo"):
    try:
        with open(path) as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss():
    """Resident memory of this process now, in bytes (None if unknown)."""
    return _meminfo("VmRSS", "/proc/self/status")


def peak_rss():
    """Highest resident memory of this process since the last reset, in bytes."""
    return _meminfo("VmHWM", "/proc/self/status")


def reset_peak_rss():
    """Start a new peak at the current resident memory; False if unsupported.

    Writing 5 to ``/proc/self/clear_refs`` resets the high-water mark
    (Linux 4.0 and later), so that the peak of one phase (fit, then predict)
    can be measured apart from the phases before it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return peak_rss() is not None
