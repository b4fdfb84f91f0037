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


def _timed(times: dict, step: str, t: int, fn, *args):
    w = time.process_time()
    out = fn(*args)
    times.setdefault(step, {}).setdefault(t, 0.0)
    times[step][t] += time.process_time() - w
    return out


def steps(d, tiles: tuple[int, int]) -> None:
    """CPU time of each step per tile (the tiles' tasks of :func:`gis.cluster_tiles.cluster_kind`, every kind),
    the incidents each tile reads for its cores (own + halo) and what passes between the steps."""
    from gis import cluster_tiles as ct
    from gis import hotspots

    cfg = hotspots.cluster_params()
    p = hotspots.scan_params(cfg)
    inc = d.incidents.reset_index(drop=True)
    xy = np.column_stack([inc.geometry.x, inc.geometry.y])
    tile, boxes = ct.grid_tiles(xy, *tiles)
    kinds, days = inc["kind"].astype(str).to_numpy(), hotspots.incident_days(inc)
    n = len(boxes)
    times: dict = {}
    read = np.zeros(n)
    n_cores = n_groups = n_peaks = n_border = n_nodes = 0
    for k in pd.unique(kinds):
        sel = np.flatnonzero(kinds == k)
        if len(sel) <= p.min_cluster_size:
            continue
        src = ct.ArrayTiles(xy[sel], days[sel], tile[sel], boxes)
        owns = [src.own(t).gid for t in range(n)]
        read += [len(src.near(boxes[t], ct.core_halo(p)).gid) for t in range(n)]
        pieces = [_timed(times, "1 cores", t, ct.tile_cores, src, t, p) for t in range(n)]
        if not sum(len(c.gid) for c in pieces):
            continue
        links = []
        for t in range(n):
            halo = ct.concat_cores([c.take(ct.in_box(c.xy, boxes[t], ct.link_halo(p))) for j, c in enumerate(pieces) if j != t])
            rank = ct.rank_in([c.gid for c in pieces], np.concatenate([pieces[t].gid, halo.gid]))
            links.append(_timed(times, "2 links", t, ct.tile_links, t, pieces[t], halo, rank, np.delete(boxes, t, axis=0), p))
        ex = [ct.exchange(x) for x in links]
        joined = _timed(times, "join", 0, ct.join_links, ex)
        labelled = [_timed(times, "2 links", t, ct.label_cores, x, joined) for t, x in enumerate(links)]
        found = [_timed(times, "3 peaks", t, ct.tile_peaks, src, c, p) for t, c in enumerate(labelled)]
        peaks = ct.concat_cores(found)
        for t in range(n):
            owned, box = ct.owned_groups(joined, owns[t])
            near = ct.concat_cores([c.take(ct.in_box(c.xy, box, 2 * p.attach_m)) for c in labelled]) if len(owned) else labelled[t]
            _timed(times, "4 fits", t, ct.tile_fits, src, owned, near, peaks, p)
        n_cores += sum(len(c.gid) for c in pieces)
        n_groups, n_peaks = n_groups + len(joined["groups"]), n_peaks + len(peaks.gid)
        n_border += sum(len(x["ends"]) + len(x["seen"]) for x in ex)
        n_nodes += sum(len(x["nodes"]) for x in ex)
    own = np.bincount(tile, minlength=n)
    print(f"cores {n_cores} ({n_cores / len(inc):.0%} of the incidents), groups {n_groups}, peaks {n_peaks}; "
          f"the join's input: {n_border} border-core rows, {n_nodes} local groups")
    print("incidents read for the cores / own, per tile:", " ".join(f"{r / max(o, 1):.2f}" for r, o in zip(read, own)))
    crit = 0.0
    for step, per in times.items():
        v = np.array([per.get(t, 0.0) for t in range(n if step != "join" else 1)])
        crit += v.max()
        print(f"step {step}: CPU sum {v.sum():.2f} s, largest tile {v.max():.2f} s")
    print(f"critical path (largest tile of each step + join): {crit:.2f} s")


def municipal(muni: str, rounds: int, out: str, method: str) -> None:
    """The municipal engines with ``cluster_method: scan`` (steps=[]: the cross-border analyses only), alternating:
    the single process (whole run over the merged incidents) and Dask on an in-process cluster of two
    single-threaded workers (the partitioned tasks; CPU of this process = all workers'). Compares the partitioned
    incidents layers (cluster, cluster_significant)."""
    from pathlib import Path

    from distributed import Client, LocalCluster

    from gis import parallel

    def layer(folder: Path) -> pd.DataFrame:
        files = sorted((folder / "municipal_analysis" / "incidents").glob("*/part.parquet"))
        cols = ["incident_id", "cluster", "cluster_significant"] if method == "scan" else ["incident_id", "cluster"]
        f = pd.concat([pd.read_parquet(x, columns=cols) for x in files])
        return f.sort_values("incident_id").reset_index(drop=True)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        for r in range(rounds):
            res = {}
            for eng in ("single", "dask") if r % 2 == 0 else ("dask", "single"):
                w, c = time.perf_counter(), time.process_time()
                s = parallel.run_municipality(muni, Path(out) / eng, engine=eng, steps=[], client=client if eng == "dask" else None,
                                              params={"cluster_method": method})
                res[eng] = s["municipal"]
                print(f"round {r} {eng}: wall {time.perf_counter() - w:.1f} s, CPU {time.process_time() - c:.1f} s, "
                      f"{s['municipal']['incidents']} incidents, {s['municipal']['clusters']} clusters, "
                      f"{s['municipal']['cross_border_clusters']} across district borders; timings {s['timings_s']}")
            same = layer(Path(out) / "single").equals(layer(Path(out) / "dask")) and res["single"] == res["dask"]
            print(f"round {r}: same = {same}")


def main() -> None:
    from gis import hotspots
    from gis.district import load_district

    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", help="a district folder (whole vs tiled find_clusters)")
    ap.add_argument("--municipality", help="a municipal folder (single vs Dask engine, cluster_method scan)")
    ap.add_argument("--out", default="/tmp/bench_cluster_tiles")
    ap.add_argument("--method", default="scan", help="the municipal cluster_method (scan or dbscan)")
    ap.add_argument("--tiles", default="2x2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", action="store_true", help="also time each step per tile")
    a = ap.parse_args()
    if a.municipality:
        municipal(a.municipality, a.rounds, a.out, a.method)
        return
    tiles = tuple(int(v) for v in a.tiles.split("x"))
    d = load_district(a.sample)
    print(f"{len(d.incidents)} incidents, tiles {tiles}")
    if a.steps:
        steps(d, tiles)
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
