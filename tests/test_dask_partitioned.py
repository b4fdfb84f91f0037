"""The no-gather pieces of the Dask engine (gis.partitioned): the reductions equal the
merged computations they replace, and the hexagon grid is divided without gaps or overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from gis import gistar
from gis.partitioned import Plan, _member, _subgrid, combine, fdr_cutoff_partial, hex_owner, near, reach, summary_of


@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.01])
def test_fdr_cutoff_from_the_small_p_values_of_each_partition_equals_the_merged_cutoff(alpha):
    rng = np.random.default_rng(7)
    p = np.concatenate([rng.uniform(0, 1, 5000), rng.uniform(0, 1e-4, 60)])  # a few real signals
    pieces = np.array_split(rng.permutation(p), 7)
    small = combine(*[{"p": np.sort(x[x < 0.1])} for x in pieces])["p"]  # what the partitions send (p below max α)
    assert fdr_cutoff_partial(small, len(p), alpha) == gistar.fdr_cutoff(p, alpha)
    # and when nothing passes: the Bonferroni bound α/n
    assert fdr_cutoff_partial(np.array([0.5]), 1000, alpha) == gistar.fdr_cutoff(np.full(1000, 0.5), alpha)


def _plan(bounds: np.ndarray, spacing: float) -> Plan:
    return Plan(codes=tuple(str(i) for i in range(len(bounds))), bounds=bounds, extents=bounds, offsets=np.zeros(len(bounds) + 1, np.int64),
                kinds=(), crs="EPSG:4538", out="", params={"hex_spacing_m": spacing}, reach=reach(bounds, spacing, 50))


def test_every_hexagon_of_the_municipal_grid_has_one_owner_found_by_its_partition():
    # four district boxes with a gap and an overlap, as real districts' bounding boxes have
    bounds = np.array([[0, 0, 10_000, 8_000], [9_000, 0, 21_000, 7_000], [0, 9_500, 12_000, 20_000], [14_000, 8_000, 20_000, 15_000]], float)
    s = 500.0
    plan = _plan(bounds, s)
    u = plan.grid_bounds
    grid = gistar.HexGrid.covering(u, s, origin=(u[0], u[1]))
    assert _member(grid.q, grid.r, plan).all()  # the membership rule is covering()'s
    owner = hex_owner(grid.centres, bounds, range(len(bounds)))
    found = []
    for i, b in enumerate(bounds):  # what partition i computes on its own (hex_part)
        cand = _subgrid(plan, (b[0] - plan.reach, b[1] - plan.reach, b[2] + plan.reach, b[3] + plan.reach))
        mine = hex_owner(cand.centres, bounds, [i, *near(bounds, b, 3 * plan.reach + 2 * s, i)]) == i
        found.append(cand._key(cand.q[mine], cand.r[mine]))
    keys = np.concatenate(found)
    assert len(keys) == len(np.unique(keys)) == len(grid)  # disjoint, and every cell found
    for i in range(len(bounds)):
        assert set(found[i]) == set(grid._key(grid.q[owner == i], grid.r[owner == i]))


def test_population_sums_do_not_depend_on_the_reduction_order():
    rng = np.random.default_rng(3)
    parts = [{"sites": 1, "sites_in_four_mountains": {"缙云山": 1}, "population_cells": 10, "population": [float(v)],
              "population_covered": [float(v) / 3], "hot_cells_99": 0, "incidents": 2} for v in rng.uniform(1e5, 1e7, 38)]
    a = summary_of(combine(*parts), 100, 0, 0, {})
    tree = combine(*[combine(*parts[k:k + 4]) for k in range(0, len(parts), 4)][::-1])
    b = summary_of(tree, 100, 0, 0, {})
    assert a == b
    assert a["sites"] == 38 and a["sites_in_four_mountains"] == {"缙云山": 38}
