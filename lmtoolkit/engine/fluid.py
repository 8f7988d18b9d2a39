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
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import fields

import numpy as np

from ..policies.base import Context, State
from ..records import REASON_CODE, ROUND_KINDS, STOP_REASONS
from ..scenario import Scenario
from .common import (ROUND_DETAIL_LIMIT, BatchResult, F_written, f_written, mean_written_after,
                     slowdown, switchover)


def _stack_context(ctxs: list[Context]) -> Context:
    return Context(**{f.name: np.array([getattr(c, f.name) for c in ctxs], dtype=float)
                      for f in fields(Context)})


def simulate_fluid(scenarios: list[Scenario], round_detail: int = ROUND_DETAIL_LIMIT) -> BatchResult:
    """Expected-value simulation of many migrations at once."""
    groups: dict[type, list[int]] = defaultdict(list)
    for i, s in enumerate(scenarios):
        groups[type(s.policy)].append(i)
    parts, order = [], []
    for cls, idx in groups.items():
        parts.append(_run_group(cls, [scenarios[i] for i in idx], round_detail))
        order.extend(idx)
    out = BatchResult.concat(parts) if len(parts) > 1 else parts[0]
    if order != list(range(len(scenarios))):
        out = out.take(np.argsort(order))
    return out


def _regions(scns: list[Scenario]):
    regs = [s.workload.regions(s.vm.pages, s.vm.page_bytes) for s in scns]
    R = max(len(r) for r in regs) + 1
    S = len(scns)
    n = np.zeros((S, R))
    lam = np.zeros((S, R))
    seq = np.zeros((S, R), dtype=bool)
    for i, (s, rr) in enumerate(zip(scns, regs)):
        for j, r in enumerate(rr):
            n[i, j], lam[i, j], seq[i, j] = r.n_pages, r.rate_per_page, r.sequential
        n[i, R - 1] = max(0, s.vm.pages - n[i, :R - 1].sum())  # untouched rest of memory
    return n, lam, seq


class _Group:
    """Arrays of the still-running scenarios of one policy class."""

    def __init__(self, cls, scns):
        self.pol = cls.stack([s.policy for s in scns])
        self.ctx = _stack_context([s.context() for s in scns])
        self.n, self.lam, self.seq = _regions(scns)
        self.d = self.n.copy()
        self.z = np.array([s.vm.zero_pages for s in scns], dtype=float)
        self.vcpus = np.array([s.vm.vcpus for s in scns], dtype=float)
        self.rounds = np.zeros(len(scns), dtype=np.int64)
        self.idx = np.arange(len(scns))
        st = State((len(scns),))
        st.pending = self.ctx.pages.copy()
        self.pol.init_state(st, self.ctx)
        self.st = st

    def keep(self, m):
        self.pol, self.ctx, self.st = self.pol.subset(m), self.ctx.subset(m), self.st.subset(m)
        for k in ("n", "lam", "seq", "d", "z", "vcpus", "rounds", "idx"):
            setattr(self, k, getattr(self, k)[m])


def _run_group(cls, scns, round_detail) -> BatchResult:
    L = round_detail
    out = BatchResult(len(scns), L + 2)  # + stop + post-copy rounds
    out.scalars["policy"][:] = cls.name
    out.scalars["engine"][:] = "fluid"
    out.scalars["memory_bytes"][:] = [s.vm.memory_bytes for s in scns]
    g = _Group(cls, scns)
    while g.idx.size:
        code = g.pol.decide(g.st, g.ctx)
        done = code != 0
        if done.any():
            _finish(g, done, code[done], out, L)
            g.keep(~done)
            if not g.idx.size:
                break
        _phase(g, out, L)
    return out


