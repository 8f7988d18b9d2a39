"""The fit's objective: parameters (:class:`Param`) and the residuals of simulated against
observed rounds (:class:`Problem`).

Residuals: simulated minus observed sync times (σ: the poll bracket, 2 % + 10 ms), pages
added per sync (σ: 3 %, 0.5 MiB; for a sequential sweep that has come round also the phase
of the write cursor against the send cursor: kept where the log states the phase, as the
model of a real sweep against QEMU's send cursor is not that exact), one per simulated sync
the log does not have,
total time (1 % + 30 ms), bytes (1 % + 1 MiB), downtime (10 % + 5 ms), a weak prior on the
switchover cost, and one per ``dirty-pages-rate`` period the log identifies: the pages its
syncs newly set in the bitmap (:func:`.observations.rate_periods`; simulated: the sum over
those syncs of the pages each added, what the engines record per round — ``round_dirty_pages``
after the sync minus what the round before left pending).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .observations import MIB, Observed
from .trajectory import trajectories

#: the residual columns after the per-sync ones (``2 (K - 1)``): extra syncs, total time,
#: bytes, downtime, switchover prior, the sequential-phase penalty; then one per
#: dirty-pages-rate period (:attr:`.observations.Observed.periods`)
TOTALS = ("syncs", "total_time", "transferred", "downtime", "overhead_prior", "phase_penalty")


def n_columns(o: Observed) -> int:
    """Residual columns of one evaluation: time and pages per sync, the totals, the periods."""
    return 2 * (o.syncs - 1) + len(TOTALS) + len(o.periods)


def total_column(o: Observed, name: str) -> int:
    return 2 * (o.syncs - 1) + TOTALS.index(name)


def hot_within_wss(cols: dict, workload) -> dict:
    """``workload.hot_mib`` at most ``workload.wss_mib`` (the row's, else the workload's; a
    hot/cold workload refuses a larger hot set): the fit searches both over the VM's memory,
    and a row whose hot set exceeds its working set is the working set all hot."""
    hot = cols.get("workload.hot_mib")
    if hot is None:
        return cols
    wss = cols.get("workload.wss_mib", getattr(workload, "wss_mib", None))
    if wss is not None:
        cols["workload.hot_mib"] = np.minimum(hot, wss)
    return cols


@dataclass
class Param:
    key: str
    lo: float
    hi: float
    log: bool = True
    init: float = 1.0
    label: str = ""
    units: str = ""

    def to_x(self, v):
        v = np.clip(np.asarray(v, float), self.lo, self.hi)
        return np.log(v) if self.log else v

    def from_x(self, x):
        x = np.asarray(x, float)
        v = np.exp(x) if self.log else x
        return np.clip(v, self.lo, self.hi)


@dataclass
class Problem:
    """The objective: templates (one per pattern) and the observations."""

    obs: Observed
    params: list[Param]
    templates: dict  # pattern -> Scenario
    fixed: dict  # key -> value applied as a column to every evaluation
    overhead_prior_ms: float | None
    round_detail: int
    evals: int = 0
    page_evals: int = 0
    shift: np.ndarray | None = None  # page-engine correction added to the residuals
    #: a clock-paced writer's peak rate as a function of its target rate (fitted): applied when
    #: the run throttles the guest (auto-converge), where it sets how much a stall is made up
    peak_rate: object = None
    #: (N, m) residuals of the last evaluation that a sequential sweep's phase does not decide
    phase_free: np.ndarray | None = None

    def _implied_columns(self, cols: dict) -> dict:
        """The columns a row implies: the writer's peak rate (:attr:`peak_rate`), and a hot
        set within the working set (:func:`hot_within_wss`)."""
        rate = cols.get("workload.dirty_rate_pages_s")
        if self.peak_rate is not None and rate is not None:
            cols["workload.max_rate_pages_s"] = np.maximum(self.peak_rate(np.asarray(rate, float)), rate)
        return hot_within_wss(cols, next(iter(self.templates.values())).workload)

    def scenario(self, pattern: str, x: np.ndarray, engine: str = "page", seed: int = 0):
        """The scenario of one parameter row (for the page engine)."""
        from ..engine.fluid import with_values

        scn = with_values(self.templates[pattern], self.fixed.items())
        cols = {p.key: float(p.from_x(x[i])) for i, p in enumerate(self.params)}
        scn = with_values(scn, ((k, float(v)) for k, v in self._implied_columns(cols).items()))
        return dataclasses.replace(scn, engine=engine, seed=seed)

    def page_residuals(self, pattern: str, x: np.ndarray, seeds=(0, 1, 2)):
        """Residuals of the page engine at ``x`` (mean over ``seeds``), without the shift."""
        R, _ = self.page_residual_rows(pattern, np.atleast_2d(x), seeds)
        return R[0]

    def page_residual_rows(self, pattern: str, X: np.ndarray, seeds=(0, 1, 2)):
        """Page-engine residuals of rows ``X`` (each the mean over ``seeds``, the same seeds for
        every row: common random numbers), without the shift, and which of them a sequential
        sweep's phase does not decide (:attr:`phase_free`)."""
        from ..engine import run_batch
        from ..engine.common import BatchResult

        X = np.atleast_2d(X)
        scns = [self.scenario(pattern, x, "page", s) for x in X for s in seeds]
        self.page_evals += len(scns)
        # every sync the log shows (the page engine kept 64 pre-copy rounds by default: an
        # 83-sync log's last 18 syncs were missing from the fit, rms 8.45 for a good fit)
        batch = run_batch(scns, round_detail=self.round_detail)
        if batch.n_rounds < self.round_detail + 2:  # the page engine keeps what it saw
            wide = BatchResult(batch.n, self.round_detail + 2)
            wide.scalars = batch.scalars
            for k in batch.round:
                wide.round[k][:, : batch.n_rounds] = batch.round[k]
            wide.round_kind[:, : batch.n_rounds] = batch.round_kind
            batch = wide
        R, _ = self.residuals_of(batch, np.repeat(X, len(seeds), axis=0), shift=False, pattern=pattern)
        n = len(seeds)
        mask = self.phase_free.reshape(X.shape[0], n, -1).all(axis=1)
        return R.reshape(X.shape[0], n, -1).mean(axis=1), mask

    def simulate(self, pattern: str, X: np.ndarray):
        """Simulate parameter rows ``X`` (internal space, (N, p)) for one pattern."""
        from ..engine.fluid import simulate_fluid_columns

        X = np.atleast_2d(X)
        cols = {p.key: p.from_x(X[:, i]) for i, p in enumerate(self.params)}
        for k, v in self.fixed.items():
            cols[k] = np.full(X.shape[0], v)
        cols = self._implied_columns(cols)
        self.evals += X.shape[0]
        return simulate_fluid_columns(self.templates[pattern], cols, round_detail=self.round_detail)

    def residuals(self, pattern: str, X: np.ndarray):
        """(N, m) residual matrix and the group of each column (round index, -1: totals)."""
        X = np.atleast_2d(X)
        batch = self.simulate(pattern, X)
        return self.residuals_of(batch, X, pattern=pattern)

    def _write_rate_per_page(self, pattern: str, X) -> np.ndarray:
        """Writes per working-set page per second of each row (sequential sweeps)."""
        wl = self.templates[pattern].workload
        keys = [p.key for p in self.params]
        rate = np.full(X.shape[0], float(getattr(wl, "dirty_rate_pages_s", 0.0)))
        wss = np.full(
            X.shape[0], float(wl.wss_mib) if getattr(wl, "wss_mib", None) else self.obs.memory_bytes / MIB
        )
        if "workload.dirty_rate_pages_s" in keys:
            i = keys.index("workload.dirty_rate_pages_s")
            rate = self.params[i].from_x(X[:, i])
        if "workload.wss_mib" in keys:
            i = keys.index("workload.wss_mib")
            wss = self.params[i].from_x(X[:, i])
        return rate / np.maximum(wss * MIB / self.obs.page_size, 1.0)

    def residuals_of(self, batch, X, shift: bool = True, pattern: str = "random"):
        o = self.obs
        nk = o.syncs - 1
        m = n_columns(o)
        R = np.zeros((batch.n, m))
        sig_t = np.sqrt((o.hi - o.lo) ** 2 / 12.0 + (0.01 + 0.02 * o.mid) ** 2)
        trajs = trajectories(batch, offset=o.setup_time, durations=True)
        sc = batch.scalars
        page = o.page_size
        seq = pattern == "sequential"
        lam_page = self._write_rate_per_page(pattern, X) if seq else None
        mask = np.ones((batch.n, m), dtype=bool)
        col = {name: total_column(o, name) for name in TOTALS}
        per0 = 2 * nk + len(TOTALS)  # the first dirty-pages-rate period's column
        for s, (ts, ds, du) in enumerate(trajs):
            end_sim = float(sc["total_time_s"][s]) - np.nan_to_num(float(sc["downtime_s"][s])) + o.setup_time
            n_sim = ts.size  # syncs after the setup one
            penalty = 0.0
            kdep = nk  # the first sync whose count depends on a sequential sweep's phase
            for k in range(nk):
                if k < n_sim:
                    tk = ts[k]
                else:  # a sync the simulation never made
                    tk = end_sim + 0.05 * (k - n_sim + 1)
                R[s, k] = (tk - o.mid[k]) / sig_t[k]
                part = 0.0
                if seq and k < du.size:
                    # writes that land on pages the cursor has already written since the
                    # migration began (the sweep has come round) hit pages still pending or
                    # pages already sent depending on where the write cursor is against the
                    # send cursor — unknown from the log (the engine starts the cursor at the
                    # working set's first page): those pages a sync adds spread over [0, 2 x
                    # expected].  Writes of a sweep that has not come round land on pages
                    # untouched since the migration began: each one is a new page whatever
                    # the phase, no spread.  (The first pass's count is phase-free: every
                    # page written since the start counts once it has been sent.)
                    t_start = max(ts[k] - du[k] - o.setup_time, 0.0)
                    c0 = float(lam_page[s] * t_start)  # sweeps done at the phase start
                    c1 = float(lam_page[s] * (t_start + du[k]))
                    part = float(np.clip((c1 - max(c0, 1.0)) / max(c1 - c0, 1e-12), 0.0, 1.0))
                    if k >= 1 and part > 0 and kdep == nk:
                        kdep = k
                if np.isfinite(o.dirty[k]):
                    dk = ds[k] * page if k < n_sim and np.isfinite(ds[k]) else 0.0
                    sig = o.dirty_sigma[k]
                    if part > 0:
                        sig = math.hypot(sig, dk * part / math.sqrt(3.0))
                        penalty += 2.0 * math.log(sig / o.dirty_sigma[k])  # -2 log L of the wider σ
                    R[s, nk + k] = (dk - o.dirty[k]) / sig
            if kdep < nk:
                # what the sweep's phase decides: the syncs after it, what they add, the totals
                mask[s, kdep + 1 : nk] = False
                mask[s, nk + kdep : col["overhead_prior"]] = False
                mask[s, col["phase_penalty"]] = False
                for q, (_, last, _, _) in enumerate(o.periods):
                    if last - 2 >= kdep:
                        mask[s, per0 + q] = False
            R[s, col["syncs"]] = max(n_sim - nk, 0)  # syncs the log does not have
            T = float(sc["total_time_s"][s]) + o.setup_time
            R[s, col["total_time"]] = (T - o.total_time) / (0.01 * o.total_time + 0.03)
            B = float(sc["transferred_bytes"][s])
            R[s, col["transferred"]] = (B - o.transferred) / (0.01 * o.transferred + MIB)
            if o.completed and np.isfinite(o.downtime):
                d = float(sc["downtime_s"][s])
                d = d if np.isfinite(d) else 10.0 * (o.downtime + 0.05)
                R[s, col["downtime"]] = (d - o.downtime) / (0.1 * o.downtime + 0.005)
            R[s, col["phase_penalty"]] = math.sqrt(penalty)  # so that patterns compare by likelihood
            for q, (first, last, new_obs, sig) in enumerate(o.periods):
                # QEMU's dirty-pages-rate x the period: the pages syncs first … last newly set
                new = float(np.nansum(ds[first - 2 : min(last - 1, n_sim)])) * page
                R[s, per0 + q] = (new - new_obs) / sig
            if self.overhead_prior_ms:
                i = next((i for i, p in enumerate(self.params) if p.key == "policy.stop_overhead_ms"), None)
                if i is not None:
                    R[s, col["overhead_prior"]] = self.params[i].from_x(X[s, i]) / self.overhead_prior_ms
        groups = np.concatenate(
            [
                np.arange(nk),
                np.arange(nk),
                np.full(len(TOTALS), -1),
                [last - 2 for _, last, _, _ in o.periods],
            ]
        ).astype(int)
        if shift and self.shift is not None:
            R = R + self.shift
        self.phase_free = mask
        return R, groups

    def cost(self, pattern, X):
        R, _ = self.residuals(pattern, X)
        return np.sum(R**2, axis=1)

    def phase_free_cost(self, pattern, X):
        """The cost of what does not depend on a sequential sweep's phase (all of it for random
        writes): the residuals up to the first sync whose count the phase decides."""
        R, _ = self.residuals(pattern, X)
        return np.sum(np.where(self.phase_free, R, 0.0) ** 2, axis=1)
