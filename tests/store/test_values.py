"""The one conversion rule of stored and JSON values (``store/values.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsa110_contimg.store.values import clean, column_values


@pytest.mark.parametrize("column", [
    np.array([1.5, np.nan, -np.inf, np.inf, -0.0]),
    np.array([3, -2], np.int64),
    np.array([True, False]),
    np.array(["a", None, ""], dtype=object),
    np.array([np.float64(np.nan), "a", b"b", np.int64(4)], dtype=object),
    np.array(["x", "yz"]),
    np.ma.masked_array([1.0, 2.0], [True, False]),
    [1.0, float("nan"), None],
    np.empty(0),
])
def test_a_column_converts_as_clean_converts_each_value(column):
    """A light-curve column as JSON: the values and their Python types are those of
    ``clean`` applied value by value (non-finite and masked values None)."""
    values = column.tolist() if type(column) is np.ndarray else column
    expected = clean(values)
    got = column_values(column)
    assert json.dumps(got) == json.dumps(expected)
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_a_float_column_has_none_where_not_finite():
    assert column_values(np.array([0.25, np.nan, np.inf])) == [0.25, None, None]
