"""Per-point string aggregation without per-point Python equals pandas' groupby join."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gis.overlay import join_per_point


def test_join_per_point_equals_groupby_join():
    rng = np.random.default_rng(3)
    labels = np.array(["four_mountains:禁建区", "basic_farmland", "water_source:一级", "ecological_red_line", "x"])
    point = rng.integers(0, 5000, 20_000)
    values = labels[rng.integers(0, len(labels), 20_000)]
    ours = join_per_point(point, values, 6000)
    ref = (pd.Series(values).groupby(point, sort=True).agg(lambda s: ";".join(dict.fromkeys(s)))
           .reindex(range(6000)).fillna(""))
    assert ours.tolist() == ref.tolist()
    assert (ours[5000:] == "").all()
    assert join_per_point([], [], 3).tolist() == ["", "", ""]
    assert join_per_point([2, 0, 2, 2], ["b", "a", "a", "b"], 3, sep="|").tolist() == ["a", "", "b|a"]
