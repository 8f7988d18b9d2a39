"""The search: :func:`scipy.optimize.differential_evolution` with each generation one
vectorised fluid call (the objective is piecewise — the number of rounds jumps — so no
gradient polish)."""

from __future__ import annotations

import numpy as np

from .objective import Problem


def evolve(prob: Problem, pattern: str, lo, hi, seed=0, popsize=16, maxiter=45, x0=None, init=None):
    """:func:`scipy.optimize.differential_evolution` with every generation simulated in one
    vectorised fluid call (the objective is piecewise: no gradient polish).  ``init``: points
    the first generation must contain (the rest is a Sobol sample of the box)."""
    from scipy.optimize import differential_evolution
    from scipy.stats import qmc

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    hi = np.where(hi - lo < 1e-9, lo + 1e-9, hi)
    eps = 1e-7 * (hi - lo)

    def f(x):  # x: (p, S) in vectorised mode
        return prob.cost(pattern, np.asarray(x).T)

    kw = {}
    if x0 is not None:
        kw["x0"] = np.clip(x0, lo + eps, hi - eps)
    first = "sobol"
    if init is not None:
        n = popsize * lo.size
        given = np.clip(np.atleast_2d(init), lo + eps, hi - eps)[:n]
        need = max(n - given.shape[0], 1)
        # a power of two of Sobol points (fewer warn of lost balance), the first ``need`` kept
        pts = qmc.Sobol(lo.size, seed=seed).random_base2(max(int(np.ceil(np.log2(need))), 0))[:need]
        fill = qmc.scale(pts, lo + eps, hi - eps)
        first = np.vstack([given, fill])[: max(n, 5)]
    r = differential_evolution(
        f,
        list(zip(lo, hi)),
        vectorized=True,
        updating="deferred",
        popsize=popsize,
        maxiter=maxiter,
        tol=1e-4,
        atol=1e-3,
        seed=seed,
        polish=False,
        init=first,
        mutation=(0.5, 0.9),
        recombination=0.8,
        **kw,
    )
    return np.asarray(r.x, float), float(r.fun)
