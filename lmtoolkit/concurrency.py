"""Concurrent migrations sharing links: max-min fairness, event-driven (issue 7).

Model
-----
* A **fabric** of full-duplex host links: every host ``h`` has an outgoing and an incoming
  direction, each with a payload capacity (bytes/s).  A migration from ``a`` to ``b``
  crosses ``(a, out)`` and ``(b, in)`` (hosts behind one non-blocking switch, as in the
  Grid'5000 testbed of Kherbache et al. and most racks).
* **Shares**: at every instant the active migrations get the *max-min fair* allocation over
  the links each crosses (max-min fairness and its progressive-filling algorithm: Bertsekas &
  Gallager, *Data Networks*, 2nd ed., 1992, chapter 6, flow control — **published**, not
  re-read here; TCP flows of equal RTT on one bottleneck approach it.  Progressive filling:
  all rates grow together; a migration freezes when a link it crosses is full or it reaches
  its own cap — its streams, TCP window, policy bandwidth limit).  Shares are recomputed only
  when a migration starts or ends: between two events every rate is constant.
* **Progress at a piecewise-constant rate**: a migration that alone at payload rate ``r``
  takes ``T(r)`` seconds and sends ``B(r)`` bytes (the fluid engine, run once per migration
  on a log-spaced grid of rates and interpolated in ``log r``) advances by ``dt / T(r)`` of
  its work during ``dt`` seconds at rate ``r`` and sends ``dt B(r) / T(r)`` bytes; it ends
  when the fractions sum to one, with the downtime of its last rate.  At a constant rate this
  is exactly the fluid engine's answer; when the rate changes, the dirty-page state is
  carried as "fraction done" rather than page counts — an approximation that is exact for
  idle guests and good when re-sent pages are a small part of the bytes.
* ``setup_s``: a fixed per-migration cost before data flows (connection, destination VM
  creation); the migration holds no bandwidth during it.
* **Scheduling** (evacuations): migrations wait in a given order and start when both their
  hosts have fewer than ``limit`` running migrations (vMotion: 4 per host on 1 GbE, 8 on
  10 GbE; Hyper-V: 2 — the policy's recorded keys).  Replays pass fixed start times instead.

Nothing here imports Hydra, xarray or plotting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .scenario import Scenario

#: rate grid per migration (log-spaced between the smallest possible share and its cap)
GRID_POINTS = 40
#: simulated seconds a rate-table run may take at most (the policy timeout is lifted: the
#: scheduler applies it, see :func:`simulate_concurrent`), and in copies of the VM's memory at
#: the table's slowest rate
TABLE_HORIZON_S = 1e7
HORIZON_PASSES = 50


@dataclass(frozen=True)
class Planned:
    """One migration to run: its scenario (VM, workload, policy, uncontended network), the
    hosts it leaves and reaches, and a fixed start time (``None``: the scheduler decides)."""

    name: str
    scenario: Scenario
    src: str
    dst: str
    start_s: float | None = None


@dataclass
class Outcome:
    name: str
    src: str
    dst: str
    start_s: float
    end_s: float
    downtime_s: float
    transferred_bytes: float
    completed: bool
    mean_rate_bytes_s: float


def max_min_rates(routes: list[tuple], capacity: dict, caps: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows crossing links (progressive filling).

    ``routes[i]``: the links flow ``i`` crosses; ``capacity``: link -> capacity;
    ``caps[i]``: the flow's own maximum rate.
    """
    n = len(routes)
    rate = np.zeros(n)
    if not n:
        return rate
    links = sorted({l for r in routes for l in r}, key=str)
    A = np.zeros((len(links), n))
    for i, r in enumerate(routes):
        for l in r:
            A[links.index(l), i] = 1.0
    rem = np.array([capacity[l] for l in links], dtype=float)
    active = np.ones(n, dtype=bool)
    caps = np.asarray(caps, dtype=float)
    for _ in range(n + len(links) + 1):
        if not active.any():
            break
        users = A @ active
        with np.errstate(divide="ignore", invalid="ignore"):
            per_link = np.where(users > 0, rem / users, np.inf)
        d = min(per_link.min(), (caps - rate)[active].min())
        d = max(d, 0.0)
        rate[active] += d
        rem -= d * users
        full = rem <= 1e-9 * np.maximum(1.0, np.array([capacity[l] for l in links]))
        frozen = (A[full].sum(axis=0) > 0) | (rate >= caps * (1 - 1e-12))
        active &= ~frozen
    return rate


