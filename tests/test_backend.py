import numba
import numpy as np
import pytest

from sklearn_adamntk._backend import (
    block_rows,
    check_allocation,
    effective_n_threads,
    numba_threads,
)


def test_effective_n_threads_follows_joblib_conventions():
    available = numba.config.NUMBA_NUM_THREADS
    assert effective_n_threads(None) == available
    assert effective_n_threads(-1) == available
    assert effective_n_threads(1) == 1
    assert effective_n_threads(10**6) == available
    assert effective_n_threads(-(available + 5)) == 1
    with pytest.raises(ValueError, match="n_jobs == 0"):
        effective_n_threads(0)


def test_numba_threads_restores_previous_count_even_on_error():
    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with numba_threads(1):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before


def test_check_allocation_fails_fast_with_advice():
    check_allocation(1024, "a tiny buffer", "nothing to change")
    with pytest.raises(MemoryError, match=r"the Gram matrix needs .* GiB.*use float32"):
        check_allocation(2**62, "the Gram matrix", "use float32")


def test_block_rows_bounds_memory_and_is_at_least_one():
    # 1 MiB of float64 rows of 1024 columns is 128 rows.
    assert block_rows(1024, np.float64, 1) == 128
    assert block_rows(1024, np.float32, 1) == 256
    assert block_rows(1024, np.float64, 1, n_temporaries=2) == 64
    assert block_rows(10**9, np.float64, 1) == 1
