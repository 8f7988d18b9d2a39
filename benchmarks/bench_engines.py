"""Engine benchmarks (issues 2, 14): run with ``python -m benchmarks.bench_engines``.

(a) page engine: 64 GiB VM, hot/cold workload (2 GiB hot set, 200,000 page writes/s),
    QEMU-like at 10 Gbit/s — goal (issue 14) <= 0.25 s per migration on one core; the same
    at 512 GiB — goal <= 1.5 s, peak memory <= 2x the dirty bitmap (one byte per page);
(b) fluid engine: 100,000 distinct scenarios in vectorised calls — goals (issue 14)
    >= 300,000 scenarios/s without per-round detail, >= 100,000/s with it; read against the
    closed-form geometric pre-copy model on the same columns (same process).

Each figure is the median of several repeats; peak memory is the process's max RSS growth
measured with ``resource.getrusage`` in a fresh subprocess per case.  A baseline (a 1 GiB idle
VM through the same engine, same process) is reported so that figures can be read as ratios
on machines of other speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def _page_case(memory_gib=64.0, hot_mib=2048.0, rate=200_000.0, gbit=10.0, seed=0):
    from lmtoolkit.engine import simulate_page
    from lmtoolkit.model import VM, HotColdWorkload, Network
    from lmtoolkit.policies import QemuPolicy
    from lmtoolkit.scenario import Scenario

    scn = Scenario(
        vm=VM(memory_gib=memory_gib),
        network=Network(bandwidth_gbit_s=gbit),
        workload=HotColdWorkload(dirty_rate_pages_s=rate, hot_mib=hot_mib),
        policy=QemuPolicy(),
        seed=seed,
    )
    t = time.perf_counter()
    rec = simulate_page(scn)
    return time.perf_counter() - t, rec


def _fluid_case(n=100_000, seed=0, round_detail=64):
    """n scenarios: 7 VM sizes x 3 links x continuous write rates x 2 workload shapes, QEMU-like,
    run through the columnar fluid path (what a sweep uses).  Timed end to end, input
    building included."""
    from lmtoolkit.engine.common import BatchResult
    from lmtoolkit.engine.fluid import simulate_fluid_columns
    from lmtoolkit.model import VM, HotColdWorkload, Network, UniformWorkload
    from lmtoolkit.policies import QemuPolicy
    from lmtoolkit.scenario import Scenario

    rng = np.random.default_rng(seed)
    cols = {
        "vm.memory_gib": rng.choice([1, 2, 4, 8, 16, 32, 64], n).astype(float),
        "network.bandwidth_gbit_s": rng.choice([1, 10, 25], n).astype(float),
        "workload.dirty_rate_pages_s": rng.uniform(0, 100_000, n),
    }
    half = n // 2
    templates = [
        UniformWorkload(dirty_rate_pages_s=1.0),
        HotColdWorkload(dirty_rate_pages_s=1.0, hot_mib=256.0),
    ]
    t = time.perf_counter()
    parts = []
    for i, wl in enumerate(templates):
        sl = slice(0, half) if i == 0 else slice(half, n)
        tpl = Scenario(
            vm=VM(memory_gib=64.0), workload=wl, network=Network(), policy=QemuPolicy(), engine="fluid"
        )
        parts.append(
            simulate_fluid_columns(tpl, {k: v[sl] for k, v in cols.items()}, round_detail=round_detail)
        )
    out = BatchResult.concat(parts)
    return time.perf_counter() - t, out


def _closed_form(n=100_000, seed=0):
    """The classic closed-form pre-copy model (geometric series of passes, Clark et al. NSDI
    2005 / Liu et al. HPDC 2011) on the same columns, vectorised: the baseline the fluid
    engine's speed is read against (same process, same machine)."""
    rng = np.random.default_rng(seed)
    mem = rng.choice([1, 2, 4, 8, 16, 32, 64], n).astype(float) * 2**30
    bw = rng.choice([1, 10, 25], n).astype(float) * 1e9 / 8
    rate = rng.uniform(0, 100_000, n) * 4096.0
    t = time.perf_counter()
    rho = rate / bw
    passes = np.where(
        rho < 1, np.minimum(30, np.ceil(np.log(0.3 * bw / mem) / np.log(np.maximum(rho, 1e-9)))), 30
    )
    total = mem / bw * np.where(rho < 1, (1 - rho ** (passes + 1)) / (1 - rho), passes)
    total.sum()
    return time.perf_counter() - t


def _child(case: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if case.startswith("page"):
        gib = 512.0 if case == "page512" else 64.0
        base = [_page_case(memory_gib=1.0, hot_mib=64, rate=0.0)[0] for _ in range(3)]
        # the high-water mark once the package is imported and a small run done: what follows
        # is the large run's own memory (the imports, ~100 MiB, are not the engine's)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times, rec = [], None
        for s in range(3):
            dt, rec = _page_case(memory_gib=gib, seed=s)
            times.append(dt)
        pages = int(gib * 2**30) // 4096
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        res = {
            "case": f"page {gib:g}GiB hotcold 2GiB-hot 200k/s 10GbE QEMU-like",
            "median_s": statistics.median(times),
            # the first run in a process also pays for the kernel's huge pages (numpy madvises
            # them for large arrays; THP 'madvise' compacts memory for the 1-byte-per-page state)
            "first_run_s": times[0],
            "goal_s": 1.5 if gib > 64 else 0.25,
            "baseline_1gib_idle_s": statistics.median(base),
            "ratio_to_baseline": statistics.median(times) / statistics.median(base),
            "rounds": rec.rounds,
            "total_time_s": rec.total_time_s,
            "downtime_s": rec.downtime_s,
            "converged": rec.converged,
            "dirty_bitmap_mib": pages / 2**20,  # one byte per page (numpy bool)
            "peak_rss_growth_mib": peak,
            "peak_over_bitmap": peak / (pages / 2**20),
        }
    else:
        res = {"case": "fluid 100k distinct scenarios (QEMU-like, 1-64 GiB, 1/10/25 GbE, 0-100k pages/s)"}
        base = statistics.median(_closed_form(seed=s) for s in range(3))
        res["closed_form_baseline_s"] = base
        for detail in (64, 0):
            times = []
            for s in range(3):
                dt, out = _fluid_case(seed=s, round_detail=detail)
                times.append(dt)
            res[f"round_detail_{detail}"] = {
                "median_s": statistics.median(times),
                "scenarios_per_s": 100_000 / statistics.median(times),
                "goal_per_s": 100_000 if detail else 300_000,
                "ratio_to_closed_form": statistics.median(times) / base,
            }
        res["converged_share"] = float(np.mean(out.scalars["converged"]))
        res["peak_rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["page", "page512", "fluid"])
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    for case in ("page", "page512", "fluid"):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_engines", "--child", case],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
