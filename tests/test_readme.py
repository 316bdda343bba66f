"""README's Python examples run as written, so the usage section cannot rot."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_readme_examples_run():
    namespace = {}
    # The blocks build on each other (the second reuses X and y), as a reader would.
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["scores"].mean() > 0.3
    assert namespace["search"][-1].n_iter_ > 0
    assert namespace["K"].shape == (len(namespace["X"]),) * 2
