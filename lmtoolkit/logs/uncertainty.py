"""Uncertainty of a fit: a bootstrap over rounds — the rounds' residual groups resampled with
replacement (the totals always count), each resample's estimate one Gauss–Newton step from
the fit (Jacobian by central differences: the "one-step" bootstrap); the totals, one
observation each, get a parametric N(0, 1) draw per resample instead.  With fewer than
:data:`MIN_BOOTSTRAP_ROUNDS` rounds, likelihood slices instead (each parameter over its
range, the others at the fit; the values within Δχ² <= 1 x the residual variance, sampled
uniformly)."""

from __future__ import annotations

import numpy as np

from .objective import Problem

#: fewer rounds than this: no bootstrap over rounds, likelihood slices instead
MIN_BOOTSTRAP_ROUNDS = 4


def jacobian(prob: Problem, pattern: str, xhat: np.ndarray):
    """Residuals at ``xhat`` and their Jacobian by central differences of 5 % (one call)."""
    p = xhat.size
    h = np.array([0.05 if q.log else 0.01 * max(abs(q.hi - q.lo), 1e-9) for q in prob.params])
    X = np.vstack(
        [xhat]
        + [xhat + np.eye(p)[i] * h[i] for i in range(p)]
        + [xhat - np.eye(p)[i] * h[i] for i in range(p)]
    )
    R, groups = prob.residuals(pattern, X)
    J = ((R[1 : p + 1] - R[p + 1 :]) / (2 * h[:, None])).T  # (m, p)
    return J, R[0], groups


def bootstrap_over_rounds(
    prob: Problem, pattern: str, xhat: np.ndarray, B: int, seed: int, jac=None
) -> np.ndarray:
    """One-step bootstrap over rounds: resampled round weights, one Gauss–Newton step each."""
    p = xhat.size
    if B <= 0:  # no resamples (lmtk fit --bootstrap 0): no samples, no interval (the estimate
        return np.empty((0, p))  # alone, as one sample, gave sd 0 and [v, v]: it looked exact)
    J, r0, groups = jac if jac is not None else jacobian(prob, pattern, xhat)
    rng = np.random.default_rng(seed)
    n_rounds = int(groups.max()) + 1 if groups.size and groups.max() >= 0 else 0
    out = np.empty((B, p))
    lam = 1e-6 * np.trace(J.T @ J) / max(p, 1) + 1e-12
    lo = np.array([q.to_x(q.lo) for q in prob.params])
    hi = np.array([q.to_x(q.hi) for q in prob.params])
    if n_rounds < MIN_BOOTSTRAP_ROUNDS:
        # too few rounds to resample: slices of the likelihood — each parameter over its range
        # with the others at the fit; the values within Δχ² <= 1 (times the residual variance,
        # at least 1) around the fit, sampled uniformly and independently
        dof = max(r0.size - p, 1)
        s2 = max(float(r0 @ r0) / dof, 1.0)
        c0 = float(r0 @ r0)
        K = 41
        X = np.repeat(xhat[None, :], K * p, axis=0)
        grids = [np.linspace(lo[i], hi[i], K) for i in range(p)]
        for i in range(p):
            X[i * K : (i + 1) * K, i] = grids[i]
        cost = prob.cost(pattern, X).reshape(p, K)
        for i in range(p):
            ok = cost[i] <= c0 + s2
            j = int(np.argmin(np.abs(grids[i] - xhat[i])))
            a = b = j
            while a > 0 and ok[a - 1]:
                a -= 1
            while b < K - 1 and ok[b + 1]:
                b += 1
            left = grids[i][a - 1] if a > 0 else grids[i][0]  # up to the first
            right = grids[i][b + 1] if b < K - 1 else grids[i][-1]  # grid point outside
            left, right = min(left, xhat[i]), max(right, xhat[i])
            out[:, i] = rng.uniform(left, right, B)
        return np.clip(out, lo, hi)
    A0 = J.T @ J + lam * np.eye(p)
    try:
        delta0 = -np.linalg.solve(A0, J.T @ r0)  # the step of the unweighted problem: the
    except np.linalg.LinAlgError:  # resamples' steps are taken relative to it
        delta0 = np.zeros(p)  # (the fit of a piecewise objective is not
    # the totals (time, bytes, downtime) and the switchover prior are one observation each:
    # resampling rounds leaves them alone, so they get a parametric draw instead (a "wild"
    # term: r + N(0, 1)), else what only they determine (link rate, switchover cost) would
    # look exact
    from .objective import total_column

    wild = np.zeros(r0.size, dtype=bool)
    wild[total_column(prob.obs, "total_time") : total_column(prob.obs, "overhead_prior") + 1] = True
    for b in range(B):  # exactly at a smooth minimum)
        w = np.ones_like(r0)
        if n_rounds:
            counts = np.bincount(rng.integers(0, n_rounds, n_rounds), minlength=n_rounds).astype(float)
            w = np.where(groups >= 0, counts[np.maximum(groups, 0)], 1.0)
        rb = r0 + np.where(wild & (J != 0).any(axis=1), rng.standard_normal(r0.size), 0.0)
        A = J.T @ (w[:, None] * J) + lam * np.eye(p)
        g = J.T @ (w * rb)
        try:
            delta = -np.linalg.solve(A, g)
        except np.linalg.LinAlgError:
            delta = np.zeros(p)
        out[b] = xhat + delta - delta0
    return np.clip(out, lo, hi)


#: the profile of the write rate spans the fit ÷/x this factor
PROFILE_SPAN = 4.0


