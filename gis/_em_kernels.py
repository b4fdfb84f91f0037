"""Compiled loops of the batched EM (:mod:`gis.cluster_batch`): the E-step over point–site pairs and the M-step's sums.

Each kernel does in one pass over the pairs what :func:`gis.cluster_batch._pair_log`, :func:`gis.cluster_batch._lse`
and the bincounts of :func:`gis.cluster_batch._m_step` do in a dozen numpy passes, with the same operations in the
same order (sums in pair order, as ``np.bincount``); only ``exp`` may differ from numpy's in the last bit
(``tests/test_cluster_mixture.py`` compares them). Compiled by Numba on first use and cached beside this file.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pair_estep(
    x: np.ndarray, pi: np.ndarray, pk: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: np.ndarray, tm: np.ndarray,
    tau: np.ndarray, timed: bool, reach: float, m: np.ndarray, floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Shifted pair terms and their sum per point.

    .. math:: e_{ik} = \\exp\\big(\\max(\\ell_{ik} - M_i,\\ \\text{floor})\\big)\\,[d_{ik} \\le r\\sigma_k],\\quad
              \\ell_{ik} = \\log\\frac{n_k}{2\\pi\\sigma_k^2} - \\frac{d_{ik}^2}{2\\sigma_k^2}
              \\Big[- \\tfrac12\\log(2\\pi\\tau_k^2) - \\frac{(t_i - m_k)^2}{2\\tau_k^2}\\Big]

    (the bracket with ``timed``). Returns ``e`` per pair and :math:`\\sum_k e_{ik}` per point (length of ``m``).
    """
    k_sites = len(n)
    head = np.empty(k_sites)
    two_s2 = np.empty(k_sites)
    reach2 = np.empty(k_sites)
    t_head = np.zeros(k_sites)
    two_t2 = np.ones(k_sites)
    for k in range(k_sites):
        head[k] = np.log(max(n[k], 1e-300)) - np.log(2 * np.pi * sigma[k] ** 2)
        two_s2[k] = 2 * sigma[k] ** 2
        reach2[k] = (reach * sigma[k]) ** 2
        if timed:
            t_head[k] = 0.5 * np.log(2 * np.pi * tau[k] ** 2)
            two_t2[k] = 2 * tau[k] ** 2
    e = np.empty(len(pi))
    tot = np.zeros(len(m))
    for q in range(len(pi)):
        k = pk[q]
        i = pi[q]
        d2 = (x[i, 0] - mu[k, 0]) ** 2 + (x[i, 1] - mu[k, 1]) ** 2
        if d2 > reach2[k]:
            e[q] = 0.0
            continue
        lf = head[k] - d2 / two_s2[k]
        if timed:
            lf = lf - t_head[k] - (x[i, 2] - tm[k]) ** 2 / two_t2[k]
        v = np.exp(max(lf - m[i], floor))
        e[q] = v
        tot[i] += v
    return e, tot


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pair_msums(
    e: np.ndarray, tot: np.ndarray, pi: np.ndarray, pk: np.ndarray, x: np.ndarray, timed: bool, k_sites: int
) -> np.ndarray:
    """Responsibility-weighted sums per site, :math:`r_{ik} = e_{ik}/\\mathrm{tot}_i`: columns
    :math:`\\sum r`, :math:`\\sum r x`, :math:`\\sum r y`, :math:`\\sum r (x^2+y^2)` and with ``timed``
    :math:`\\sum r t`, :math:`\\sum r t^2` (pair order, as ``np.bincount``)."""
    out = np.zeros((6 if timed else 4, k_sites))
    _accumulate(out, e, tot, pi, pk, x, timed, np.ones(k_sites, dtype=np.bool_))
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _accumulate(
    out: np.ndarray, e: np.ndarray, tot: np.ndarray, pi: np.ndarray, pk: np.ndarray, x: np.ndarray, timed: bool,
    active: np.ndarray,
) -> None:
    """Add the sums of :func:`pair_msums` of the pairs of the ``active`` sites to ``out``, in pair order."""
    for q in range(len(pi)):
        k, i = pk[q], pi[q]
        if not active[k]:
            continue
        r = e[q] / tot[i]
        out[0, k] += r
        out[1, k] += r * x[i, 0]
        out[2, k] += r * x[i, 1]
        out[3, k] += r * (x[i, 0] ** 2 + x[i, 1] ** 2)
        if timed:
            out[4, k] += r * x[i, 2]
            out[5, k] += r * x[i, 2] ** 2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grid(xy: np.ndarray, cell: float) -> tuple[float, float, int, int, np.ndarray, np.ndarray]:
    """Points binned on square cells of ``cell`` from the lower-left corner: origin, cells in x and y, the points
    ordered by cell (by index within a cell) and each cell's start in that order (cell ``ix * ny + iy``)."""
    x0, y0 = xy[:, 0].min(), xy[:, 1].min()
    nx = int((xy[:, 0].max() - x0) / cell) + 1
    ny = int((xy[:, 1].max() - y0) / cell) + 1
    cid = np.empty(len(xy), dtype=np.int64)
    for p in range(len(xy)):
        cid[p] = min(int((xy[p, 0] - x0) / cell), nx - 1) * ny + min(int((xy[p, 1] - y0) / cell), ny - 1)
    order = np.argsort(cid, kind="mergesort")
    start = np.zeros(nx * ny + 1, dtype=np.int64)
    for p in range(len(xy)):
        start[cid[p] + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    return x0, y0, nx, ny, order, start


@numba.njit(cache=True, nogil=True, error_model="numpy")
def kernel_sums(centres: np.ndarray, xy: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel sum :math:`1 + \\sum_{j:\\,d_j \\le 3h} \\exp(-d_j^2 / 2h^2)` at each centre over the points
    ``xy``, summed in the order of ``xy`` (the pairs of ``cKDTree.sparse_distance_matrix`` sorted by point, as
    :func:`gis.cluster_scan.kernel_weights_at` sums them; ``tests/test_em_kernels.py``)."""
    out = np.ones(len(centres))
    if len(xy) == 0:
        return out
    reach_m = 3.0 * bandwidth
    x0, y0, nx, ny, order, start = _grid(xy, reach_m)
    idx = np.empty(len(xy), dtype=np.int64)
    dist = np.empty(len(xy))
    for a in range(len(centres)):
        qx, qy = centres[a, 0], centres[a, 1]
        gx, gy = int(np.floor((qx - x0) / reach_m)), int(np.floor((qy - y0) / reach_m))
        found = 0
        for ix in range(max(gx - 1, 0), min(gx + 1, nx - 1) + 1):
            for iy in range(max(gy - 1, 0), min(gy + 1, ny - 1) + 1):
                c = ix * ny + iy
                for t in range(start[c], start[c + 1]):
                    p = order[t]
                    d = np.sqrt((xy[p, 0] - qx) ** 2 + (xy[p, 1] - qy) ** 2)
                    if d <= reach_m:
                        idx[found] = p
                        dist[found] = d
                        found += 1
        by_point = np.argsort(idx[:found])
        s = 0.0
        for t in by_point:
            s += np.exp(-0.5 * (dist[t] / bandwidth) ** 2)
        out[a] = s + 1.0
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def disc_counts(xy: np.ndarray, q: np.ndarray, radii: np.ndarray, cell: float) -> np.ndarray:
    """Points of ``xy`` within each radius of each query point ``q`` (distance ≤ r), shape (len(q), len(radii)).

    The points are binned on a grid of ``cell`` metres; around a query, a cell whose farthest corner lies within
    *r* adds its count, a cell whose nearest point lies beyond *r* adds nothing, and only the points of the
    cells the circle crosses are measured — the counts of ``cKDTree.query_ball_point(q, r, return_length=True)``
    (``tests/test_cluster_scan.py``).
    """
    out = np.zeros((len(q), len(radii)), dtype=np.int64)
    if len(xy) == 0:
        return out
    x0, y0, nx, ny, order, start = _grid(xy, cell)
    xs, ys = xy[order, 0], xy[order, 1]  # the points in cell order: each cell's points side by side
    by_r = np.argsort(radii)
    r2 = radii[by_r] ** 2  # ascending: a cell inside radius j is inside every larger one
    n_r = len(radii)
    reach = int(radii.max() / cell) + 1
    acc = np.zeros(n_r + 1, dtype=np.int64)  # per query: counts added from radius j on (summed at the end)
    for a in range(len(q)):
        qx, qy = q[a, 0], q[a, 1]
        gx, gy = int(np.floor((qx - x0) / cell)), int(np.floor((qy - y0) / cell))
        acc[:] = 0
        for ix in range(max(gx - reach, 0), min(gx + reach, nx - 1) + 1):
            lo_x, hi_x = x0 + ix * cell - qx, x0 + (ix + 1) * cell - qx
            near_x = 0.0 if lo_x <= 0.0 <= hi_x else min(lo_x * lo_x, hi_x * hi_x)
            far_x = max(lo_x * lo_x, hi_x * hi_x)
            for iy in range(max(gy - reach, 0), min(gy + reach, ny - 1) + 1):
                c = ix * ny + iy
                if start[c + 1] == start[c]:
                    continue
                lo_y, hi_y = y0 + iy * cell - qy, y0 + (iy + 1) * cell - qy
                near = near_x + (0.0 if lo_y <= 0.0 <= hi_y else min(lo_y * lo_y, hi_y * hi_y))
                far = far_x + max(lo_y * lo_y, hi_y * hi_y)
                inside = n_r  # first radius holding the whole cell
                while inside > 0 and far < r2[inside - 1] * (1 - 1e-12):
                    inside -= 1
                acc[inside] += start[c + 1] - start[c]
                crossed = inside  # first radius the cell reaches
                while crossed > 0 and near <= r2[crossed - 1] * (1 + 1e-12):
                    crossed -= 1
                if crossed == inside:
                    continue
                for t in range(start[c], start[c + 1]):
                    d2 = (xs[t] - qx) ** 2 + (ys[t] - qy) ** 2
                    j = crossed
                    while j < inside and d2 > r2[j]:
                        j += 1
                    acc[j] += 1  # within radii j ... inside - 1 (the whole cell already counts from inside on)
                    acc[inside] -= 1
        run = 0
        for j in range(n_r):
            run += acc[j]
            out[a, by_r[j]] = run
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def em_plain(
    x: np.ndarray, pp: np.ndarray, sp: np.ndarray, log_bg: np.ndarray, first: np.ndarray, area: np.ndarray,
    floor: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: np.ndarray, tm: np.ndarray, tau: np.ndarray, timed: bool,
    pi: np.ndarray, pk: np.ndarray, centre: np.ndarray, radius: np.ndarray, running: np.ndarray, ll_old: np.ndarray,
    ll: np.ndarray, it: int, max_iter: int, tol: float, reach: float, bounds: np.ndarray, exp_floor: float,
) -> tuple[int, np.ndarray]:
    """Plain EM steps of a stack of problems (:func:`gis.cluster_batch._plain_reference`, in one compiled loop).

    From step ``it`` to ``max_iter``: the E-step over the pairs of the running problems (as :func:`pair_estep`),
    each problem's :math:`\\ell` (into ``ll``), the problems whose :math:`\\ell` gained less than ``tol`` over
    ``ll_old`` stop, then the M-step of the others (background, then sites, as
    :func:`gis.cluster_batch._background_step` and :func:`gis.cluster_batch._m_step`; ``bounds``: min σ, max σ,
    min τ). The points of a problem are ``first[p]`` up to the next problem's first. Sites, backgrounds,
    ``running``, ``ll_old`` and ``ll`` change in place. Returns the next step and the sites that left their
    pairs' search radius (``centre``, ``radius``: the caller searches their pairs again and calls again), or
    ``max_iter`` when every problem has stopped or the steps are done.
    """
    n_pts, n_sites, n_prob = len(pp), len(n), len(area)
    end = np.append(first[1:], n_pts)
    m, tot, lse = np.zeros(n_pts), np.zeros(n_pts), np.zeros(n_pts)
    e = np.zeros(len(pi))
    moved = np.zeros(n_sites, dtype=np.bool_)
    head, t_head = np.zeros(n_sites), np.zeros(n_sites)
    while it < max_iter and n_pts:
        it += 1
        top = np.full(n_prob, -np.inf)
        for k in range(n_sites):
            head[k] = np.log(max(n[k], 1e-300)) - np.log(2 * np.pi * sigma[k] ** 2)
            peak = head[k]
            if timed:
                t_head[k] = 0.5 * np.log(2 * np.pi * tau[k] ** 2)
                peak = peak - t_head[k]
            top[sp[k]] = max(top[sp[k]], peak)
        for p in range(n_prob):
            if running[p]:
                for i in range(first[p], end[p]):
                    m[i] = max(log_bg[i], top[p])
                    tot[i] = 0.0
        _pairs_e(x, pi, pk, sp, mu, sigma, head, tm, tau, t_head, timed, reach, m, running, exp_floor, e, tot)
        n_sum = np.zeros(n_prob)
        for k in range(n_sites):
            n_sum[sp[k]] += n[k]
        alive = False
        for p in range(n_prob):
            if not running[p]:
                continue
            llp = 0.0
            for i in range(first[p], end[p]):
                tot[i] = np.exp(log_bg[i] - m[i]) + tot[i]
                lse[i] = m[i] + np.log(tot[i])
                llp += lse[i]
            ll[p] = llp - n_sum[p] - np.exp(log_bg[min(first[p], n_pts - 1)]) * area[p]
            if ll[p] - ll_old[p] < tol:
                running[p] = False
            ll_old[p] = ll[p]
            alive = alive or running[p]
        if not alive:
            return max_iter, moved
        _background(first, end, log_bg, lse, area, floor, running)
        _sites_m(x, pi, pk, sp, e, tot, mu, sigma, n, tm, tau, timed, running, bounds)
        for k in range(n_sites):
            if running[sp[k]]:
                out = np.hypot(mu[k, 0] - centre[k, 0], mu[k, 1] - centre[k, 1]) + reach * sigma[k]
                moved[k] = out > radius[k] * (1 - 1e-9) - 1e-3
                alive = alive and not moved[k]
        if not alive:
            return it, moved
    return max_iter, moved


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pairs_e(
    x: np.ndarray, pi: np.ndarray, pk: np.ndarray, sp: np.ndarray, mu: np.ndarray, sigma: np.ndarray, head: np.ndarray,
    tm: np.ndarray, tau: np.ndarray, t_head: np.ndarray, timed: bool, reach: float, m: np.ndarray, running: np.ndarray,
    exp_floor: float, e: np.ndarray, tot: np.ndarray,
) -> None:
    """E-step terms of the pairs of the running problems (:func:`pair_estep`; ``head``, ``t_head``: the sites'
    log factors), into ``e`` and their sums per point into ``tot``."""
    for q in range(len(pi)):
        k, i = pk[q], pi[q]
        e[q] = 0.0
        if not running[sp[k]]:
            continue
        d2 = (x[i, 0] - mu[k, 0]) ** 2 + (x[i, 1] - mu[k, 1]) ** 2
        if d2 > (reach * sigma[k]) ** 2:
            continue
        lf = head[k] - d2 / (2 * sigma[k] ** 2)
        if timed:
            lf = lf - t_head[k] - (x[i, 2] - tm[k]) ** 2 / (2 * tau[k] ** 2)
        e[q] = np.exp(max(lf - m[i], exp_floor))
        tot[i] += e[q]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _background(first: np.ndarray, end: np.ndarray, log_bg: np.ndarray, lse: np.ndarray, area: np.ndarray,
                floor: np.ndarray, running: np.ndarray) -> None:  # fmt: skip
    """Fitted background of the running problems with a window (:func:`gis.cluster_batch._background_step`)."""
    for p in range(len(area)):
        if not running[p] or area[p] <= 0:
            continue
        share = 0.0
        for i in range(first[p], end[p]):
            share += np.exp(log_bg[i] - lse[i])
        new = np.log(max(share / area[p], floor[p]))
        for i in range(first[p], end[p]):
            log_bg[i] = new


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sites_m(
    x: np.ndarray, pi: np.ndarray, pk: np.ndarray, sp: np.ndarray, e: np.ndarray, tot: np.ndarray, mu: np.ndarray,
    sigma: np.ndarray, n: np.ndarray, tm: np.ndarray, tau: np.ndarray, timed: bool, running: np.ndarray, bounds: np.ndarray,
) -> None:
    """M-step of the sites of the running problems (:func:`gis.cluster_batch._m_step`), in place."""
    k_sites = len(n)
    s = np.zeros((6, k_sites))
    active = np.empty(k_sites, dtype=np.bool_)
    for k in range(k_sites):
        active[k] = running[sp[k]]
    _accumulate(s, e, tot, pi, pk, x, timed, active)
    for k in range(k_sites):
        if not running[sp[k]]:
            continue
        nk = s[0, k]
        ok = nk > 1e-9
        w = max(nk, 1e-9)
        if ok:
            mu[k, 0], mu[k, 1] = s[1, k] / w, s[2, k] / w
        var = max(s[3, k] - nk * (mu[k, 0] ** 2 + mu[k, 1] ** 2), 0.0) / max(2 * nk, 1e-9)
        sigma[k] = min(max(np.sqrt(var if ok else sigma[k] ** 2), bounds[0]), bounds[1])
        n[k] = nk
        if timed:
            t_mean = s[4, k] / w if ok else tm[k]
            tv = s[5, k] / w - t_mean**2
            tau[k] = max(np.sqrt(max(tv, 0.0) if ok else tau[k] ** 2), bounds[2])
            tm[k] = t_mean


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pair_log_terms(
    x: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: np.ndarray, tm: np.ndarray, tau: np.ndarray, timed: bool,
    i: np.ndarray, k: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Log site term and squared distance of each point–site pair (``i``, ``k``): the pair branch of
    :func:`gis.cluster_mixture._site_log`, the same operations per pair."""
    lf, d2 = np.empty(len(i)), np.empty(len(i))
    for q in range(len(i)):
        p, s = i[q], k[q]
        d2[q] = (x[p, 0] - mu[s, 0]) ** 2 + (x[p, 1] - mu[s, 1]) ** 2
        lf[q] = np.log(max(n[s], 1e-300)) - np.log(2 * np.pi * sigma[s] ** 2) - d2[q] / (2 * sigma[s] ** 2)
        if timed:
            lf[q] = lf[q] - 0.5 * np.log(2 * np.pi * tau[s] ** 2) - (x[p, 2] - tm[s]) ** 2 / (2 * tau[s] ** 2)
    return lf, d2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def split_moments(
    x: np.ndarray, pi: np.ndarray, e: np.ndarray, tot: np.ndarray, start: np.ndarray, mu: np.ndarray,
    sigma: np.ndarray, tm: np.ndarray, tau: np.ndarray, timed: bool, sites: np.ndarray,
) -> np.ndarray:
    """Per site of ``sites``: the responsibility-weighted second moments of its points' offsets (its pairs
    ``start[a]:start[a+1]``, :math:`r = e / \\\\mathrm{tot}`) over their total weight — in metres (2×2), or with
    ``timed`` standardised, :math:`((s-\\\\mu)/\\\\sigma, (t-m)/\\\\tau)` (3×3) — for the split starts of
    :func:`gis.cluster_mixture.split_starts`."""
    dim = 3 if timed else 2
    out = np.zeros((len(sites), dim, dim))
    z = np.zeros(dim)
    for j in range(len(sites)):
        a = sites[j]
        w = 0.0
        for q in range(start[a], start[a + 1]):
            i = pi[q]
            r = e[q] / tot[i]
            w += r
            if timed:
                z[0], z[1] = (x[i, 0] - mu[a, 0]) / sigma[a], (x[i, 1] - mu[a, 1]) / sigma[a]
                z[2] = (x[i, 2] - tm[a]) / tau[a]
            else:
                z[0], z[1] = x[i, 0] - mu[a, 0], x[i, 1] - mu[a, 1]
            for u in range(dim):
                for v in range(dim):
                    out[j, u, v] += r * z[u] * z[v]
        out[j] /= max(w, 1e-9)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def change_loglik(
    x: np.ndarray, pi: np.ndarray, e: np.ndarray, tot: np.ndarray, m: np.ndarray, log_bg: np.ndarray,
    start: np.ndarray, old_ptr: np.ndarray, old_sites: np.ndarray, new_ptr: np.ndarray, new_mu: np.ndarray,
    new_sigma: np.ndarray, new_n: np.ndarray, new_tm: np.ndarray, new_tau: np.ndarray, timed: bool, reach: float,
    exp_floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate change *c* (old sites ``old_sites[old_ptr[c]:old_ptr[c+1]]`` replaced by the new sites
    ``new_ptr[c]:new_ptr[c+1]``): :math:`\\\\sum_{i\\\\in L}\\\\log\\\\big((\\\\rho_i + \\\\sum_{new} n_k\\\\phi_k(s_i)) / \\\\lambda(s_i)\\\\big)`
    over the points *L* within reach of an old site, and :math:`|L|` — the sums of
    :func:`gis.cluster_mixture.change_gains`, in the same order (points ascending)."""
    n_c = len(old_ptr) - 1
    dl, near = np.zeros(n_c), np.zeros(n_c, dtype=np.int64)
    e_old = np.zeros(len(m))
    seen = np.zeros(len(m), dtype=np.bool_)
    buf = np.empty(len(m), dtype=np.int64)
    for c in range(n_c):
        cnt = 0
        for o in range(old_ptr[c], old_ptr[c + 1]):
            a = old_sites[o]
            for q in range(start[a], start[a + 1]):
                i = pi[q]
                if not seen[i]:
                    seen[i] = True
                    buf[cnt] = i
                    cnt += 1
                e_old[i] += e[q]
        acc = 0.0
        for i in np.sort(buf[:cnt]):
            rest = max(tot[i] - e_old[i], np.exp(log_bg[i] - m[i]))
            added = 0.0
            for t in range(new_ptr[c], new_ptr[c + 1]):
                d2 = (x[i, 0] - new_mu[t, 0]) ** 2 + (x[i, 1] - new_mu[t, 1]) ** 2
                if d2 > (reach * new_sigma[t]) ** 2:
                    continue
                lf = np.log(max(new_n[t], 1e-300)) - np.log(2 * np.pi * new_sigma[t] ** 2) - d2 / (2 * new_sigma[t] ** 2)
                if timed:
                    lf = lf - 0.5 * np.log(2 * np.pi * new_tau[t] ** 2) - (x[i, 2] - new_tm[t]) ** 2 / (2 * new_tau[t] ** 2)
                added += np.exp(max(lf - m[i], exp_floor))
            acc += np.log(rest + added) - np.log(tot[i])
            e_old[i] = 0.0
            seen[i] = False
        dl[c], near[c] = acc, cnt
    return dl, near


@numba.njit(cache=True, nogil=True, error_model="numpy")
def problem_grids(
    x: np.ndarray, first: np.ndarray, end: np.ndarray, cell: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A grid of ``cell`` metres per problem of a stack (points ``first[p]:end[p]``): per problem its origin (x, y),
    cells in x and y and first cell; the points ordered by (problem, cell, index) and each cell's start there."""
    n_prob = len(first)
    origin, shape = np.zeros((n_prob, 2)), np.zeros((n_prob, 2), dtype=np.int64)
    base = np.zeros(n_prob + 1, dtype=np.int64)
    cid = np.empty(len(x), dtype=np.int64)
    for p in range(n_prob):
        if end[p] > first[p]:
            origin[p, 0], origin[p, 1] = x[first[p]:end[p], 0].min(), x[first[p]:end[p], 1].min()
            shape[p, 0] = int((x[first[p]:end[p], 0].max() - origin[p, 0]) / cell) + 1
            shape[p, 1] = int((x[first[p]:end[p], 1].max() - origin[p, 1]) / cell) + 1
        base[p + 1] = base[p] + shape[p, 0] * shape[p, 1]
        for i in range(first[p], end[p]):
            gx = min(int((x[i, 0] - origin[p, 0]) / cell), shape[p, 0] - 1)
            gy = min(int((x[i, 1] - origin[p, 1]) / cell), shape[p, 1] - 1)
            cid[i] = base[p] + gx * shape[p, 1] + gy
    order = np.argsort(cid, kind="mergesort")
    start = np.zeros(base[n_prob] + 1, dtype=np.int64)
    for i in range(len(x)):
        start[cid[i] + 1] += 1
    for c in range(base[n_prob]):
        start[c + 1] += start[c]
    return origin, shape, base, order, start, cid


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ball_pairs(
    x: np.ndarray, sp: np.ndarray, origin: np.ndarray, shape: np.ndarray, base: np.ndarray, order: np.ndarray,
    start: np.ndarray, cell: float, centre: np.ndarray, radius: np.ndarray, sites: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The points of its own problem within ``radius[k]`` of ``centre[k]`` (distance ≤ r) for each site *k* of
    ``sites``: pairs grouped by site in the order of ``sites``, each site's points ascending — what
    ``cKDTree.query_ball_point`` returns for the stack laid out problem by problem."""
    counts = np.zeros(len(sites), dtype=np.int64)
    buf = np.empty(len(x), dtype=np.int64)
    for pass_ in range(2):
        if pass_ == 1:
            total = counts.sum()
            pi, pk = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)
            at = 0
        for j in range(len(sites)):
            k = sites[j]
            p = sp[k]
            cx, cy, r = centre[k, 0], centre[k, 1], radius[k]
            found = 0
            if shape[p, 0] > 0:
                lo_x = max(int(np.floor((cx - r - origin[p, 0]) / cell)), 0)
                hi_x = min(int(np.floor((cx + r - origin[p, 0]) / cell)), shape[p, 0] - 1)
                lo_y = max(int(np.floor((cy - r - origin[p, 1]) / cell)), 0)
                hi_y = min(int(np.floor((cy + r - origin[p, 1]) / cell)), shape[p, 1] - 1)
                for gx in range(lo_x, hi_x + 1):
                    for gy in range(lo_y, hi_y + 1):
                        c = base[p] + gx * shape[p, 1] + gy
                        for t in range(start[c], start[c + 1]):
                            i = order[t]
                            if (x[i, 0] - cx) ** 2 + (x[i, 1] - cy) ** 2 <= r * r:
                                if pass_ == 1:
                                    buf[found] = i
                                found += 1
            if pass_ == 0:
                counts[j] = found
            else:
                pi[at:at + found] = np.sort(buf[:found])
                pk[at:at + found] = k
                at += found
    return pi, pk
