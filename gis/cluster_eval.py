"""Evaluation of cluster detectors against planted truth (the sample's ``truth/`` files).

* :func:`detectable_planted` — the Poisson oracle: is a planted cluster detectable
  in principle against its local background?
* :func:`planted_ceiling` — what the matching rule allows in a crowded sample:
  recall when the reports are assigned to the planted sites with their *true*
  centres, spreads and counts (optionally with too-close sites reported as one place);
* :func:`evaluate` — recall, recall of the detectable clusters and strict
  precision of a :class:`gis.hotspots.ClusterResult`, pooled and by group;
* :func:`evaluate_places` — the same counted per *place* (:func:`planted_places`:
  planted sites of one kind too close to tell apart, linked into one place to visit).

Used by ``benchmarks/bench_clusters.py`` and ``tests/test_hotspots.py``.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gis import cluster_mixture as cm
from gis.cluster_mixture import place_groups
from gis.cluster_scan import bh_qvalues, poisson_sf


def detectable_planted(
    incidents: gpd.GeoDataFrame,
    clusters_truth: pd.DataFrame,
    incidents_truth: pd.DataFrame,
    *,
    sigmas: float,
    annulus_m: tuple[float, float],
    fdr: float,
    same_kind: bool,
) -> pd.DataFrame:
    """Planted clusters detectable in principle (one-sided Poisson test, BH-FDR).

    For planted cluster *c* (centre :math:`s_c`, scale :math:`\\sigma_c`):
    :math:`O_c` = its own members within :math:`k\\sigma_c` of :math:`s_c`;
    :math:`E_c = \\hat\\lambda_c\\,\\pi (k\\sigma_c)^2`, :math:`\\hat\\lambda_c` the
    density of non-cluster incidents (of the cluster's kind when ``same_kind``)
    in the annulus ``annulus_m`` around :math:`s_c`;
    :math:`p_c = P(N \\ge O_c \\mid N \\sim \\text{Poisson}(E_c))`; detectable when
    the Benjamini–Hochberg q-value is ≤ ``fdr``.

    Returns
    -------
    DataFrame
        ``truth_id``, ``kind``, ``sigma_m``, ``n_incidents``, ``observed``,
        ``expected``, ``p_value``, ``q_value``, ``detectable``.
    """
    crs = incidents.crs
    inc = pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "kind": incidents["kind"].astype(str).to_numpy(),
            "x": incidents.geometry.x.to_numpy(),
            "y": incidents.geometry.y.to_numpy(),
        }
    )
    cid = incidents_truth.set_index("incident_id")["cluster_id"]
    inc["truth_id"] = inc["incident_id"].map(cid).astype(object)
    inc.loc[inc["truth_id"].isna() | inc["truth_id"].astype(str).str.strip().eq(""), "truth_id"] = None
    t = clusters_truth.reset_index(drop=True)
    centres = gpd.GeoSeries(gpd.points_from_xy(t["lon"], t["lat"]), crs=4326).to_crs(crs)
    cx, cy = centres.x.to_numpy(), centres.y.to_numpy()
    rho = sigmas * t["sigma_m"].to_numpy(dtype=float)
    observed = np.zeros(len(t))
    expected = np.zeros(len(t))
    bg = inc[inc["truth_id"].isna()]
    inner, outer = annulus_m
    ring = np.pi * (outer**2 - inner**2)
    for kind, sel in t.groupby(t["kind"] if same_kind else pd.Series("all", index=t.index)).groups.items():
        b = bg[bg["kind"] == kind] if same_kind else bg
        tree = cKDTree(b[["x", "y"]].to_numpy()) if len(b) else None
        idx = np.asarray(sel)
        pts = np.column_stack([cx[idx], cy[idx]])
        if tree is not None:
            n_ring = np.asarray(tree.query_ball_point(pts, outer, return_length=True)) - np.asarray(
                tree.query_ball_point(pts, inner, return_length=True)
            )
            expected[idx] = n_ring / ring * np.pi * rho[idx] ** 2
    mem = inc[inc["truth_id"].notna()]
    pos = {tid: i for i, tid in enumerate(t["cluster_id"].astype(str))}
    ci = mem["truth_id"].astype(str).map(pos)
    ok = ci.notna().to_numpy()
    ci = ci[ok].astype(int).to_numpy()
    d = np.hypot(mem["x"].to_numpy()[ok] - cx[ci], mem["y"].to_numpy()[ok] - cy[ci])
    np.add.at(observed, ci[d <= rho[ci]], 1.0)
    p = poisson_sf(observed - 1, np.maximum(expected, 1e-9))
    q = bh_qvalues(p)
    return pd.DataFrame(
        {
            "truth_id": t["cluster_id"].astype(str),
            "kind": t["kind"].astype(str),
            "sigma_m": t["sigma_m"].to_numpy(dtype=float),
            "n_incidents": t["n_incidents"].to_numpy(dtype=int),
            "observed": observed.astype(int),
            "expected": expected,
            "p_value": p,
            "q_value": q,
            "detectable": q <= fdr,
        }
    )


def evaluate(result: Any, clusters_truth: pd.DataFrame, incidents_truth: pd.DataFrame, oracle: pd.DataFrame) -> dict:
    """Recall, detectable recall and strict precision of the *reported* clusters.

    Reported clusters are those flagged ``significant`` (all clusters when the
    result carries no significance). A planted cluster is recovered per
    :func:`gis.hotspots.match_planted`; strict precision is the share of reported
    clusters that recover a planted cluster.

    Returns
    -------
    dict
        ``found``, ``reported``, ``recall``, ``recall_detectable``, ``precision``,
        ``precision_all`` (of every found cluster, flagged or not),
        ``detectable`` and ``table`` (per planted cluster: match + oracle).
    """
    from gis.hotspots import match_planted

    c = result.clusters
    hits_all = 0
    if len(c):
        m_all = match_planted(result, clusters_truth, incidents_truth)
        hits_all = m_all.loc[m_all["recovered"], "found_id"].nunique()
    result = _reported(result)
    n_rep = len(result.clusters)
    if n_rep:
        m = match_planted(result, clusters_truth, incidents_truth)
    else:
        m = pd.DataFrame({"truth_id": clusters_truth["cluster_id"].astype(str), "found_id": None, "recovered": False})
    table = m.merge(oracle.drop(columns=[c for c in oracle.columns if c in m.columns and c != "truth_id"]), on="truth_id", how="left")
    det = table["detectable"].fillna(False).astype(bool)
    hits = table.loc[table["recovered"], "found_id"].nunique()
    return {
        "found": len(c),
        "reported": n_rep,
        "recall": float(table["recovered"].mean()),
        "recall_detectable": float(table.loc[det, "recovered"].mean()) if det.any() else float("nan"),
        "precision": hits / n_rep if n_rep else float("nan"),
        "precision_all": hits_all / len(c) if len(c) else float("nan"),
        "detectable": int(det.sum()),
        "table": table,
    }


def recall_by(table: pd.DataFrame, column: str, bins: list[float] | None = None) -> pd.DataFrame:
    """Recall and detectable recall of planted clusters grouped by ``column`` (binned when ``bins``)."""
    key = pd.cut(table[column], bins) if bins is not None else table[column]
    det = table["detectable"].fillna(False).astype(bool)
    g = table.assign(_k=key, _det=det, _rd=table["recovered"].where(det))
    out = g.groupby("_k", observed=True).agg(
        planted=("truth_id", "size"), detectable=("_det", "sum"), recall=("recovered", "mean"), recall_detectable=("_rd", "mean")
    )
    return out.rename_axis(column)


def miss_causes(table: pd.DataFrame) -> dict[str, int]:
    """Why detectable planted clusters were missed (a table of :func:`evaluate`).

    *merged*: the cluster holding most of the site holds more than half of it but its
    centre is outside the site's radius (it spans neighbouring sites); *split*: some
    cluster holds part of it, none more than half; *not found*: no reported cluster
    holds any of its reports.
    """
    det = table["detectable"].fillna(False).astype(bool)
    miss = table[det & ~table["recovered"].astype(bool)]
    majority = miss["shared"] * 2 > miss["n_incidents"]
    return {
        "merged": int(majority.sum()),
        "split": int((~majority & (miss["shared"] > 0)).sum()),
        "not found": int((miss["shared"] == 0).sum()),
    }


def planted_ceiling(
    incidents: gpd.GeoDataFrame,
    clusters_truth: pd.DataFrame,
    incidents_truth: pd.DataFrame,
    *,
    reach_sigmas: float,
    place_sigmas: float,
) -> pd.DataFrame:
    """Planted sites recovered when every report joins its most likely *true* site (an upper reference).

    Per kind, the planted sites with their true centres :math:`\\mu_k`, spreads
    :math:`\\sigma_k` and counts :math:`n_k` are the sites of
    :func:`gis.cluster_mixture.assign`: each report of the kind joins the site of
    largest :math:`n_k\\phi(s;\\mu_k,\\sigma_k)` within ``reach_sigmas`` σ (the Bayes
    rule of the mixture a detector fits). With ``place_sigmas`` > 0 the sites closer
    than that many rms spreads are first merged into places (:func:`place_groups`)
    and a report joins its site's place. The clusters so formed (centre: median of
    the members, as :func:`gis.hotspots.find_clusters`) are matched by
    :func:`gis.hotspots.match_planted`. Where sites of one kind overlap, even these
    true-parameter clusters miss sites: the rate is what a detector fitting the right
    model could reach without knowing more than the reports.

    Returns
    -------
    DataFrame
        :func:`gis.hotspots.match_planted`'s table (``recovered`` per planted site).
    """
    from gis.hotspots import match_planted

    t = clusters_truth.reset_index(drop=True)
    place = ceiling_places(t, incidents.crs, place_sigmas=place_sigmas)
    res = ceiling_clusters(incidents, t, reach_sigmas=reach_sigmas, place=place, dated=False)
    return match_planted(res, t, incidents_truth)


def ceiling_places(clusters_truth: pd.DataFrame, crs: Any, *, place_sigmas: float) -> np.ndarray:
    """Place of each planted site (a row of ``clusters_truth``) for :func:`planted_ceiling`.

    Per kind, :func:`place_groups` on the true centres, spreads and counts (``place_sigmas``
    rms spreads; 0: every site its own place). A place is named by the row index of one of
    its sites. Uses the sites' parameters only, never their reports' labels.
    """
    t = clusters_truth.reset_index(drop=True)
    place = np.arange(len(t))
    for _, idx in t.groupby(t["kind"].astype(str)).groups.items():
        idx = np.asarray(idx)
        centres = gpd.GeoSeries(gpd.points_from_xy(t["lon"][idx], t["lat"][idx]), crs=4326).to_crs(crs)
        sites = cm.Sites(np.column_stack([centres.x.to_numpy(), centres.y.to_numpy()]),
                         t["sigma_m"].to_numpy(float)[idx], t["n_incidents"].to_numpy(float)[idx])  # fmt: skip
        place[idx] = idx[place_groups(sites, place_sigmas)]
    return place


def ceiling_clusters(
    incidents: gpd.GeoDataFrame, clusters_truth: pd.DataFrame, *, reach_sigmas: float, place: np.ndarray,
    dated: bool,
) -> Any:  # fmt: skip
    """Clusters formed by assigning every report to its most likely *planted* site, then to the site's place.

    Per kind, each report joins the site of largest :math:`n_k\\phi(s;\\mu_k,\\sigma_k)`
    within ``reach_sigmas`` σ (:func:`gis.cluster_mixture.assign`, true parameters) and
    the cluster ``place[k]`` of that site (``place``: one label per row of
    ``clusters_truth``; ``np.arange`` for one cluster per site). Centre: median of the
    members, as :func:`gis.hotspots.find_clusters`. With ``dated`` the sites also have
    their true activity periods (``first_date`` … ``last_date``, as the time term of the
    space-time mixture: mean the period's middle, :math:`\\tau` = its length / √12) and the
    reports their dates (:func:`gis.hotspots.incident_days`). Returns a
    :class:`gis.hotspots.ClusterResult`.
    """
    from gis.hotspots import ClusterResult, incident_days

    t = clusters_truth.reset_index(drop=True)
    centres = gpd.GeoSeries(gpd.points_from_xy(t["lon"], t["lat"]), crs=4326).to_crs(incidents.crs)
    mu = np.column_stack([centres.x.to_numpy(), centres.y.to_numpy()])
    xy = np.column_stack([incidents.geometry.x.to_numpy(), incidents.geometry.y.to_numpy()])
    kinds = incidents["kind"].astype(str).to_numpy()
    label = np.full(len(incidents), -1, dtype=np.int64)
    first, last = (incident_days(pd.DataFrame({"date": t[c]})) for c in ("first_date", "last_date")) if dated else (None, None)
    x = np.column_stack([xy, incident_days(incidents)]) if dated else xy
    for kind, idx in t.groupby(t["kind"].astype(str)).groups.items():
        idx = np.asarray(idx)
        sites = cm.Sites(mu[idx], t["sigma_m"].to_numpy(float)[idx], t["n_incidents"].to_numpy(float)[idx])
        if first is not None and last is not None:
            sites = cm.Sites(sites.mu, sites.sigma, sites.n, (first[idx] + last[idx]) / 2,
                             np.maximum(last[idx] - first[idx], 1.0) / np.sqrt(12))  # fmt: skip
        sel = np.flatnonzero(kinds == kind)
        site = cm.assign(x[sel], sites, reach_sigmas)
        label[sel[site >= 0]] = np.asarray(place)[idx[site[site >= 0]]]
    ok = label >= 0
    mem = pd.DataFrame({"incident_id": incidents["incident_id"].to_numpy()[ok], "cluster_id": label[ok]})
    cen = pd.DataFrame({"cluster_id": label[ok], "x": xy[ok, 0], "y": xy[ok, 1]}).groupby("cluster_id").median()
    clusters = gpd.GeoDataFrame(
        {"cluster_id": cen.index.to_numpy(), "centroid_x": cen["x"].to_numpy(), "centroid_y": cen["y"].to_numpy(),
         "four_mountains_level": None},
        geometry=gpd.points_from_xy(cen["x"], cen["y"]), crs=incidents.crs,
    )  # fmt: skip
    return ClusterResult(clusters=clusters, members=mem)


def planted_places(clusters_truth: pd.DataFrame, crs: Any, *, link_sigmas: float) -> np.ndarray:
    """Place of each planted site: same-kind sites linked when too close to tell apart, connected components.

    Sites *a*, *b* of one kind are linked when

    .. math:: \\lVert s_a-s_b\\rVert < c\\,\\max(\\sigma_a,\\sigma_b)

    (*c* = ``link_sigmas``, σ the planted ``sigma_m``; two equal Gaussian sites closer
    than 2σ make a single peak); a place is a connected component of the links (a chain
    of linked sites is one place, unlike the pairwise merging of :func:`place_groups`).
    Returns the place index (0 … P−1) of every row of ``clusters_truth``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = clusters_truth.reset_index(drop=True)
    centres = gpd.GeoSeries(gpd.points_from_xy(t["lon"], t["lat"]), crs=4326).to_crs(crs)
    xy = np.column_stack([centres.x.to_numpy(), centres.y.to_numpy()])
    sigma = t["sigma_m"].to_numpy(dtype=float)
    kind = t["kind"].astype(str).to_numpy()
    if len(t) < 2 or link_sigmas <= 0:
        return np.arange(len(t))
    pairs = cKDTree(xy).query_pairs(link_sigmas * float(sigma.max()), output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    near = np.hypot(*(xy[a] - xy[b]).T) < link_sigmas * np.maximum(sigma[a], sigma[b])
    keep = near & (kind[a] == kind[b])
    graph = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(len(t), len(t)))
    return connected_components(graph, directed=False)[1]


def evaluate_places(
    result: Any, clusters_truth: pd.DataFrame, incidents_truth: pd.DataFrame, oracle: pd.DataFrame, *,
    link_sigmas: float,
) -> dict:  # fmt: skip
    """Recall and strict precision of the *reported* clusters counted per place (:func:`planted_places`).

    The rule of :func:`gis.hotspots.match_planted` applied to places: place *P* (sites
    :math:`S_P`, reports :math:`N_P=\\sum_{k\\in S_P} n_k`) is recovered by the reported
    cluster *f* holding most of the planted reports of its sites when

    .. math:: |f\\cap P|\\,2 > N_P \\quad\\text{and}\\quad
              \\min_{k\\in S_P}\\lVert c_f-s_k\\rVert \\le r_k

    (its centre :math:`c_f` lies within the planted radius ``radius_m`` of one of the
    place's sites). ``recall_place_or_sites`` also counts a place whose every site is
    recovered on its own (several clusters, one per site: the place is fully visited).
    A reported cluster is a true positive when it recovers a place or a planted site
    (:func:`gis.hotspots.match_planted`); strict precision = true positives / reported.
    A place is *detectable* when one of its sites is (``oracle``).

    Returns
    -------
    dict
        ``places``, ``places_detectable``, ``recall_place``, ``recall_place_detectable``,
        ``recall_place_or_sites`` (detectable places), ``precision_place`` and ``table``
        (per place: ``place``, ``n_sites``, ``n_incidents``, ``found_id``, ``shared``,
        ``recovered``, ``sites_recovered``, ``detectable``).
    """
    from gis.hotspots import match_planted

    rep = _reported(result)
    crs = rep.clusters.crs or 4326
    t = clusters_truth.reset_index(drop=True).assign(truth_id=lambda f: f["cluster_id"].astype(str))
    t["place"] = planted_places(t, crs, link_sigmas=link_sigmas)
    t["detectable"] = t["truth_id"].map(oracle.set_index("truth_id")["detectable"]).fillna(False).astype(bool)
    site_ok = pd.Series(False, index=t["truth_id"])
    if len(rep.clusters):
        ms = match_planted(rep, clusters_truth, incidents_truth).set_index("truth_id")
        site_ok = ms["recovered"].reindex(t["truth_id"]).fillna(False).astype(bool)
    t["site_recovered"] = site_ok.to_numpy()
    places = _place_majority(rep, t, incidents_truth, crs)
    hits = set(places.loc[places["recovered"], "found_id"])
    if len(rep.clusters):
        hits |= set(ms.loc[ms["recovered"], "found_id"])
    n_rep, det = len(rep.clusters), places["detectable"]
    either = places["recovered"] | places["sites_recovered"]
    return {
        "places": len(places),
        "places_detectable": int(det.sum()),
        "recall_place": float(places["recovered"].mean()),
        "recall_place_detectable": float(places.loc[det, "recovered"].mean()) if det.any() else float("nan"),
        "recall_place_or_sites": float(either[det].mean()) if det.any() else float("nan"),
        "precision_place": len(hits) / n_rep if n_rep else float("nan"),
        "table": places,
    }


def _place_majority(rep: Any, t: pd.DataFrame, incidents_truth: pd.DataFrame, crs: Any) -> pd.DataFrame:
    """Per place of ``t`` (truth with ``place``, ``detectable``, ``site_recovered``): the reported cluster
    holding most of its planted reports, ``shared``, ``recovered`` (over half, centre within a site's radius)."""
    mt = incidents_truth.dropna(subset=["cluster_id"]).assign(truth_id=lambda f: f["cluster_id"].astype(str))
    mt = mt.merge(t[["truth_id", "place"]], on="truth_id")
    m = mt[["incident_id", "place"]].merge(rep.members.rename(columns={"cluster_id": "found_id"}), on="incident_id")
    best = m.groupby(["place", "found_id"]).size().rename("shared").reset_index()
    best = best.sort_values(["place", "shared"], ascending=[True, False]).drop_duplicates("place")
    places = t.groupby("place").agg(
        n_sites=("truth_id", "size"), n_incidents=("n_incidents", "sum"), detectable=("detectable", "any"),
        sites_recovered=("site_recovered", "all"),
    ).reset_index().merge(best, on="place", how="left")  # fmt: skip
    places["shared"] = places["shared"].fillna(0).astype(int)
    centres = gpd.GeoSeries(gpd.points_from_xy(t["lon"], t["lat"]), crs=4326).to_crs(crs)
    site = pd.DataFrame({"place": t["place"], "x": centres.x, "y": centres.y, "r": t["radius_m"].astype(float)})
    site = site.merge(places[["place", "found_id"]].dropna(), on="place")
    cl = rep.clusters.set_index("cluster_id")
    site["inside"] = np.hypot(site["x"] - cl.loc[site["found_id"], "centroid_x"].to_numpy(),
                              site["y"] - cl.loc[site["found_id"], "centroid_y"].to_numpy()) <= site["r"]  # fmt: skip
    inside = places["place"].map(site.groupby("place")["inside"].any()).fillna(False).astype(bool)
    places["recovered"] = (places["shared"] * 2 > places["n_incidents"]).to_numpy() & inside.to_numpy()
    places["detectable"] = places["detectable"].astype(bool)
    places["sites_recovered"] = places["sites_recovered"].astype(bool)
    return places


def _reported(result: Any) -> Any:
    """The clusters in the inspectors' list: those flagged ``significant`` (all when unflagged), with their members."""
    from gis.hotspots import ClusterResult

    c = result.clusters
    if "significant" not in c.columns:
        return result
    keep = c["significant"].fillna(False).astype(bool).to_numpy()
    rep_ids = set(c.loc[keep, "cluster_id"])
    return ClusterResult(clusters=c[keep], members=result.members[result.members["cluster_id"].isin(rep_ids)], eps=result.eps)