class RateTable:
    """``T(r)``, ``B(r)``, downtime and completion of one scenario over payload rates ``r``
    (fluid engine, interpolated in ``log r``)."""

    def __init__(self, scn: Scenario, r_lo: float, r_hi: float, points: int = GRID_POINTS):
        from .engine.fluid import simulate_fluid

        net = scn.network
        r_lo = max(min(r_lo, r_hi), 1.0)
        self.rates = np.geomspace(r_lo, r_hi, points) if r_hi > r_lo * 1.0001 else np.array([r_hi])
        # A network whose payload rate is r: line rate r / efficiency, nothing in the background.
        # The table describes progress at a rate, so the policy's timeout (which would cut a
        # slow rate's run short) is lifted: in a shared fabric a migration runs at a rate only
        # for a while, and its duration is the evacuation's to report.  The horizon is
        # HORIZON_PASSES copies of the memory at the slowest rate (a run still going then does
        # not converge at that rate; running it to TABLE_HORIZON_S took minutes near the
        # boundary), never below the policy's own timeout.
        horizon = min(TABLE_HORIZON_S, HORIZON_PASSES * scn.vm.memory_bytes / r_lo)
        pol = dataclasses.replace(scn.policy, timeout_s=max(float(np.max(scn.policy.timeout_s)), horizon))
        scns = [
            dataclasses.replace(
                scn,
                engine="fluid",
                policy=pol,
                network=dataclasses.replace(
                    net, bandwidth_gbit_s=r * 8.0 / net.efficiency / 1e9, background_gbit_s=0.0
                ),
            )
            for r in self.rates
        ]
        sc = simulate_fluid(scns, round_detail=0).scalars
        self.T = np.asarray(sc["total_time_s"], dtype=float)
        self.B = np.asarray(sc["transferred_bytes"], dtype=float)
        self.D = np.nan_to_num(np.asarray(sc["downtime_s"], dtype=float))
        self.ok = np.asarray(sc["completed"], dtype=bool)
        self._x = np.log(self.rates)

    def _interp(self, y, r):
        if self.rates.size == 1:
            return float(y[0])
        return float(np.interp(np.log(max(r, 1e-300)), self._x, y))

    def at(self, r: float) -> tuple[float, float, float, bool]:
        """(total time, bytes, downtime, completed) alone at payload rate ``r``."""
        if r < self.rates[0] * (1 - 1e-9) and self.rates.size > 1:
            # Below the grid: time grows like 1/r (bytes taken from the slowest point).
            f = self.rates[0] / max(r, 1e-300)
            return self.T[0] * f, self.B[0], self.D[0] * f, bool(self.ok[0])
        i = int(np.argmin(np.abs(self._x - np.log(max(r, 1e-300)))))
        return (self._interp(self.T, r), self._interp(self.B, r), self._interp(self.D, r), bool(self.ok[i]))


def own_cap(scn: Scenario) -> float:
    """The most a migration could use on an empty link (payload bytes/s)."""
    ctx = scn.context()
    pol = scn.policy
    from .policies.base import State

    st = State(())
    return float(np.minimum(pol.rate_bytes_s(st, ctx), ctx.line_bytes_s))


