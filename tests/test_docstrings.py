"""Every public docstring passes numpydoc's validation (skglm's test does the same).

The public names are those of ``sklearn_adamntk.__all__`` and the public
methods they define themselves (not those inherited from scikit-learn).  A
few of numpydoc's checks are left out, as scikit-learn leaves them out: See
Also and Examples sections on every method, extended summaries, and the
first line of a Returns section (``self : object`` is the convention).
"""

import inspect

import pytest

import sklearn_adamntk

numpydoc_validate = pytest.importorskip("numpydoc.validate")

IGNORED = {"SA01", "EX01", "ES01", "RT02", "GL02"}


def _public_objects():
    for name in sklearn_adamntk.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(sklearn_adamntk, name)
        yield f"sklearn_adamntk.{name}"
        if not inspect.isclass(obj):
            continue
        for attribute in dir(obj):
            member = getattr(obj, attribute, None)
            if attribute.startswith("_") or not callable(member):
                continue
            module = getattr(inspect.unwrap(member), "__module__", "") or ""
            if module.startswith("sklearn_adamntk"):
                yield f"sklearn_adamntk.{name}.{attribute}"


@pytest.mark.parametrize("name", sorted(set(_public_objects())))
def test_docstring(name):
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"]
              if code not in IGNORED]
    assert not errors, "\n".join(errors)
