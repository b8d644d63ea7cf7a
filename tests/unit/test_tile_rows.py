"""The tile image rows' sequence codes (wayview.store.columns.unique_codes) equal np.unique's."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from wayview.store.columns import unique_codes


@given(st.lists(st.integers(0, 2**40), max_size=60), st.integers(0, 2**40))
def test_tile_rows_codes_match_np_unique(values, offset):
    # Both ways: a narrow range (lookup table) and a wide one (np.unique).
    for arr in (np.array(values, dtype=np.int64) % 5000 + offset, np.array(values, np.int64)):
        uniq, inverse = unique_codes(arr)
        expected, expected_inverse = np.unique(arr, return_inverse=True)
        assert uniq.tolist() == expected.tolist()
        assert inverse.tolist() == expected_inverse.reshape(-1).tolist()