def simulate_concurrent(
    plan: list[Planned],
    link_bytes_s: dict[str, float],
    limit: int | dict | None = None,
    setup_s: float = 0.0,
    horizon_s: float = 1e7,
    tables: dict | None = None,
) -> list[Outcome]:
    """Run ``plan`` over hosts with payload link rates ``link_bytes_s`` (host -> bytes/s).

    Migrations with ``start_s`` start then; the others start in list order as soon as both
    their hosts run fewer than ``limit`` migrations (an int, host -> int, or None = no limit).
    ``tables``: a dict reused across calls to cache the rate tables of repeated scenarios.

    The policy's ``timeout_s`` (counted from when the migration's data starts flowing) stops a
    migration that cannot converge at the rate it has then (its table's run at that rate did
    not complete): it is abandoned there, the VM stays on its source (``completed`` false, no
    downtime, the bytes sent so far).  One that converges at its share, however slowly, runs to
    its end: its share may grow as others finish, and a table run at a slow rate is no timeout.
    """
    n = len(plan)
    capacity = {}
    for h, c in link_bytes_s.items():
        capacity[(h, "out")] = capacity[(h, "in")] = float(c)
    for p in plan:
        for h in (p.src, p.dst):
            if h not in link_bytes_s:
                raise KeyError(f"migration {p.name}: host '{h}' has no link rate")
    caps = np.array([min(own_cap(p.scenario), link_bytes_s[p.src], link_bytes_s[p.dst]) for p in plan])
    # Rate tables: one per distinct scenario, rates from the smallest share it may get.
    tables = {} if tables is None else tables
    tab = []
    for i, p in enumerate(plan):
        key = (dataclasses.replace(p.scenario, seed=0), caps[i])
        if key not in tables:
            lo = caps[i] / max(2 * n, 8)
            tables[key] = RateTable(p.scenario, lo, caps[i])
        tab.append(tables[key])

    def lim(h):
        if limit is None:
            return np.inf
        return limit.get(h, np.inf) if isinstance(limit, dict) else limit

    t = 0.0
    state = np.zeros(n, dtype=int)  # 0 waiting, 1 setup, 2 transferring, 3 done
    start = np.full(n, np.nan)
    flow_at = np.full(n, np.nan)  # time data starts flowing
    frac = np.zeros(n)
    sent = np.zeros(n)
    last = np.zeros((n, 3))  # downtime, completed, rate at the end
    end = np.full(n, np.nan)
    timeout = np.array([float(np.max(p.scenario.policy.timeout_s)) for p in plan])
    fixed = np.array([p.start_s is not None for p in plan])
    queue = [i for i in range(n) if not fixed[i]]
    running = {}

    def launch(i, when):
        state[i] = 1
        start[i] = when
        flow_at[i] = when + setup_s
        for h in (plan[i].src, plan[i].dst):
            running[h] = running.get(h, 0) + 1

    for _ in range(100 * n + 100):
        # Start what may start now.
        for i in np.flatnonzero(fixed & (state == 0)):
            if plan[i].start_s <= t + 1e-9:
                launch(i, max(t, plan[i].start_s))
        for i in list(queue):
            if running.get(plan[i].src, 0) < lim(plan[i].src) and running.get(plan[i].dst, 0) < lim(
                plan[i].dst
            ):
                queue.remove(i)
                launch(i, t)
        for i in np.flatnonzero((state == 1) & (flow_at <= t + 1e-9)):
            state[i] = 2
        if (state == 3).all():
            break
        act = np.flatnonzero(state == 2)
        rates = max_min_rates([((plan[i].src, "out"), (plan[i].dst, "in")) for i in act], capacity, caps[act])
        # Next event: a start, a setup ending, or a migration finishing at current rates.
        nxt = [plan[i].start_s for i in np.flatnonzero(fixed & (state == 0))]
        nxt += list(flow_at[state == 1])
        per = []
        for k, i in enumerate(act):
            T, B, D, ok = tab[i].at(rates[k])
            per.append((T, B, D, ok))
            nxt.append(t + (1.0 - frac[i]) * T)
            if not ok and flow_at[i] + timeout[i] > t:
                nxt.append(flow_at[i] + timeout[i])
        if not nxt:
            raise RuntimeError("concurrency limit leaves migrations that can never start")
        t_next = max(min(nxt), t)
        dt = t_next - t
        for k, i in enumerate(act):
            T, B, D, ok = per[k]
            step = dt / T if T > 0 else 1.0
            use = min(step, 1.0 - frac[i])
            frac[i] += use
            sent[i] += use * B
            # a VM the table says does not complete stays on its source: no downtime (the
            # table's run may have been abandoned in a pause, but not on this timeline)
            last[i] = (D if ok else np.nan, ok, rates[k])
            done = frac[i] >= 1.0 - 1e-9
            if not done and not ok and t_next >= flow_at[i] + timeout[i] - 1e-9:
                done = True  # cannot converge at its share: abandoned at its timeout
                last[i] = (np.nan, False, rates[k])
            if done:
                state[i] = 3
                end[i] = t_next
                for h in (plan[i].src, plan[i].dst):
                    running[h] -= 1
        t = t_next
        if t > horizon_s:
            break
    out = []
    for i, p in enumerate(plan):
        dur = end[i] - start[i]
        out.append(
            Outcome(
                p.name,
                p.src,
                p.dst,
                float(start[i]),
                float(end[i]),
                float(last[i, 0]),
                float(sent[i]),
                bool(last[i, 1]),
                float(sent[i] / max(end[i] - flow_at[i], 1e-300)) if dur == dur else np.nan,
            )
        )
    return out
