"""Engine benchmarks (issue 2): run with ``python benchmarks/bench_engines.py``.

(a) page engine: 64 GiB VM, hot/cold workload (2 GiB hot set, 200,000 page writes/s),
    QEMU-like at 10 Gbit/s — goal <= 0.5 s per migration on one core;
(b) fluid engine: 100,000 scenarios in one vectorised call — goal >= 100,000 scenarios/s.

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


def _child(case: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if case == "page":
        base = [_page_case(memory_gib=1.0, hot_mib=64, rate=0.0)[0] for _ in range(3)]
        times, rec = [], None
        for s in range(3):
            dt, rec = _page_case(seed=s)
            times.append(dt)
        res = {
            "case": "page 64GiB hotcold 200k/s 10GbE",
            "median_s": statistics.median(times),
            "baseline_1gib_idle_s": statistics.median(base),
            "rounds": rec.rounds,
            "total_time_s": rec.total_time_s,
            "downtime_s": rec.downtime_s,
            "converged": rec.converged,
        }
    else:
        res = {"case": "fluid 100k scenarios (QEMU-like, 1-64 GiB, 1/10/25 GbE, 0-100k pages/s)"}
        for detail in (64, 0):
            times = []
            for s in range(3):
                dt, out = _fluid_case(seed=s, round_detail=detail)
                times.append(dt)
            res[f"round_detail_{detail}"] = {
                "median_s": statistics.median(times),
                "scenarios_per_s": 100_000 / statistics.median(times),
            }
        res["converged_share"] = float(np.mean(out.scalars["converged"]))
    res["peak_rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["page", "fluid"])
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    for case in ("page", "fluid"):
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
