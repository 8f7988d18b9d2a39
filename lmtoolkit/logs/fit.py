"""Fit the observed guest to a real migration log: the fluid engine matched round by round.

**What is known, what is fitted.**  The log gives the guest's RAM (``ram.total``), its page
size, its zero pages (``ram.duplicate``: pages sent as zero markers → ``vm.zero_fraction``),
the non-page bytes on the stream (``transferred − normal × (page + 8) − duplicate × 9`` →
``vm.device_state_mib``), with XBZRLE the delta size, and how far QEMU's pre-copy ran above
``max-bandwidth`` (the median rate between polls over the stated cap: ``cap_factor``, ~1 %).
The user's overrides state what they know about the run (``policy.max_bandwidth_mib_s=100
policy.downtime_limit_ms=300 policy.dirty_clear=sync`` …; a testbed record states its own
settings, which overrides may still change).  Everything else is estimated, unless an
override fixes it:

* the workload: ``workload.dirty_rate_pages_s`` (page-write events/s), ``workload.wss_mib``
  and ``workload.pattern`` (random and sequential are both fitted and compared by
  likelihood); with ``workload=hotcold`` also ``hot_mib`` and ``hot_fraction``, with
  ``workload=zipf`` ``zipf_s``;
* ``vm.zero_fraction`` when the log has no zero-page count;
* the effective link rate ``network.bandwidth_gbit_s`` (it sets an uncapped pre-copy and the
  stop-and-copy, which QEMU never caps) and the fixed switchover cost
  ``policy.stop_overhead_ms`` (with a weak prior towards 0: one downtime cannot tell a fixed
  cost from a rate: σ 10 ms).  A parameter the log does not determine (the link rate of a capped run
  that never switched over) keeps its start value and is reported as such.

**The match** is per round, not only the totals.  From the polls each dirty-bitmap sync ``k``
(``dirty-sync-count`` steps) is bracketed in time by the two polls around it; when exactly
one sync fell between two polls, the pages it added to the bitmap are measured as what the
bitmap grew by plus what was sent meanwhile; the first pass's (it ends in cheap zero pages)
come from QEMU's first ``dirty-pages-rate`` (``ram.c: migration_update_rates``: pages the
syncs of a period added, over the period).  Residuals: simulated minus observed sync times
(σ: the poll bracket, 2 % + 10 ms), pages added per sync (σ: 3 %, 0.5 MiB; for a sequential
sweep also the phase of the write cursor against the send cursor), one per simulated sync the
log does not have, total time (1 % + 30 ms), bytes (1 % + 1 MiB), downtime (10 % + 5 ms).

**The search**: per pattern a grid over dirty rate x working set (the rate is a scaled column
of :func:`lmtoolkit.engine.fluid.simulate_fluid_columns`), then
:func:`scipy.optimize.differential_evolution` around its best point with each generation one
vectorised fluid call (the objective is piecewise — the number of rounds jumps — so no
gradient polish).  ``engine="page"`` adds space mapping onto the page engine (the fluid
residuals shifted by page − fluid at the estimate, refitted, twice) and writes a FIT file
that runs the page engine.

**Uncertainty**: a bootstrap over rounds — the rounds' residual groups resampled with
replacement (the totals always count), each resample's estimate one Gauss–Newton step from
the fit (Jacobian by central differences: the "one-step" bootstrap), 200 resamples; the
totals, one observation each, get a parametric N(0, 1) draw per resample instead.  With
fewer than :data:`MIN_BOOTSTRAP_ROUNDS` rounds, likelihood slices instead (each parameter
over its range, the others at the fit; the values within Δχ² <= 1 x the residual variance,
sampled uniformly).  Each parameter gets a standard deviation and a 16–84 % interval;
:attr:`FitResult.samples` keeps the parameter sets ``lmtk whatif`` runs for its bands.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import ConfigError

GIB = 1024**3
MIB = 1024**2
HEADER = 8.0  # QEMU save_page_header: 8-byte offset|flags word per page
ZERO_PAGE = 9.0  # header + one byte per zero page

#: fewer rounds than this: no bootstrap over rounds, likelihood slices instead
MIN_BOOTSTRAP_ROUNDS = 4
#: a pattern whose -2 log L is within this of the best one is not ruled out by the log
PATTERN_DECISIVE = 4.0
#: statuses of a running migration that ship pages
ACTIVE = ("active", "postcopy-active", "device", "pre-switchover")


# -- observations -----------------------------------------------------------------------------------
@dataclass
class Observed:
    """What the fit matches: per sync ``k = 2 … K`` (index ``k - 2``) and the totals."""

    syncs: int  # K: dirty-sync-count at the end
    lo: np.ndarray  # sync time bracket (s)
    hi: np.ndarray
    dirty: np.ndarray  # bytes the sync added to the bitmap (NaN: not measurable)
    dirty_sigma: np.ndarray
    total_time: float
    transferred: float
    downtime: float  # NaN unless completed
    completed: bool
    converged: bool
    setup_time: float
    precopy_rate: float  # bytes/s while pre-copying (median over polls)
    page_size: float
    memory_bytes: float
    end_precopy: float  # when the VM stopped (total_time − downtime)
    period_end: int = 0  # sync at which QEMU first reported dirty-pages-rate (0: none)
    period_new: float = math.nan  # bytes the syncs 2 … period_end added (rate x period)
    period_sigma: float = math.nan
    sample_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_remaining: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_transferred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_syncs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def mid(self):
        return 0.5 * (self.lo + self.hi)


def _f(ds, k, default=math.nan) -> float:
    return float(ds[k].item()) if k in ds else default


def observe(log: xr.Dataset, delta_pages: bool = False) -> Observed:
    """The per-round observations of a MigrationLog (:mod:`.readers`).

    ``delta_pages``: XBZRLE was on, so from the third phase on (once the cache holds pages) a
    page costs fewer bytes than a page: the bytes sent no longer count pages, and the pages
    those syncs add are not measured."""
    src = log.attrs.get("source", "log")
    t = np.asarray(log.sample_time.values, float)
    st = np.asarray(log.sample_status.values).astype(str)
    tr = np.asarray(log.sample_transferred.values, float)
    rem = np.asarray(log.sample_remaining.values, float)
    c = np.asarray(log.sample_dirty_sync_count.values, float)
    if not np.isfinite(c).any():
        raise ConfigError(
            "LOG",
            src,
            "",
            message=f"{src}: the log has no dirty-sync-count "
            "(ram.dirty-sync-count / memory_iteration, QEMU >= 2.1): the rounds "
            "cannot be told apart, nothing to fit",
        )
    # forward-fill missing counts (a poll without RAM statistics)
    c = np.maximum.accumulate(np.where(np.isfinite(c), c, 0.0))
    completed = bool(log.completed.item())
    postcopy = bool(log.postcopy.item()) if "postcopy" in log else False
    K = int(_f(log, "dirty_sync_count", c.max()))
    K = max(K, int(c.max()))
    total = _f(log, "total_time")
    down = _f(log, "downtime") if completed else math.nan
    setup = _f(log, "setup_time", 0.0)
    setup = setup if np.isfinite(setup) else 0.0
    end_pre = total - (down if np.isfinite(down) else 0.0)
    page = _f(log, "page_size", 4096.0)
    lo, hi, dirty, dsig = [], [], [], []
    for k in range(2, K + 1):
        before = np.flatnonzero(c < k)
        after = np.flatnonzero(c >= k)
        a = t[before[-1]] if before.size else 0.0
        b = t[after[0]] if after.size else total
        if completed and not postcopy and k == K:
            a, b = end_pre - 0.005, end_pre + 0.005  # the switchover sync
        elif completed and not postcopy:
            b = min(b, end_pre)
            a = min(a, b)
        lo.append(a)
        hi.append(b)
        d, s = math.nan, math.nan
        if before.size and after.size and k < K and not (delta_pages and k >= 4):
            i, j = before[-1], after[0]
            one = (
                c[j] == k
                and st[j] in ACTIVE
                and st[i] in ACTIVE + ("setup",)
                and np.isfinite(rem[j])
                and np.isfinite(rem[i])
                and np.isfinite(tr[j] - tr[i])
            )
            if one and rem[j] > 0:
                # pages the sync added to the bitmap: what the bitmap grew by plus what was
                # sent meanwhile (exact when the pages sent are normal pages)
                sent = max(tr[j] - tr[i], 0.0) * page / (page + HEADER)
                d = rem[j] - rem[i] + sent
                s2 = (0.03 * d) ** 2 + (0.5 * MIB) ** 2
                if k == 2:
                    # the first pass ends in zero pages, which cost almost no bytes: the
                    # leftover before the sync is only known to lie in [0, remaining]
                    d = rem[j] + 0.5 * sent - 0.5 * rem[i]
                    s2 += (rem[i] / math.sqrt(12)) ** 2 + (sent / math.sqrt(12)) ** 2
                s = math.sqrt(s2)
        dirty.append(d)
        dsig.append(s)
    # pre-copy rate: the median over consecutive polls of a running migration (robust to the
    # counter's jitter around syncs and to the zero-page stretches of the first pass)
    act = np.flatnonzero(np.isin(st, ACTIVE))
    rates = [
        (tr[j] - tr[i]) / (t[j] - t[i])
        for i, j in zip(act[:-1], act[1:])
        if j == i + 1 and t[j] > t[i] and np.isfinite(tr[j] - tr[i])
    ]
    rate = float(np.median(rates)) if len(rates) >= 3 else math.nan
    if not np.isfinite(rate) or rate <= 0:
        pre_bytes = _f(log, "transferred") - np.nan_to_num(_f(log, "downtime_bytes"))
        rate = pre_bytes / max(end_pre - setup, 1e-3)
    # QEMU's dirty-pages-rate (ram.c: migration_update_rates) is the pages the syncs of a
    # period of >= 1 s added to the bitmap over the period's length; the first period runs
    # from the setup sync, so rate x (sync time - setup) counts the first pass's new pages
    # exactly, where the remaining bytes cannot (the pass ends in cheap zero pages)
    period_end, period_new, period_sigma = 0, math.nan, math.nan
    dpr = np.asarray(log.sample_dirty_pages_rate.values, float) if "sample_dirty_pages_rate" in log else None
    if dpr is not None and np.isfinite(dpr).any():
        nz = np.flatnonzero(np.isfinite(dpr) & (dpr > 0))
        if nz.size and nz[0] > 0:
            j = nz[0]
            kb = int(c[j])
            if c[j] - c[j - 1] == 1 and 2 <= kb < K and st[j] in ACTIVE:
                i = kb - 2
                w = hi[i] - lo[i]
                span = 0.5 * (lo[i] + hi[i]) - setup
                if span > 0:
                    period_end = kb
                    period_new = dpr[j] * span * page
                    period_sigma = math.sqrt(
                        (dpr[j] * page * w) ** 2 / 12 + (0.01 * period_new) ** 2 + (0.25 * MIB) ** 2
                    )
                    if kb == 2:
                        dirty[0], dsig[0] = math.nan, math.nan  # measured better here
    conv = completed and not postcopy
    shown = np.isin(st, ACTIVE + ("completed",))  # setup polls report nothing yet
    return Observed(
        syncs=K,
        lo=np.array(lo),
        hi=np.array(hi),
        dirty=np.array(dirty),
        dirty_sigma=np.array(dsig),
        total_time=total,
        transferred=_f(log, "transferred"),
        downtime=down,
        completed=completed,
        converged=conv,
        setup_time=setup,
        precopy_rate=rate,
        page_size=page,
        memory_bytes=_f(log, "ram_total"),
        end_precopy=end_pre,
        period_end=period_end,
        period_new=period_new,
        period_sigma=period_sigma,
        sample_time=t[shown],
        sample_remaining=rem[shown],
        sample_transferred=tr[shown],
        sample_syncs=c[shown],
    )


# -- the simulated trajectory ---------------------------------------------------------------------------
def trajectories(batch, offset: float = 0.0, durations: bool = False):
    """Per scenario: (sync times, pages each sync added to the bitmap) from a
    :class:`~lmtoolkit.engine.common.BatchResult` (syncs ``k = 2 …``; setup offset added)."""
    from ..records import ROUND_KINDS

    pre, stop = ROUND_KINDS.index("precopy"), ROUND_KINDS.index("stop")
    kinds = batch.round_kind
    start, dur = batch.round["round_start"], batch.round["round_duration"]
    pad = np.full((batch.n, 1), np.nan)  # a record may end in a pre-copy round
    dirty = np.hstack([batch.round["round_dirty_pages"], pad])
    pages = np.hstack([batch.round["round_pages"], pad])
    out = []
    for s in range(batch.n):
        kd = kinds[s]
        p = np.flatnonzero(kd == pre)
        stops = np.flatnonzero(kd == stop)
        ends = start[s, p] + dur[s, p]
        comp = bool(batch.scalars["completed"][s])
        # pages the sync at the end of phase j added: bitmap after it minus pages still pending
        nxt = dirty[s, p + 1] - (dirty[s, p] - pages[s, p]) if p.size else np.zeros(0)
        du = dur[s, p]
        if not comp:
            # the phase cut by the timeout ends in no sync
            tmo = float(batch.scalars["total_time_s"][s])
            keep = ends < tmo - 1e-9
            ends, nxt, du = ends[keep], nxt[keep], du[keep]
        times = list(ends + offset)
        d = list(nxt)
        if comp and stops.size:
            times.append(float(start[s, stops[0]]) + offset)
            d.append(math.nan)
        if durations:
            out.append((np.array(times), np.array(d, float), np.asarray(du, float)))
        else:
            out.append((np.array(times), np.array(d, float)))
    return out


# -- parameters ---------------------------------------------------------------------------------------
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

    def scenario(self, pattern: str, x: np.ndarray, engine: str = "page", seed: int = 0):
        """The scenario of one parameter row (for the page engine)."""
        from ..engine.fluid import with_value

        scn = self.templates[pattern]
        for k, v in self.fixed.items():
            scn = with_value(scn, k, v)
        for i, p in enumerate(self.params):
            scn = with_value(scn, p.key, float(p.from_x(x[i])))
        return dataclasses.replace(scn, engine=engine, seed=seed)

    def page_residuals(self, pattern: str, x: np.ndarray, seeds=(0, 1, 2)):
        """Residuals of the page engine at ``x`` (mean over ``seeds``), without the shift."""
        from ..engine import run_batch
        from ..engine.common import BatchResult

        scns = [self.scenario(pattern, x, "page", s) for s in seeds]
        self.page_evals += len(scns)
        batch = run_batch(scns)
        if batch.n_rounds < self.round_detail + 2:  # the page engine keeps what it saw
            wide = BatchResult(batch.n, self.round_detail + 2)
            wide.scalars = batch.scalars
            for k in batch.round:
                wide.round[k][:, : batch.n_rounds] = batch.round[k]
            wide.round_kind[:, : batch.n_rounds] = batch.round_kind
            batch = wide
        R, _ = self.residuals_of(batch, np.tile(x, (len(seeds), 1)), shift=False, pattern=pattern)
        return R.mean(axis=0)

    def simulate(self, pattern: str, X: np.ndarray):
        """Simulate parameter rows ``X`` (internal space, (N, p)) for one pattern."""
        from ..engine.fluid import simulate_fluid_columns

        X = np.atleast_2d(X)
        cols = {p.key: p.from_x(X[:, i]) for i, p in enumerate(self.params)}
        for k, v in self.fixed.items():
            cols[k] = np.full(X.shape[0], v)
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
        m = 2 * nk + 7
        R = np.zeros((batch.n, m))
        sig_t = np.sqrt((o.hi - o.lo) ** 2 / 12.0 + (0.01 + 0.02 * o.mid) ** 2)
        trajs = trajectories(batch, offset=o.setup_time, durations=True)
        sc = batch.scalars
        page = o.page_size
        seq = pattern == "sequential"
        lam_page = self._write_rate_per_page(pattern, X) if seq else None
        for s, (ts, ds, du) in enumerate(trajs):
            end_sim = float(sc["total_time_s"][s]) - np.nan_to_num(float(sc["downtime_s"][s])) + o.setup_time
            n_sim = ts.size  # syncs after the setup one
            penalty = 0.0
            for k in range(nk):
                if k < n_sim:
                    tk = ts[k]
                else:  # a sync the simulation never made
                    tk = end_sim + 0.05 * (k - n_sim + 1)
                R[s, k] = (tk - o.mid[k]) / sig_t[k]
                if np.isfinite(o.dirty[k]):
                    dk = ds[k] * page if k < n_sim and np.isfinite(ds[k]) else 0.0
                    sig = o.dirty_sigma[k]
                    if seq and k < du.size:
                        # once the sweep has come round (the cursor passed the whole working
                        # set since the migration began) its writes land on pages still
                        # pending or on pages already sent depending on where the write cursor
                        # is against the send cursor — unknown from the log (the engine starts
                        # the cursor at the working set's first page): the pages a sync adds
                        # spread over [0, 2 x expected]
                        t_start = ts[k] - du[k] - o.setup_time
                        part = min(1.0, float(lam_page[s] * max(t_start, 0.0)))
                        sig = math.hypot(sig, dk * part / math.sqrt(3.0))
                        penalty += 2.0 * math.log(sig / o.dirty_sigma[k])  # -2 log L of the wider σ
                    R[s, nk + k] = (dk - o.dirty[k]) / sig
            R[s, 2 * nk] = max(n_sim - nk, 0)  # syncs the log does not have
            T = float(sc["total_time_s"][s]) + o.setup_time
            R[s, 2 * nk + 1] = (T - o.total_time) / (0.01 * o.total_time + 0.03)
            B = float(sc["transferred_bytes"][s])
            R[s, 2 * nk + 2] = (B - o.transferred) / (0.01 * o.transferred + MIB)
            if o.completed and np.isfinite(o.downtime):
                d = float(sc["downtime_s"][s])
                d = d if np.isfinite(d) else 10.0 * (o.downtime + 0.05)
                R[s, 2 * nk + 3] = (d - o.downtime) / (0.1 * o.downtime + 0.005)
            R[s, 2 * nk + 6] = math.sqrt(penalty)  # so that patterns compare by likelihood
            if o.period_end:
                kb = o.period_end - 1  # syncs 2 … period_end
                new = float(np.nansum(ds[: min(kb, n_sim)])) * page
                R[s, 2 * nk + 5] = (new - o.period_new) / o.period_sigma
            if self.overhead_prior_ms:
                i = next((i for i, p in enumerate(self.params) if p.key == "policy.stop_overhead_ms"), None)
                if i is not None:
                    R[s, 2 * nk + 4] = self.params[i].from_x(X[s, i]) / self.overhead_prior_ms
        groups = np.concatenate(
            [
                np.arange(nk),
                np.arange(nk),
                np.full(5, -1),
                [max(o.period_end - 2, 0) if o.period_end else -1],
                [-1],
            ]
        )
        if shift and self.shift is not None:
            R = R + self.shift
        return R, groups

    def cost(self, pattern, X):
        R, _ = self.residuals(pattern, X)
        return np.sum(R**2, axis=1)


# -- set-up -------------------------------------------------------------------------------------------
def split_override(o: str):
    from ..compose import split_override as sp

    return sp(o)


def _user_keys(overrides) -> tuple[set, dict]:
    """Value keys the user fixed, and group choices."""
    from ..compose import GROUPS

    keys, groups = set(), {}
    for o in overrides:
        _, k, v = split_override(str(o))
        if "." not in k and k in GROUPS:
            groups[k] = v
        else:
            keys.add(k)
    return keys, groups


def log_overrides(log: xr.Dataset, overrides=()) -> tuple[list[str], dict]:
    """Overrides the log itself implies (RAM, page size, zero share, non-page bytes, XBZRLE
    delta, the settings a testbed record states) and a dict of what was derived, for the report."""
    o, info = [], {}
    page = _f(log, "page_size", 4096.0)
    ram = _f(log, "ram_total")
    pages = ram / page
    o.append(f"vm.memory_gib={ram / GIB!r}")
    if page != 4096.0:
        o.append(f"vm.page_size_kib={int(page // 1024)}")
    dup, normal = _f(log, "ram_duplicate"), _f(log, "ram_normal")
    if np.isfinite(dup) and pages > 0:
        zf = float(min(max(dup / pages, 0.0), 1.0))
        o.append(f"vm.zero_fraction={zf!r}")
        info["vm.zero_fraction"] = zf
    tr = _f(log, "transferred")
    xb_b, xb_p = _f(log, "xbzrle_bytes"), _f(log, "xbzrle_pages")
    if bool(log.completed.item()) and np.isfinite(normal) and np.isfinite(dup):
        other = tr - normal * (page + HEADER) - dup * ZERO_PAGE
        if np.isfinite(xb_b) and xb_p > 0:
            other -= xb_b  # XBZRLE pages are counted apart from normal ones
        if other > 0 and np.isfinite(other):
            info["vm.device_state_mib"] = float(other / MIB)
            o.append(f"vm.device_state_mib={other / MIB!r}")
    if np.isfinite(xb_p) and xb_p > 0:
        ratio = float(min(max((xb_b / xb_p - HEADER - 3.0) / page, 0.0), 1.0))
        o.append(f"policy.xbzrle_delta_ratio={ratio!r}")
        info["policy.xbzrle_delta_ratio"] = ratio
    settings = json.loads(log.attrs.get("lmt_settings", "[]") or "[]")
    return o + list(settings), info


def _nice(v: float) -> float:
    return float(f"{v:.6g}")


@dataclass
class FitResult:
    """A fitted guest: the resolved config, the parameters, their bootstrap and the match."""

    cfg: object  # resolved DictConfig of the fitted run
    log: xr.Dataset
    obs: Observed
    params: list[Param]
    values: dict  # key -> fitted value
    samples: np.ndarray  # (B, p) bootstrap parameter sets (natural units)
    pattern: str
    fixed: dict
    quality: dict
    trajectory: dict  # fitted sync times and dirty bytes
    overrides: list[str]  # the user's
    log_overrides: list[str]
    derived: dict
    elapsed_s: float
    alternatives: dict  # pattern -> cost
    alternative_values: dict = field(default_factory=dict)  # pattern -> its best parameters
    engine: str = "fluid"
    cap_factor: float = 1.0
    unidentified: list = field(default_factory=list)  # keys the log does not determine
    uncertainty: str = "bootstrap over rounds"

    def stderr(self) -> dict:
        return {p.key: float(np.std(self.samples[:, i])) for i, p in enumerate(self.params)}

    def interval(self, q=(16, 84)) -> dict:
        return {
            p.key: tuple(float(x) for x in np.percentile(self.samples[:, i], q))
            for i, p in enumerate(self.params)
        }

    def summary(self) -> str:
        """A readable report: parameters with uncertainty, fit quality, per-round match."""
        lines = [
            f"fit of {self.log.attrs.get('source', '')} ({self.log.attrs.get('lmt_log_format', '')}): "
            f"{len(self.params)} parameters, pattern {self.pattern}, {self.quality['evaluations']} "
            f"simulations in {self.elapsed_s:.2f} s"
        ]
        lines.append(
            f"  {'parameter':32s} {'value':>12s} {'± sd':>10s}   16-84 % ({self.uncertainty}, "
            f"{self.samples.shape[0]} samples)"
        )
        iv, sd = self.interval(), self.stderr()
        for p in self.params:
            v = self.values[p.key]
            if p.key in self.unidentified:
                lines.append(f"  {p.key:32s} {v:12.5g}   not determined by this log: kept its start value")
                continue
            lines.append(
                f"  {p.key:32s} {v:12.5g} {sd[p.key]:10.3g}   [{iv[p.key][0]:.5g}, {iv[p.key][1]:.5g}]"
                f" {p.units}"
            )
        for k, v in self.derived.items():
            lines.append(f"  {k:32s} {v:12.5g}   (from the log)")
        q = self.quality
        lines.append(
            f"  fit quality: rms normalised residual {q['rms']:.2f}; sync times rms {q['sync_rms_s'] * 1000:.0f} ms; "
            f"dirty bytes at syncs rms {q['dirty_rms_rel'] * 100:.1f} %; total time {q['total_time_rel'] * 100:+.1f} %, "
            f"bytes {q['transferred_rel'] * 100:+.1f} %, syncs {q['syncs_sim']} vs {q['syncs_obs']} observed"
        )
        if self.alternatives:
            lines.append(
                "  pattern cost (-2 log L): "
                + ", ".join(f"{k} {v:.1f}" for k, v in self.alternatives.items())
            )
            for pat, vals in self.alternative_values.items():
                gap = self.alternatives[pat] - self.alternatives[self.pattern]
                if pat != self.pattern and gap < PATTERN_DECISIVE:
                    lines.append(
                        f"  the pattern is not decided by this log (Δ {gap:.1f} < {PATTERN_DECISIVE:g}); "
                        f"as {pat}: "
                        + ", ".join(
                            f"{k.split('.')[-1]} {v:.5g}"
                            for k, v in vals.items()
                            if k.startswith("workload.")
                        )
                    )
        lines.append("  sync  observed time   fitted    observed dirty MiB  fitted")
        for k in range(self.obs.syncs - 1):
            ft = self.trajectory["sync_time"][k] if k < len(self.trajectory["sync_time"]) else math.nan
            fd = self.trajectory["dirty"][k] if k < len(self.trajectory["dirty"]) else math.nan
            od = self.obs.dirty[k]
            lines.append(
                f"  {k + 2:4d}  {self.obs.lo[k]:6.2f}-{self.obs.hi[k]:<6.2f}  {ft:7.2f}   "
                f"{od / MIB if np.isfinite(od) else float('nan'):14.1f}  {fd / MIB:9.1f}"
            )
        return "\n".join(lines)


def _templates(cfg, patterns):
    from omegaconf import OmegaConf

    from ..runner import build_scenario

    out = {}
    for pat in patterns:
        c = cfg.copy()
        OmegaConf.set_struct(c, False)
        if "pattern" in c.workload:
            c.workload.pattern = pat
        out[pat] = build_scenario(c)
    return out


def fit_log(
    log,
    overrides=(),
    bootstrap: int = 200,
    seed: int = 0,
    workload: str | None = None,
    engine: str = "fluid",
    progress=None,
) -> FitResult:
    """Fit the guest of ``log`` (a path or a MigrationLog) under the user's ``overrides``."""
    from ..compose import as_overrides, compose
    from .readers import read_log

    t0 = time.perf_counter()
    if engine not in ("page", "fluid"):
        raise ConfigError(
            "--engine", engine, "fluid (default) or page (fluid search + page-engine correction)"
        )
    if not isinstance(log, xr.Dataset):
        log = read_log(log)
    user = as_overrides(overrides)
    if not bool(log.completed.item()) and log.attrs.get("lmt_status") == "failed":
        raise ConfigError(
            "LOG",
            log.attrs.get("source"),
            "",
            message=f"{log.attrs.get('source')}: "
            "the migration failed; a failed migration says little about the guest",
        )
    from_log, derived = log_overrides(log, user)
    ukeys, ugroups = _user_keys(user)
    base = ["engine=fluid"]
    if "workload" not in ugroups:
        base.append(f"workload={workload or 'uniform'}")
    if "network" not in ugroups and "network.bandwidth_gbit_s" not in ukeys:
        base.append("network=10gbe")
    cfg = compose(base + from_log + user)  # the one composition
    xb = _f(log, "xbzrle_pages")
    obs = observe(log, delta_pages=bool(cfg.policy.get("xbzrle", False)) or (np.isfinite(xb) and xb > 0))
    if cfg.workload.name not in ("uniform", "hotcold", "zipf", "idle"):
        raise ConfigError(
            "workload",
            cfg.workload.name,
            "",
            message=(
                f"workload={cfg.workload.name}: lmtk fit fits uniform (default), hotcold or zipf workloads"
            ),
        )
    if cfg.workload.name == "idle":
        raise ConfigError(
            "workload",
            "idle",
            "",
            message="workload=idle has nothing to fit; use "
            "workload=uniform (the default) and read the fitted rate",
        )
    derived = {k: v for k, v in derived.items() if k not in ukeys}
    page = obs.page_size
    mem_mib = obs.memory_bytes / MIB
    cap = cfg.policy.get("max_bandwidth_mib_s", None)
    cap_rate = float(cap) * MIB if cap is not None else math.inf
    eff = float(cfg.network.efficiency)
    precopy = obs.precopy_rate
    link_lo = 0.97 * precopy  # the link carried the pre-copy the log shows
    params: list[Param] = []
    fixed = {}
    # QEMU's rate limiter lets a little more through than max-bandwidth (the budget of a
    # 100 ms window is checked after a page is queued): the pre-copy rate measured in the log
    # over the stated cap is the effective cap; ``lmtk whatif`` applies the same factor
    # a candidate still migrating long after the observed run ended is wrong anyway: stop
    # simulating it there (the residuals see a timeout), instead of running to the timeout
    tmo = float(cfg.policy.get("timeout_s", 600.0))
    if obs.completed:
        fixed["policy.timeout_s"] = min(tmo, 1.25 * obs.total_time + 1.0)
    if int(cfg.policy.get("max_rounds", 0) or 0) > obs.syncs + 12:
        fixed["policy.max_rounds"] = obs.syncs + 12  # likewise for rounds
    cap_factor = 1.0
    if np.isfinite(cap_rate) and 0.9 <= precopy / cap_rate <= 1.1:
        cap_factor = float(precopy / cap_rate)
        fixed["policy.max_bandwidth_mib_s"] = float(cap) * cap_factor
        derived["cap_factor"] = cap_factor

    def add(p: Param):
        if p.key not in ukeys:
            params.append(p)

    rate_hi = max(200.0 * precopy / page, 1e5)
    add(Param("workload.dirty_rate_pages_s", 1.0, rate_hi, True, 1000.0, "dirty rate", "pages/s"))
    add(
        Param(
            "workload.wss_mib", max(page * 16 / MIB, 0.25), mem_mib, True, mem_mib / 4, "working set", "MiB"
        )
    )
    if cfg.workload.name == "hotcold":
        add(
            Param(
                "workload.hot_mib", max(page * 16 / MIB, 0.25), mem_mib, True, mem_mib / 8, "hot set", "MiB"
            )
        )
        add(Param("workload.hot_fraction", 0.5, 0.999, False, 0.9, "hot share of writes", "1"))
    if cfg.workload.name == "zipf":
        add(Param("workload.zipf_s", 0.2, 3.0, False, 1.0, "Zipf exponent", "1"))
    if "vm.zero_fraction" not in derived and "vm.zero_fraction" not in ukeys:
        add(Param("vm.zero_fraction", 0.0, 0.98, False, 0.3, "zero share", "1"))
    # link: an uncapped pre-copy shows it directly; else the downtime does
    db = _f(log, "downtime_bytes")
    if np.isfinite(cap_rate) and precopy < 0.95 * cap_rate * 0.9:
        link0 = precopy  # the cap does not bind
    elif np.isfinite(cap_rate):
        link_cfg = float(cfg.network.bandwidth_gbit_s) * 1e9 / 8 * eff  # the config's link
        link0 = (
            db / max(obs.downtime, 1e-3)
            if np.isfinite(db) and np.isfinite(obs.downtime) and db > 0
            else link_cfg
        )
        link0 = max(link0, cap_rate * 1.05)
    else:
        link0 = precopy
    gbit = lambda r: r * 8 / 1e9 / eff  # noqa: E731  payload bytes/s -> line rate
    add(
        Param(
            "network.bandwidth_gbit_s",
            gbit(link_lo),
            max(gbit(link0) * 50, gbit(link_lo) * 2),
            True,
            gbit(link0),
            "link rate (line)",
            "Gbit/s",
        )
    )
    overhead_prior = None
    if "policy.stop_overhead_ms" not in ukeys and obs.completed:
        add(Param("policy.stop_overhead_ms", 0.0, 500.0, False, 0.0, "switchover cost", "ms"))
        overhead_prior = 10.0
    if not params:
        raise ConfigError(
            "overrides",
            user,
            "",
            message="every parameter the fit estimates is fixed by an override: nothing to fit",
        )
    patterns = ["random", "sequential"]
    if "workload.pattern" in ukeys:
        patterns = [str(cfg.workload.pattern)]
    templates = _templates(cfg, patterns)
    prob = Problem(
        obs=obs,
        params=params,
        templates=templates,
        fixed=fixed,
        overhead_prior_ms=overhead_prior,
        round_detail=max(64, obs.syncs + 8),
    )
    # 1. a coarse grid over dirty rate x working set per pattern (the rate is a scaled column:
    # one scenario per working set), then differential evolution around its best point, each
    # generation one vectorised fluid call
    lo_x = np.array([p.to_x(p.lo) for p in params])
    hi_x = np.array([p.to_x(p.hi) for p in params])
    x0 = np.array([p.to_x(p.init) for p in params])
    keys = [p.key for p in params]
    gi = [i for i, k in enumerate(keys) if k in ("workload.dirty_rate_pages_s", "workload.wss_mib")]
    results, grid_best = {}, {}
    for pat in patterns:
        top = x0[None, :]
        if gi:
            # the rate is a scaled column (no scenario per value): a fine grid costs little,
            # and the first pass's new pages pin it to a few per cent
            vals = [
                np.linspace(lo_x[i], hi_x[i], 96 if keys[i] == "workload.dirty_rate_pages_s" else 10)
                for i in gi
            ]
            mesh = np.meshgrid(*vals, indexing="ij")
            X = np.tile(x0, (mesh[0].size, 1))
            for j, i in enumerate(gi):
                X[:, i] = mesh[j].ravel()
            cg = prob.cost(pat, X)
            order = np.argsort(cg)
            top = X[order[:16]]  # the best points: often more than one valley
            grid_best[pat] = (float(cg[order[0]]), top)
        else:
            grid_best[pat] = (float(prob.cost(pat, top)[0]), top)
    cbest = min(c for c, _ in grid_best.values())
    for pat, (cg, top) in grid_best.items():
        if cg > 5 * cbest + 50:  # a pattern the grid already rules out
            results[pat] = (cg, top[0])
            continue
        # the search box spans the grid's best points (every valley among them) and a margin
        box_lo, box_hi = lo_x.copy(), hi_x.copy()
        if gi:
            box_lo[gi] = np.maximum(lo_x[gi], top[:, gi].min(axis=0) - 0.6)
            box_hi[gi] = np.minimum(hi_x[gi], top[:, gi].max(axis=0) + 0.6)
        xs, c = _evolve(prob, pat, box_lo, box_hi, seed=seed, popsize=8, maxiter=25, init=top)
        results[pat] = (c, xs)
        if progress:
            progress(f"{pat}: cost {c:.1f}")
    pattern = min(results, key=lambda k: results[k][0])
    cmin, xhat = results[pattern]
    # 2. space mapping onto the page engine (engine="page"): the fluid engine mixes the
    # regions a pass sends; the page engine sends in address order, which changes how many
    # pending pages a pass leaves (and so what the next sync adds) by up to ~10 %.  Shift the
    # fluid residuals by (page − fluid) at the estimate and refit near it, twice.
    if engine == "page":
        width = np.array([0.35 if p.log else 0.1 * (p.hi - p.lo) for p in params])
        for _ in range(2):
            prob.shift = None
            rf = prob.residuals(pattern, xhat[None, :])[0][0]
            # entries the engines cannot compare (a sync one of them does not make) are capped
            prob.shift = np.clip(prob.page_residuals(pattern, xhat) - rf, -4.0, 4.0)
            xhat, cmin = _evolve(
                prob,
                pattern,
                np.maximum(lo_x, xhat - width),
                np.minimum(hi_x, xhat + width),
                seed=seed + 1,
                popsize=8,
                maxiter=15,
                x0=xhat,
            )
        if progress:
            progress(f"page-engine correction: cost {cmin:.1f}")
    # 3. a parameter the log does not determine (the cost does not change with it: the link
    # rate of a capped run that never switched over) keeps its start value, the config's
    J, r0, groups = _jacobian(prob, pattern, xhat)
    info = np.sum(J**2, axis=0)
    unidentified = [p.key for i, p in enumerate(params) if info[i] < 1e-3]
    if unidentified:
        xtry = xhat.copy()
        for i, p in enumerate(params):
            if p.key in unidentified:
                xtry[i] = p.to_x(p.init)
        if float(prob.cost(pattern, xtry[None, :])[0]) <= cmin + 0.5:
            xhat = xtry
            J, r0, groups = _jacobian(prob, pattern, xhat)
        else:
            unidentified = []
    # 4. bootstrap over rounds (one-step)
    samples = _bootstrap(prob, pattern, xhat, bootstrap, seed, jac=(J, r0, groups))
    for i, p in enumerate(params):
        if p.key in unidentified:
            samples[:, i] = xhat[i]
    # 5. the fitted run (in the fit's engine) and its quality
    if engine == "page":
        from ..engine import run_batch

        batch = run_batch([prob.scenario(pattern, xhat, "page", 0)])
        R = prob.page_residuals(pattern, xhat, seeds=(0, 1, 2))[None, :]
    else:
        R, _ = prob.residuals(pattern, xhat[None, :])
        batch = prob.simulate(pattern, xhat[None, :])
    ((ts, ds),) = trajectories(batch, offset=obs.setup_time)
    sc = batch.scalars
    nk = obs.syncs - 1
    n = min(nk, ts.size)
    sync_err = ts[:n] - obs.mid[:n]
    okd = np.isfinite(obs.dirty[:n]) & np.isfinite(ds[:n])
    drel = (ds[:n][okd] * page - obs.dirty[:n][okd]) / obs.dirty[:n][okd]
    quality = {
        "cost": float(cmin),
        "rms": float(np.sqrt(np.mean(R[0] ** 2))),
        "sync_rms_s": float(np.sqrt(np.mean(sync_err**2))) if n else math.nan,
        "dirty_rms_rel": float(np.sqrt(np.mean(drel**2))) if drel.size else math.nan,
        "total_time_rel": float((sc["total_time_s"][0] + obs.setup_time) / obs.total_time - 1),
        "transferred_rel": float(sc["transferred_bytes"][0] / obs.transferred - 1),
        "downtime_s": float(sc["downtime_s"][0]),
        "downtime_obs_s": float(obs.downtime),
        "syncs_sim": int(ts.size + 1),
        "syncs_obs": int(obs.syncs),
        "converged_sim": bool(sc["converged"][0]),
        "converged_obs": bool(obs.converged),
        "evaluations": int(prob.evals),
        "page_evaluations": int(prob.page_evals),
    }
    values = {p.key: _nice(float(p.from_x(xhat[i]))) for i, p in enumerate(params)}
    nat = np.column_stack([p.from_x(samples[:, i]) for i, p in enumerate(params)])
    # the fitted config: the composed one with the fitted values (no second composition)
    from omegaconf import OmegaConf

    fitted = cfg.copy()
    OmegaConf.set_struct(fitted, False)
    kept = {
        k: _nice(v) for k, v in fixed.items() if k not in ("policy.timeout_s", "policy.max_rounds")
    }  # the fit's own limits
    for k, v in {**kept, **values}.items():
        OmegaConf.update(fitted, k, v, merge=False)
    if "pattern" in fitted.workload:
        fitted.workload.pattern = pattern
    fitted.engine = engine
    traj = {"sync_time": ts.tolist(), "dirty": (ds * page).tolist(), "remaining_t": [], "remaining": []}
    traj["remaining_t"], traj["remaining"] = _remaining_curve(batch, obs.setup_time, page)
    return FitResult(
        cfg=fitted,
        log=log,
        obs=obs,
        params=params,
        values=values,
        samples=nat,
        pattern=pattern,
        fixed=fixed,
        quality=quality,
        trajectory=traj,
        overrides=user,
        log_overrides=from_log,
        derived=derived,
        elapsed_s=time.perf_counter() - t0,
        alternatives={k: v[0] for k, v in results.items()} if len(results) > 1 else {},
        alternative_values={
            k: {p.key: _nice(float(p.from_x(v[1][i]))) for i, p in enumerate(params)}
            for k, v in results.items()
        }
        if len(results) > 1
        else {},
        engine=engine,
        cap_factor=cap_factor,
        unidentified=unidentified,
        uncertainty="bootstrap over rounds"
        if obs.syncs - 1 >= MIN_BOOTSTRAP_ROUNDS
        else "likelihood slices, Δχ² <= 1: too few rounds to resample",
    )


