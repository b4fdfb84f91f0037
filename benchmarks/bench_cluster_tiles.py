"""The ``scan`` detector per partition against the whole run (issue 18, point 2: municipal scale).

Run ``.venv/bin/python benchmarks/bench_cluster_tiles.py --sample WORK/city --tiles 2x2 --rounds 3``.
Per round, alternately: :func:`gis.hotspots.find_clusters` on all incidents at once, and with
``tiles=(nx, ny)`` (:mod:`gis.cluster_tiles`: the tiles' tasks run one after the other in this
process). Prints wall and CPU time (this process, all threads) of each run, whether the members and the
cluster table (ids, sizes, significance, outlines) are equal, and how many clusters straddle a tile
border. Writes nothing (the paragraph in RESULTS.md is written by hand from its output).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def _same(a, b) -> bool:
    ma = a.members.sort_values("incident_id").reset_index(drop=True)
    mb = b.members.sort_values("incident_id").reset_index(drop=True)
    cols = [c for c in a.clusters.columns if c != "geometry"]
    return bool(ma.equals(mb) and pd.DataFrame(a.clusters[cols]).equals(pd.DataFrame(b.clusters[cols]))
                and a.clusters.geometry.equals(b.clusters.geometry))


def _straddling(res, inc, tiles: tuple[int, int]) -> int:
    from gis.cluster_tiles import grid_tiles

    tile, _ = grid_tiles(np.column_stack([inc.geometry.x, inc.geometry.y]), *tiles)
    t = pd.Series(tile, index=inc["incident_id"].to_numpy())
    m = res.members.assign(tile=res.members["incident_id"].map(t).to_numpy())
    return int((m.groupby("cluster_id")["tile"].nunique() > 1).sum())


def main() -> None:
    from gis import hotspots
    from gis.district import load_district

    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", required=True)
    ap.add_argument("--tiles", default="2x2")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tiles = tuple(int(v) for v in a.tiles.split("x"))
    d = load_district(a.sample)
    print(f"{len(d.incidents)} incidents, tiles {tiles}")
    for r in range(a.rounds):
        out = {}
        for name, kw in (("whole", {}), ("tiled", {"tiles": tiles})) if r % 2 == 0 else (("tiled", {"tiles": tiles}), ("whole", {})):
            w, c = time.perf_counter(), time.process_time()
            out[name] = hotspots.find_clusters(d.incidents, zones=d.zones, **kw)
            print(f"round {r} {name}: wall {time.perf_counter() - w:.1f} s, CPU {time.process_time() - c:.1f} s, "
                  f"{len(out[name].clusters)} clusters, {int(out[name].clusters['significant'].sum())} significant")
        print(f"round {r}: same = {_same(out['whole'], out['tiled'])}, "
              f"straddling a tile border = {_straddling(out['whole'], d.incidents, tiles)}")


if __name__ == "__main__":
    main()
