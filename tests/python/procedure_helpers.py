"""Helpers shared by the procedure tests (datasets, preprocess, evaluation)."""

import pytest

import opendl as ha


def py(h):
    return ha.as_python_dict(h)


def code_of(fn, *args, **kwargs):
    """The HALCON error code fn(*args, **kwargs) raises (fails the test if it raises none)."""
    with pytest.raises(ha.HOperatorError) as e:
        fn(*args, **kwargs)
    return e.value.error_code