def _evolve(prob: Problem, pattern: str, lo, hi, seed=0, popsize=16, maxiter=45, x0=None, init=None):
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
        fill = qmc.scale(qmc.Sobol(lo.size, seed=seed).random(max(n - given.shape[0], 1)), lo + eps, hi - eps)
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


def _remaining_curve(batch, offset, page):
    """The fitted dirty bytes left over time (piecewise linear through each phase)."""
    from ..records import ROUND_KINDS

    kd = batch.round_kind[0]
    t, y = [], []
    for j in np.flatnonzero(kd >= 0):
        s = float(batch.round["round_start"][0, j]) + offset
        d = float(batch.round["round_duration"][0, j])
        p0 = float(batch.round["round_dirty_pages"][0, j])
        k = float(batch.round["round_pages"][0, j])
        if not np.isfinite(s) or not np.isfinite(d):
            continue
        if ROUND_KINDS[kd[j]] == "postcopy":
            continue
        t += [s, s + d]
        y += [p0 * page, max(p0 - k, 0.0) * page]
    return t, y


def _jacobian(prob: Problem, pattern: str, xhat: np.ndarray):
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


def _bootstrap(prob: Problem, pattern: str, xhat: np.ndarray, B: int, seed: int, jac=None) -> np.ndarray:
    """One-step bootstrap over rounds: resampled round weights, one Gauss–Newton step each."""
    p = xhat.size
    if B <= 0:
        return xhat[None, :].copy()
    J, r0, groups = jac if jac is not None else _jacobian(prob, pattern, xhat)
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
    nk = (r0.size - 7) // 2
    wild = np.zeros(r0.size, dtype=bool)
    wild[2 * nk + 1 : 2 * nk + 5] = True
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
