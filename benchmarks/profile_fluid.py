"""Where the fluid engine's time goes (issue 14): ``python -m benchmarks.profile_fluid [--grid G]``.

Runs one grid through :func:`lmtoolkit.engine.fluid.simulate_fluid_columns` (no per-round
detail) and prints

* the phases by how many migrations were still running in them (a phase advances every running
  migration by one pre-copy round): how many phases, their seconds, the row-phases and the cost
  per row-phase — wide phases are bound by numpy's per-element work, the long tail of narrow ones
  (migrations near the convergence threshold, syncing every 50 ms check) by Python's per-call cost;
* the phases each migration ran in, and the slowest migrations (a batch runs as long as its
  slowest: near-threshold migrations followed sync by sync set its phase count);
* the slowest migration run on its own: the floor under the batch's time (its phases cost
  Python's per-call overhead however few migrations are still running);
* the functions with the most time of their own (``cProfile``, a second run).

Grids: ``issue14`` (the sweep benchmark's 10,000 distinct migrations: QEMU-like, uniform, 10 VM
sizes x 10 links x 100 rates), ``engines`` (``bench_engines``' fluid case, 50,000 of each of
uniform and hot/cold).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np

BANDS = ((1000, None), (100, 1000), (10, 100), (1, 10))


def _grids(name: str):
    from lmtoolkit.model import VM, HotColdWorkload, Network, UniformWorkload
    from lmtoolkit.policies import QemuPolicy
    from lmtoolkit.scenario import Scenario

    if name == "issue14":
        mem = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64]
        bw = [1, 2, 2.5, 5, 10, 20, 25, 40, 50, 100]
        m, b, r = (a.ravel() for a in np.meshgrid(mem, bw, np.linspace(0, 100_000, 100), indexing="ij"))
        cols = {"vm.memory_gib": m.astype(float), "network.bandwidth_gbit_s": b.astype(float)}
        cols["workload.dirty_rate_pages_s"] = r
        from lmtoolkit.compose import compose
        from lmtoolkit.runner import build_scenario

        tpl = build_scenario(compose(["engine=fluid", "policy=qemu", "workload=uniform", "vm=medium"]))
        yield "uniform", tpl, cols
        return
    rng = np.random.default_rng(0)
    n = 50_000
    cols = {
        "vm.memory_gib": rng.choice([1, 2, 4, 8, 16, 32, 64], n).astype(float),
        "network.bandwidth_gbit_s": rng.choice([1, 10, 25], n).astype(float),
        "workload.dirty_rate_pages_s": rng.uniform(0, 100_000, n),
    }
    for label, wl in (("uniform", UniformWorkload()), ("hotcold", HotColdWorkload(hot_mib=256.0))):
        yield (
            label,
            Scenario(vm=VM(memory_gib=64.0), workload=wl, network=Network(), policy=QemuPolicy()),
            cols,
        )


def main() -> None:
    from lmtoolkit.engine import fluid

    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", choices=["issue14", "engines"], default="issue14")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    phase, log = fluid._phase, []

    active = None  # phases each migration ran in (the batch runs as long as its slowest)

    def timed(g, out, L):
        t = time.perf_counter()
        active[g.idx] += 1
        cut = phase(g, out, L)
        log.append((g.idx.size, time.perf_counter() - t))  # the rows this phase ran
        return cut

    for label, tpl, cols in _grids(args.grid):
        n = next(iter(cols.values())).size
        fluid.simulate_fluid_columns(tpl, cols, round_detail=0)  # warm-up (imports, caches)
        log.clear()
        active = np.zeros(n, dtype=np.int64)
        fluid._phase = timed
        t = time.perf_counter()
        out = fluid.simulate_fluid_columns(tpl, cols, round_detail=0)
        total = time.perf_counter() - t
        fluid._phase = phase
        a = np.array(log)
        print(f"{args.grid} {label}: {n} migrations in {total:.3f} s ({n / total:,.0f}/s), {len(a)} phases")
        print(f"  outside the phases (inputs, policy decisions, finishing): {total - a[:, 1].sum():.3f} s")
        for lo, hi in BANDS:
            m = (a[:, 0] >= lo) & (a[:, 0] < (hi or np.inf))
            rows = a[m, 0].sum()
            per = a[m, 1].sum() / max(rows, 1) * 1e6
            band = f">= {lo}" if hi is None else f"{lo}-{hi - 1}"
            print(
                f"  phases with {band:>9} migrations running: {int(m.sum()):4d} phases, "
                f"{a[m, 1].sum():.3f} s, {int(rows):8d} row-phases, {per:6.1f} us each"
            )
        rounds = out.scalars["rounds"]
        print(f"  rounds per migration: median {np.median(rounds):.0f}, p99 {np.percentile(rounds, 99):.0f}")
        print(
            f"  phases per migration: median {np.median(active):.0f}, p99 {np.percentile(active, 99):.0f}, "
            f"max {active.max()}; the slowest (they set the batch's phase count):"
        )
        for i in np.argsort(-active, kind="stable")[:5]:
            print(
                f"    {active[i]:4d} phases: {cols['vm.memory_gib'][i]:g} GiB, "
                f"{cols['network.bandwidth_gbit_s'][i]:g} Gbit/s, "
                f"{cols['workload.dirty_rate_pages_s'][i]:,.0f} pages/s -> {rounds[i]} rounds, "
                f"{out.scalars['stop_reason'][i]} at {float(out.scalars['total_time_s'][i]):.1f} s"
            )
        # the floor a lockstep batch cannot go below: its slowest migration run on its own
        # (every phase pays Python's per-call cost, however few migrations are still running)
        i = int(np.argmax(active))
        one = {k: v[i : i + 1] for k, v in cols.items()}
        t = time.perf_counter()
        fluid.simulate_fluid_columns(tpl, one, round_detail=0)
        alone = time.perf_counter() - t
        print(
            f"  the slowest migration alone: {alone:.3f} s ({alone / total:.0%} of the batch), "
            f"{alone / active[i] * 1e3:.2f} ms per phase"
        )
        prof = cProfile.Profile()
        prof.runcall(fluid.simulate_fluid_columns, tpl, cols, round_detail=0)
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(args.top)
        print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main()
