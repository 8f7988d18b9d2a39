"""Fluid engine: expected page counts in closed form, vectorised across scenarios.

It keeps, per scenario and workload region, the expected number of pages in the dirty
bitmap, and runs the *same* policy rules as the page engine on arrays (one element per
scenario).  For a phase of length ``T`` that sends a fraction ``k/P`` of the bitmap, pages of
region ``j`` (``n_j`` pages, ``d_j`` pending, write rate ``lam_j`` per page):

* sent pages are spread over the phase (address order mixes regions), so a share
  ``F(T)/T`` of them is written after being sent;
* clean pages are written with probability ``f(T)``;
* unsent pending pages stay pending:

``d_j' = d_j (1 - k/P) + d_j (k/P) F(T)/T + (n_j - d_j) f(T)``

(see :mod:`.common` for ``f`` and ``F``).  Zero pages are sent in proportion.  Scenarios are
grouped by policy class; finished scenarios drop out of the arrays as they finish.

The timeout is the page engine's (:class:`~lmtoolkit.policies.base.Policy`): a phase that
would end after ``timeout_s`` is cut there (a pro-rata share of its pages and bytes, and it
counts as a round), and a switchover that would end after it is abandoned there (bytes
sent in the pause so far, pro rata).
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, fields

import numpy as np

from ..policies.base import Context, State
from ..records import REASON_CODE, ROUND_KINDS, STOP_REASONS
from ..scenario import Scenario
from .beyond import apply_to_batch
from .common import (ROUND_DETAIL_LIMIT, BatchResult, F_written, f_written, mean_written_after,
                     slowdown, switchover)


def _stack_context(ctxs: list[Context]) -> Context:
    return Context(**{f.name: np.array([getattr(c, f.name) for c in ctxs], dtype=float)
                      for f in fields(Context)})


def simulate_fluid(scenarios: list[Scenario], round_detail: int = ROUND_DETAIL_LIMIT) -> BatchResult:
    """Expected-value simulation of many migrations at once (any mix of policies)."""
    groups: dict[type, list[int]] = defaultdict(list)
    for i, s in enumerate(scenarios):
        groups[type(s.policy)].append(i)
    parts, order = [], []
    for cls, idx in groups.items():
        parts.append(run_inputs(FluidInputs.from_scenarios([scenarios[i] for i in idx]), round_detail))
        order.extend(idx)
    out = BatchResult.concat(parts) if len(parts) > 1 else parts[0]
    if order != list(range(len(scenarios))):
        out = out.take(np.argsort(order))
    return out


def simulate_fluid_columns(template: Scenario, columns: dict[str, np.ndarray],
                           round_detail: int = ROUND_DETAIL_LIMIT) -> BatchResult:
    """Simulate ``template`` with some parameters given as columns (one value per scenario).

    ``columns`` maps dotted keys (``vm.memory_gib``, ``workload.dirty_rate_pages_s``,
    ``network.bandwidth_gbit_s``, ``policy.downtime_limit_ms``, …) to equal-length arrays.
    Objects are built once per distinct combination of the other columns; the write rate is
    applied by scaling (region rates are proportional to it), so a grid over rates costs no
    Python work per point.  This is the path big sweeps take.
    """
    return run_inputs(FluidInputs.from_columns(template, columns), round_detail)


def _regions_of(scn: Scenario, R: int):
    n, lam, seq = np.zeros(R), np.zeros(R), np.zeros(R, dtype=bool)
    for j, r in enumerate(scn.workload.regions(scn.vm.pages, scn.vm.page_bytes)):
        n[j], lam[j], seq[j] = r.n_pages, r.rate_per_page, r.sequential
    n[R - 1] = max(0, scn.vm.pages - n[:R - 1].sum())  # untouched rest of memory
    return n, lam, seq


def with_value(obj, key: str, value):
    """``obj`` with the dotted ``key`` replaced (nested frozen dataclasses), typed like the old value."""
    head, _, rest = key.partition(".")
    if not rest:
        cur = getattr(obj, head)
        if isinstance(cur, bool):
            value = bool(value)
        elif isinstance(cur, (int, np.integer)) and float(value).is_integer():
            value = int(value)
        else:
            value = float(value)
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: with_value(getattr(obj, head), rest, value)})


#: Workloads whose region rates are proportional to ``dirty_rate_pages_s``.
RATE_SCALABLE = ("idle", "uniform", "hotcold", "zipf")


@dataclass
class FluidInputs:
    """Everything the fluid engine needs, as arrays over scenarios of one policy class."""

    policy: object             # a stacked Policy
    ctx: Context
    n: np.ndarray              # (S, R) pages per region (last: untouched rest)
    lam: np.ndarray            # (S, R) writes per page per second
    seq: np.ndarray            # (S, R) sequential regions
    zero: np.ndarray           # (S,) zero pages at start
    vcpus: np.ndarray          # (S,)
    memory_bytes: np.ndarray   # (S,)
    scenarios: list | None = None     # the distinct scenarios (for lmtoolkit.engine.beyond)
    inverse: np.ndarray | None = None  # (S,) row -> index in ``scenarios``

    @classmethod
    def from_unique(cls, uniq: list[Scenario], inverse: np.ndarray, rate_scale=None) -> "FluidInputs":
        kinds = {type(s.policy) for s in uniq}
        if len(kinds) != 1:
            raise ValueError("FluidInputs holds one policy class; group scenarios first")
        R = max(len(s.workload.regions(s.vm.pages, s.vm.page_bytes)) for s in uniq) + 1
        regs = [_regions_of(s, R) for s in uniq]
        n = np.array([r[0] for r in regs])[inverse]
        lam = np.array([r[1] for r in regs])[inverse]
        seq = np.array([r[2] for r in regs])[inverse]
        ctx = _stack_context([s.context() for s in uniq]).subset(inverse)
        if rate_scale is not None:
            lam = lam * rate_scale[:, None]
            ctx.dirty_rate_pages_s = ctx.dirty_rate_pages_s * rate_scale
        pol = kinds.pop().stack([s.policy for s in uniq]).subset(inverse)
        return cls(policy=pol, ctx=ctx, n=n, lam=lam, seq=seq,
                   zero=np.array([s.vm.zero_pages for s in uniq], dtype=float)[inverse],
                   vcpus=np.array([s.vm.vcpus for s in uniq], dtype=float)[inverse],
                   memory_bytes=np.array([s.vm.memory_bytes for s in uniq], dtype=float)[inverse],
                   scenarios=list(uniq), inverse=np.asarray(inverse))

    @classmethod
    def from_scenarios(cls, scns: list[Scenario]) -> "FluidInputs":
        index: dict[Scenario, int] = {}
        inverse = np.array([index.setdefault(dataclasses.replace(s, seed=0), len(index)) for s in scns])
        return cls.from_unique(list(index), inverse)

    @classmethod
    def from_columns(cls, template: Scenario, columns: dict) -> "FluidInputs":
        cols = {k: np.asarray(v) for k, v in columns.items()}
        sizes = {v.size for v in cols.values()}
        if len(sizes) != 1:
            raise ValueError(f"columns differ in length: { {k: v.size for k, v in cols.items()} }")
        S = sizes.pop()
        rate_key = "workload.dirty_rate_pages_s"
        scalable = rate_key in cols and template.workload.name in RATE_SCALABLE
        rate = cols.pop(rate_key).astype(float) if scalable else None
        if scalable:
            if (rate < 0).any():
                raise ValueError(f"{rate_key} must be >= 0")
            template = with_value(template, rate_key, 1.0)
        keys = sorted(cols)
        if keys:
            table = np.stack([cols[k].astype(float) for k in keys], axis=1)
            uniq_rows, inverse = np.unique(table, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
        else:
            uniq_rows, inverse = np.zeros((1, 0)), np.zeros(S, dtype=np.int64)
        uniq = []
        for row in uniq_rows:
            scn = template
            for k, v in zip(keys, row):
                scn = with_value(scn, k, v)
            uniq.append(scn)
        return cls.from_unique(uniq, inverse, rate)


class _Group:
    """Arrays of the still-running scenarios of one policy class."""

    def __init__(self, inp: FluidInputs):
        self.pol, self.ctx = inp.policy, inp.ctx
        self.n, self.lam, self.seq = inp.n, inp.lam, inp.seq
        self.d = self.n.copy()
        self.z = inp.zero.astype(float)
        self.vcpus = inp.vcpus
        S = self.z.size
        self.rounds = np.zeros(S, dtype=np.int64)
        self.idx = np.arange(S)
        self.prev = np.full((6, S), np.nan)   # the 3 last phase lengths and bitmap sizes
        st = State((S,))
        st.pending = np.asarray(self.ctx.pages, dtype=float).copy()
        self.pol.init_state(st, self.ctx)
        self.st = st

    def keep(self, m):
        self.pol, self.ctx, self.st = self.pol.subset(m), self.ctx.subset(m), self.st.subset(m)
        for k in ("n", "lam", "seq", "d", "z", "vcpus", "rounds", "idx"):
            setattr(self, k, getattr(self, k)[m])
        self.prev = self.prev[:, m]


def run_inputs(inp: FluidInputs, round_detail: int = ROUND_DETAIL_LIMIT) -> BatchResult:
    """Run the fluid engine on prepared inputs."""
    L = round_detail
    out = BatchResult(inp.zero.size, L + 2)  # + stop + post-copy rounds
    out.scalars["policy"][:] = type(inp.policy).name
    out.scalars["engine"][:] = "fluid"
    out.scalars["memory_bytes"][:] = inp.memory_bytes
    g = _Group(inp)
    while g.idx.size:
        code = g.pol.decide(g.st, g.ctx)
        done = code != 0
        if done.any():
            _finish(g, done, code[done], out, L)
            g.keep(~done)
            if not g.idx.size:
                break
        cut = _phase(g, out, L)
        if cut.any():
            _finish(g, cut, np.full(int(cut.sum()), REASON_CODE["timeout"]), out, L)
            g.keep(~cut)
    if inp.scenarios is not None:
        apply_to_batch(out, inp.scenarios, inp.inverse)
    return out


def _phase(g: _Group, out: BatchResult, L: int) -> np.ndarray:
    """One phase and its sync for every running scenario.  Returns where the timeout cut the
    phase short (those scenarios end there; no sync, their policy state is not updated)."""
    st, pol, ctx = g.st, g.pol, g.ctx
    P = np.maximum(st.pending, 1e-12)
    k = np.clip(pol.phase_pages(st, ctx), np.minimum(1.0, P), P)
    lk = pol.link(st, ctx)
    T = (k - g.z * k / P) * lk.t_nz + g.z * k / P * lk.t_z
    deadline = np.broadcast_to(np.asarray(pol.timeout_s, dtype=float), T.shape)
    cut = st.t + T > deadline
    # Cut at the timeout: the share of the phase's pages (mixed zero/non-zero) sent by then.
    k = np.where(cut, k * np.clip((deadline - st.t) / np.maximum(T, 1e-300), 0.0, 1.0), k)
    frac = k / P
    kz = g.z * frac
    knz = k - kz
    T = np.where(cut, deadline - st.t, knz * lk.t_nz + kz * lk.t_z)
    B = knz * lk.b_nz + kz * lk.b_z
    x = g.lam * st.speed[:, None]
    Tc = T[:, None]
    sent = g.d * frac[:, None]
    after = np.where(Tc > 0, F_written(x, Tc, g.seq) / np.maximum(Tc, 1e-300), 0.0)
    # Policy.dirty_clear hook, "sync" (QEMU under TCG): a write any time after the sync
    # re-dirties a sent page
    sync_clear = np.asarray(pol.dirty_clear) == "sync"
    after = np.where(sync_clear[..., None] if sync_clear.ndim else sync_clear,
                     f_written(x, Tc, g.seq), after)
    new = sent * after + (g.n - g.d) * f_written(x, Tc, g.seq)
    g.d = g.d - sent + new
    g.z = g.z - kz

    m = g.rounds < L
    rows, cols = g.idx[m], g.rounds[m]
    for name, val in (("round_start", st.t), ("round_duration", T), ("round_pages", k),
                      ("round_bytes", B), ("round_dirty_pages", st.pending),
                      ("round_bandwidth", st.bw_est), ("round_throttle", st.throttle)):
        out.round[name][rows, cols] = np.broadcast_to(val, T.shape)[m]
    out.round_kind[rows, cols] = ROUND_KINDS.index("precopy")

    st.lost_guest_time = st.lost_guest_time + st.throttle * T
    st.t = np.where(cut, deadline, st.t + T)
    st.phase_time, st.phase_bytes, st.phase_pages = T, B, k
    st.sent_bytes = st.sent_bytes + B
    st.sent_pages = st.sent_pages + k
    new_total = g.d.sum(axis=1)
    st.dirty_new = new.sum(axis=1)
    st.pending = new_total
    st.round = st.round + 1
    g.rounds = g.rounds + 1
    pol.after_sync(st, ctx)
    st.throttle_max = np.where(cut, st.throttle_max, np.maximum(st.throttle_max, st.throttle))
    _fast_forward(g, out, L, T, B, k, cut)
    return cut


def _geometric_limit(x0, x1, x2, x3, tol=1e-9):
    """Aitken's limit of a sequence seen as x0..x3, and whether it is (near-)geometric.

    Returns (limit, ratio, ok): ``ok`` where the sequence is constant, or where its last two
    step ratios lie in (0, 0.9999) and differ by less than 1 % of ``1 - ratio``."""
    d1, d2, d3 = x1 - x0, x2 - x1, x3 - x2
    const = np.abs(d3) <= tol * np.maximum(np.abs(x3), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_old = np.where(d1 != 0, d2 / d1, np.nan)
        r = np.where(d2 != 0, d3 / d2, np.nan)
    # The limit's error grows as (ratio drift) / (1 - ratio)^2: demand a drift small against 1 - r.
    geo = (r > 0) & (r < 0.9999) & (np.abs(r - r_old) <= 0.01 * (1.0 - r))
    r = np.where(const | ~geo, 0.0, r)
    return x3 + d3 * r / (1.0 - r), r, const | geo


def _fast_forward(g: _Group, out: BatchResult, L: int, T, B, k, cut) -> None:
    """Leap over rounds whose outcome is already determined, checking the leap with the policy.

    Under stationary rules (:meth:`Policy.stationary`) the expected bitmap size ``p`` and phase
    length ``T`` approach a fixed point, exactly or geometrically.  From the last four rounds
    Aitken's extrapolation gives the limits and ratios; the engine then leaps ``m`` rounds:
    to the policy's horizon (timeout, round or byte cap) at an exact fixed point, otherwise
    until the distance to the limit has shrunk a thousandfold.  A leap is taken only where the
    policy, asked at the predicted state, neither converges nor plans a phase more than 1 %
    off the predicted one — so a change of regime (a minimum phase, the threshold) is never
    jumped over, nor the timeout (a leap must end by ``timeout_s``; rows whose phase the
    timeout ``cut`` never leap).  Time, bytes and pages add the geometric sums; per-round
    detail of leapt rounds holds the predicted values.
    """
    st, pol = g.st, g.pol
    Tlim, rT, okT = _geometric_limit(g.prev[0], g.prev[1], g.prev[2], T)
    plim, rp, okp = _geometric_limit(g.prev[3], g.prev[4], g.prev[5], st.pending)
    g.prev = np.stack([g.prev[1], g.prev[2], T, g.prev[4], g.prev[5], st.pending])
    cand = okT & okp & pol.stationary(st) & ~np.asarray(pol.converged(st, g.ctx)) & ~cut
    if not cand.any():
        return
    exact = (rT == 0) & (rp == 0)
    r = np.maximum(rT, rp)
    h = pol.steady_horizon(st, g.ctx, T, B)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_geo = np.ceil(np.log(1e-3) / np.log(np.where(r > 0, r, 0.5)))
    m = np.where(exact, h - 1, np.minimum(m_geo, h - 1))
    m = np.where(cand, np.maximum(m, 0), 0)

    def after(x, lim, ratio, n):
        return lim + (x - lim) * ratio ** n

    def summed(x, lim, ratio, n):  # sum of the next n values of the sequence
        with np.errstate(divide="ignore", invalid="ignore"):
            geo = np.where(ratio > 0, (x - lim) * ratio * (1 - ratio ** n) / (1 - ratio), 0.0)
        return n * lim + geo

    p_m = np.maximum(after(st.pending, plim, rp, m), 0.0)
    T_m = after(T, Tlim, rT, m)
    probe = st.subset(slice(None))
    probe.pending = p_m
    k_next = np.asarray(pol.phase_pages(probe, g.ctx), dtype=float)
    T_next_pred = after(T, Tlim, rT, m + 1)
    T_next_pol = k_next * T / np.maximum(k, 1e-300)
    ok = (m > 0) & ~np.asarray(pol.converged(probe, g.ctx)) & \
        (np.abs(T_next_pol - T_next_pred) <= 0.01 * np.maximum(T_next_pred, 1e-300))
    ok = ok & (st.t + np.where(ok, summed(T, Tlim, rT, np.where(ok, m, 0)), 0.0) <= pol.timeout_s)
    n = np.where(ok, m, 0).astype(np.int64)
    if not n.any():
        return
    span = np.where(ok, summed(T, Tlim, rT, n), 0.0)
    rate_B, rate_k = B / np.maximum(T, 1e-300), k / np.maximum(T, 1e-300)
    first = g.rounds
    for c in range(int(first[ok].min()), min(L, int((first + n).max()))):
        sel = (first <= c) & (c < first + n)
        if not sel.any():
            continue
        rows, j = g.idx[sel], (c - first)[sel] + 1
        Tj = after(T[sel], Tlim[sel], rT[sel], j)
        start = st.t[sel] + summed(T[sel], Tlim[sel], rT[sel], j - 1)
        vals = (("round_start", start), ("round_duration", Tj), ("round_pages", rate_k[sel] * Tj),
                ("round_bytes", rate_B[sel] * Tj),
                ("round_dirty_pages", after(st.pending[sel], plim[sel], rp[sel], j - 1)),
                ("round_bandwidth", np.broadcast_to(st.bw_est, T.shape)[sel]),
                ("round_throttle", np.broadcast_to(st.throttle, T.shape)[sel]))
        for name, val in vals:
            out.round[name][rows, c] = val
        out.round_kind[rows, c] = ROUND_KINDS.index("precopy")
    scale = np.where(ok, p_m / np.maximum(st.pending, 1e-300), 1.0)
    g.d = g.d * scale[:, None]
    st.pending = np.where(ok, p_m, st.pending)
    st.t = st.t + span
    st.lost_guest_time = st.lost_guest_time + st.throttle * span
    st.sent_bytes = st.sent_bytes + rate_B * span
    st.sent_pages = st.sent_pages + rate_k * span
    st.round = st.round + n
    g.rounds = g.rounds + n
    st.phase_time = np.where(ok, T_m, st.phase_time)
    g.prev[:, ok] = np.nan   # rebuild the history after a leap


def _postcopy_faults(pol, d, lam, seq, P, T_push):
    """Expected demand faults while the remaining ``P`` pages are pushed over ``T_push`` s.

    A page pushed at time ``s`` faults if the guest touches it first: probability
    ``f(acc, s)``.  Without pre-paging pushes follow address order (regions mixed: ``s``
    uniform over the push); with pre-paging the hottest regions go first.
    """
    af = np.asarray(pol.fault_access_factor(), dtype=float)
    acc = lam * (af[:, None] if af.ndim else af)
    uniform_f = d * mean_written_after(acc, 0.0, T_push[:, None], seq)
    order = np.argsort(-lam, axis=1, kind="stable")
    d_o = np.take_along_axis(d, order, 1)
    per_page = np.where(P > 0, T_push / np.maximum(P, 1e-300), 0.0)[:, None]
    b_o = np.cumsum(d_o, axis=1) * per_page
    a_o = b_o - d_o * per_page
    pre_f = d_o * mean_written_after(np.take_along_axis(acc, order, 1), a_o, b_o,
                                     np.take_along_axis(seq, order, 1))
    prepage = np.broadcast_to(np.asarray(pol.prepaging_enabled()), P.shape)
    return np.where(prepage, pre_f.sum(1), uniform_f.sum(1))


def _finish(g: _Group, done, code, out: BatchResult, L: int) -> None:
    sub = np.flatnonzero(done)
    pol, ctx, st = g.pol.subset(sub), g.ctx.subset(sub), g.st.subset(sub)
    rows = g.idx[sub]
    rounds = g.rounds[sub]
    d, lam, seq, z = g.d[sub], g.lam[sub], g.seq[sub], g.z[sub]
    P = st.pending
    n_z = np.minimum(z, P)
    n_nz = P - n_z
    timeout = code == REASON_CODE["timeout"]
    post = np.broadcast_to(pol.goes_postcopy(code), P.shape) & ~timeout
    sw_stop = switchover(pol, st, ctx, n_nz, n_z, send_pages=True)
    sw_post = switchover(pol, st, ctx, n_nz, n_z, send_pages=False)
    down = np.where(post, sw_post.downtime_s, sw_stop.downtime_s)
    stop_bytes = np.where(post, sw_post.bytes, sw_stop.bytes)
    # A switchover that would end after the timeout is abandoned there (for post-copy: the
    # pause that sends the device state; once the VM runs on the destination it completes).
    deadline = np.broadcast_to(np.asarray(pol.timeout_s, dtype=float), P.shape)
    tau = deadline - st.t
    late = ~timeout & (st.t + down > deadline)
    late_bytes = np.where(post, sw_post.sent_by(tau), sw_stop.sent_by(tau))
    late_pages = np.where(post, 0.0, P * np.clip(tau / np.maximum(sw_stop.page_time_s, 1e-300),
                                                 0.0, 1.0))
    code = np.where(late, REASON_CODE["timeout"], code)
    timeout = timeout | late
    post = post & ~late

    sc = out.scalars
    sc["rounds"][rows] = rounds
    sc["stop_reason"][rows] = [STOP_REASONS[c] for c in code]
    sc["converged"][rows] = code == REASON_CODE["converged"]
    sc["completed"][rows] = ~timeout
    sc["precopy_bytes"][rows] = st.sent_bytes
    sc["throttle_max"][rows] = st.throttle_max

    # Post-copy phase: push the rest, faults when the guest touches a page not yet pushed.
    lk = pol.link(st, ctx, stop=True)
    T_push = n_nz * lk.t_nz + n_z * lk.t_z
    pc_bytes = n_nz * lk.b_nz + n_z * lk.b_z
    faults = _postcopy_faults(pol, d, lam, seq, P, T_push) if post.any() else np.zeros(P.shape)
    stall = faults * (ctx.rtt_s + lk.t_nz + pol.fault_overhead_s()) / g.vcpus[sub]

    t_end_pre = st.t
    total = np.where(timeout, np.where(late, deadline, t_end_pre),
                     t_end_pre + down + np.where(post, T_push, 0.0))
    late_down = np.where(late, tau, np.nan)
    down = np.where(timeout, np.nan, down)
    stop_bytes = np.where(late, late_bytes, np.where(timeout, 0.0, stop_bytes))
    nbytes = st.sent_bytes + stop_bytes + np.where(post, pc_bytes, 0.0)
    lost = st.lost_guest_time + np.where(post, stall, 0.0)
    sc["total_time_s"][rows] = total
    sc["downtime_s"][rows] = down
    sc["transferred_bytes"][rows] = nbytes
    sc["stop_bytes"][rows] = stop_bytes
    sc["postcopy_faults"][rows] = np.where(post, faults, 0.0)
    sc["postcopy_time_s"][rows] = np.where(post, T_push, 0.0)
    sc["guest_slowdown"][rows] = slowdown(lost, total, down)

    # Final round(s) of the detail.
    col = np.minimum(rounds, L)
    fin = ~timeout | late           # a switchover cut by the timeout is shown up to the cut
    r, c = rows[fin], col[fin]
    rate = np.broadcast_to(pol.stop_rate_bytes_s(st, ctx), P.shape)[fin]
    vals = {"round_start": st.t[fin], "round_duration": np.where(late, late_down, down)[fin],
            "round_pages": np.where(late, late_pages, np.where(post, 0.0, P))[fin],
            "round_bytes": stop_bytes[fin],
            "round_dirty_pages": P[fin], "round_bandwidth": rate, "round_throttle": np.ones(r.size)}
    for name, v in vals.items():
        out.round[name][r, c] = v
    out.round_kind[r, c] = ROUND_KINDS.index("stop")
    pm = post[fin] & (c + 1 < out.n_rounds)
    if pm.any():
        r2, c2 = r[pm], c[pm] + 1
        vals2 = {"round_start": (st.t + down)[fin][pm], "round_duration": T_push[fin][pm],
                 "round_pages": P[fin][pm], "round_bytes": pc_bytes[fin][pm],
                 "round_dirty_pages": P[fin][pm], "round_bandwidth": rate[pm],
                 "round_throttle": np.zeros(r2.size)}
        for name, v in vals2.items():
            out.round[name][r2, c2] = v
        out.round_kind[r2, c2] = ROUND_KINDS.index("postcopy")