def rate_profile(prob: Problem, pattern: str, xhat: np.ndarray, i: int, j: int, n: int = 25, m: int = 17):
    """Profile likelihood of parameter ``i`` (the write rate) with parameter ``j`` (the working
    set) re-fitted, the others at the fit: -2 log L (the cost) over a log grid of ``n`` values
    of ``i`` spanning the fit ÷/x :data:`PROFILE_SPAN`, each minimised over ``j``: a grid of
    ``m`` values (same span, within its bounds), then ``m`` finer ones around each row's best
    (a saturated working set is pinned to a few per cent).  Two vectorised fluid calls.  The
    cost leaves out what a sequential sweep's unknown phase decides
    (:meth:`Problem.phase_free_cost`).
    Returns (values of ``i`` in internal units, profile cost, the best ``j`` of each)."""
    q = prob.params[j]
    jlo, jhi = q.to_x(q.lo), q.to_x(q.hi)
    half = np.log(PROFILE_SPAN)
    gi = xhat[i] + np.linspace(-half, half, n)
    coarse = np.clip(xhat[j] + np.linspace(-half, half, m), jlo, jhi)
    step = 2 * half / (m - 1)

    def costs(gj):  # gj: (n, k) values of j per row of gi
        k = gj.shape[1]
        X = np.repeat(xhat[None, :], n * k, axis=0)
        X[:, i] = np.repeat(gi, k)
        X[:, j] = gj.ravel()
        return prob.phase_free_cost(pattern, X).reshape(n, k)

    C = costs(np.tile(coarse, (n, 1)))
    best = coarse[np.argmin(C, axis=1)]
    fine = np.clip(best[:, None] + np.linspace(-step, step, m)[None, :], jlo, jhi)
    F = costs(fine)
    rows = np.arange(n)
    bf, bc = F[rows, np.argmin(F, axis=1)], C.min(axis=1)
    bestj = np.where(bf <= bc, fine[rows, np.argmin(F, axis=1)], best)
    return gi, np.minimum(bc, bf), bestj


#: the page engine's profile spans the fluid profile's values within this of its minimum
#: (Δχ² <= 9: 3 σ), and at least the fit ÷/x exp(:data:`PAGE_PROFILE_MIN_HALF`)
PAGE_PROFILE_WINDOW = 9.0
PAGE_PROFILE_MIN_HALF = 0.12


def page_rate_profile(
    prob: Problem,
    pattern: str,
    xhat: np.ndarray,
    i: int,
    j: int,
    grid: np.ndarray,
    prof: np.ndarray,
    bestj: np.ndarray,
    n: int = 17,
    m: int = 7,
    width: float = 0.2,
    seeds=(0, 1, 2),
):
    """The write rate's profile likelihood on the page engine (the engine of the FIT file): the
    fluid engine with the space-mapping shift is exact only at the estimate it was computed at,
    and away from it the two differ in which syncs happen (the fluid engine mixes the regions a
    pass sends), which can pin the rate where the page engine does not, or elsewhere.  Over
    ``n`` rates spanning the fluid profile's 3-σ window (:data:`PAGE_PROFILE_WINDOW`; a side
    the fluid profile leaves open runs to its grid's end), each the cost minimised over ``m``
    working sets within ``width`` (log) of the fluid profile's best for that rate; common
    random numbers (the same ``seeds`` for every row), one batch.  What a sequential sweep's
    phase decides is left out.  Returns (values of ``i`` in internal units, profile cost, the
    best ``j`` of each)."""
    q = prob.params[j]
    jlo, jhi = q.to_x(q.lo), q.to_x(q.hi)
    ok = np.flatnonzero(prof <= np.min(prof) + PAGE_PROFILE_WINDOW)
    step = grid[1] - grid[0] if grid.size > 1 else 0.1
    lo = min(grid[max(ok[0] - 1, 0)], xhat[i] - PAGE_PROFILE_MIN_HALF)
    hi = max(grid[min(ok[-1] + 1, grid.size - 1)], xhat[i] + PAGE_PROFILE_MIN_HALF)
    lo, hi = max(lo, grid[0] - step), min(hi, grid[-1] + step)
    gi = np.linspace(lo, hi, n)
    centre = np.interp(gi, grid, bestj)
    gj = np.clip(centre[:, None] + np.linspace(-width, width, m)[None, :], jlo, jhi)
    X = np.repeat(xhat[None, :], n * m, axis=0)
    X[:, i] = np.repeat(gi, m)
    X[:, j] = gj.ravel()
    R, mask = prob.page_residual_rows(pattern, X, seeds)
    C = np.sum(np.where(mask, R, 0.0) ** 2, axis=1).reshape(n, m)
    k = np.argmin(C, axis=1)
    rows = np.arange(n)
    return gi, C[rows, k], gj[rows, k]


def profile_interval(grid: np.ndarray, cost: np.ndarray, c_fit: float, delta: float = 1.0):
    """The values where the profile lies within ``delta`` of the fit's cost (Δχ² <= 1: 68 %), as
    (low, high, open_low, open_high): a side is open when the profile is still that low at the
    grid's end (the log bounds the parameter on one side only)."""
    best = min(float(np.min(cost)), c_fit)
    ok = cost <= best + delta
    idx = np.flatnonzero(ok)
    if not idx.size:
        k = int(np.argmin(cost))
        return float(grid[k]), float(grid[k]), False, False

    def edge(a, b):  # linear interpolation of the crossing between grid points a (in) and b (out)
        ca, cb = cost[a] - best - delta, cost[b] - best - delta
        return float(grid[a] + (grid[b] - grid[a]) * ca / (ca - cb)) if cb != ca else float(grid[a])

    a, b = idx[0], idx[-1]
    lo = edge(a, a - 1) if a > 0 else float(grid[0])
    hi = edge(b, b + 1) if b < grid.size - 1 else float(grid[-1])
    return lo, hi, a == 0, b == grid.size - 1