def _phase(g: _Group, out: BatchResult, L: int) -> None:
    st, pol, ctx = g.st, g.pol, g.ctx
    P = np.maximum(st.pending, 1e-12)
    k = np.clip(pol.phase_pages(st, ctx), np.minimum(1.0, P), P)
    lk = pol.link(st, ctx)
    frac = k / P
    kz = g.z * frac
    knz = k - kz
    T = knz * lk.t_nz + kz * lk.t_z
    B = knz * lk.b_nz + kz * lk.b_z
    x = g.lam * st.speed[:, None]
    Tc = T[:, None]
    sent = g.d * frac[:, None]
    after = np.where(Tc > 0, F_written(x, Tc, g.seq) / np.maximum(Tc, 1e-300), 0.0)
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
    st.t = st.t + T
    st.phase_time, st.phase_bytes, st.phase_pages = T, B, k
    st.sent_bytes = st.sent_bytes + B
    st.sent_pages = st.sent_pages + k
    new_total = g.d.sum(axis=1)
    st.dirty_new = new.sum(axis=1)
    st.pending = new_total
    st.round = st.round + 1
    g.rounds = g.rounds + 1
    pol.after_sync(st, ctx)
    st.throttle_max = np.maximum(st.throttle_max, st.throttle)


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
    sc = out.scalars
    sc["rounds"][rows] = rounds
    sc["stop_reason"][rows] = [STOP_REASONS[c] for c in code]
    sc["converged"][rows] = code == REASON_CODE["converged"]
    sc["completed"][rows] = ~timeout
    sc["precopy_bytes"][rows] = st.sent_bytes
    sc["throttle_max"][rows] = st.throttle_max

    post = np.broadcast_to(pol.goes_postcopy(code), P.shape) & ~timeout
    sw_stop = switchover(pol, st, ctx, n_nz, n_z, send_pages=True)
    sw_post = switchover(pol, st, ctx, n_nz, n_z, send_pages=False)
    down = np.where(post, sw_post.downtime_s, sw_stop.downtime_s)
    stop_bytes = np.where(post, sw_post.bytes, sw_stop.bytes)

    # Post-copy phase: push the rest, faults when the guest touches a page not yet pushed.
    lk = pol.link(st, ctx, stop=True)
    T_push = n_nz * lk.t_nz + n_z * lk.t_z
    pc_bytes = n_nz * lk.b_nz + n_z * lk.b_z
    af = np.asarray(pol.fault_access_factor(), dtype=float)
    acc = lam * (af[:, None] if af.ndim else af)
    Tc = T_push[:, None]
    uniform_f = d * mean_written_after(acc, 0.0, Tc, seq)
    order = np.argsort(-lam, axis=1, kind="stable")
    d_o = np.take_along_axis(d, order, 1)
    per_page = np.where(P > 0, T_push / np.maximum(P, 1e-300), 0.0)[:, None]
    b_o = np.cumsum(d_o, axis=1) * per_page
    a_o = b_o - d_o * per_page
    pre_f = d_o * mean_written_after(np.take_along_axis(acc, order, 1), a_o, b_o,
                                     np.take_along_axis(seq, order, 1))
    prepage = np.broadcast_to(np.asarray(pol.prepaging_enabled()), P.shape)
    faults = np.where(prepage, pre_f.sum(1), uniform_f.sum(1))
    stall = faults * (ctx.rtt_s + lk.t_nz + pol.fault_overhead_s()) / g.vcpus[sub]

    t_end_pre = st.t
    total = np.where(timeout, t_end_pre, t_end_pre + down + np.where(post, T_push, 0.0))
    down = np.where(timeout, np.nan, down)
    nbytes = st.sent_bytes + np.where(timeout, 0.0, stop_bytes + np.where(post, pc_bytes, 0.0))
    lost = st.lost_guest_time + np.where(post, stall, 0.0)
    sc["total_time_s"][rows] = total
    sc["downtime_s"][rows] = down
    sc["transferred_bytes"][rows] = nbytes
    sc["stop_bytes"][rows] = np.where(timeout, 0.0, stop_bytes)
    sc["postcopy_faults"][rows] = np.where(post, faults, 0.0)
    sc["postcopy_time_s"][rows] = np.where(post, T_push, 0.0)
    sc["guest_slowdown"][rows] = slowdown(lost, total, down)

    # Final round(s) of the detail.
    col = np.minimum(rounds, L)
    fin = ~timeout
    r, c = rows[fin], col[fin]
    rate = np.broadcast_to(pol.stop_rate_bytes_s(st, ctx), P.shape)[fin]
    vals = {"round_start": st.t[fin], "round_duration": down[fin],
            "round_pages": np.where(post, 0.0, P)[fin], "round_bytes": stop_bytes[fin],
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
