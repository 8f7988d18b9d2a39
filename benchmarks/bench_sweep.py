"""Sweep benchmarks (issues 4, 14): ``python -m benchmarks.bench_sweep [--repeats 3] [--json]``.

(0) issue 14's experiment end to end through ``lmtoolkit.sweep.run``, cache off: QEMU-like,
    uniform writes, 100 dirty rates (0-100,000 pages/s) x 10 links (1-100 Gbit/s) x 10 VM
    sizes (1-64 GiB) x 10 replicates = 100,000 points (10,000 distinct migrations: the fluid
    engine is seed-independent, replicates are computed once).  Goal: >= 300,000 points/s.
    The same with 100 replicates (1,000,000 points) written as zarr: its peak memory
    (goal <= 2 GiB).  Each case reports its stages (plan, simulate, assemble, write), the
    engine alone (``engine_points_per_s``) and the sweep's time against it.
(a) a 100,000-point fluid sweep end to end — axis expansion, Hydra composition, vectorised
    simulation, Dataset assembly and writing the netCDF file — through ``lmtoolkit.sweep.run``
    with the cache off.  The grid mirrors ``bench_engines``' fluid case so the two read side by
    side: QEMU-like, 7 VM sizes (1-64 GiB) x 3 links (1/10/25 GbE) x 2 workload shapes (uniform,
    hot/cold: a group swap) x 2,381 write rates (0-100,000 pages/s) = 100,002 points, no
    per-pre-copy-round detail (``sweep.round_detail`` is 0 beyond 10,000 points).
    Goal: >= 100,000 points/s.  Reported inline and with ``sweep.executor=processes``.
(b) ``experiment=fluid_map_100k`` (10 links x 10,000 log-spaced rates up to 2 M pages/s):
    many migrations never converge and run to the 600 s timeout, so the engine does far more
    rounds — engine-bound, shown for honesty.
(c) the page engine on ``experiment=quickstart`` (48 migrations): in-process sweep time and
    the wall time of the README's main command ``lmtk sweep experiment=quickstart`` (cold
    process: imports, composition, simulation, file, table and figure).

Every case runs in a fresh subprocess; "cold" is the first sweep in that process (it pays
one-off imports, e.g. xarray loading dask on first use), "warm" the median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

GRID_100K = [
    "+sweep.name=bench_fluid_100k",
    "engine=fluid",
    "policy=qemu",
    "vm=medium",
    "+sweep.axes.memory={key: vm.memory_gib, values: [1, 2, 4, 8, 16, 32, 64]}",
    "+sweep.axes.bandwidth={key: network.bandwidth_gbit_s, values: [1, 10, 25]}",
    "+sweep.axes.workload={key: workload, values: [uniform, hotcold]}",
    "+sweep.axes.dirty_rate={key: workload.dirty_rate_pages_s, values: {start: 0, stop: 100000, num: 2381}}",
]


#: issue 14's experiment: QEMU-like, uniform writes, 100 dirty rates x 10 links x 10 VM sizes x
#: 10 replicates = 100,000 points (10,000 distinct fluid migrations: replicates of a
#: seed-independent point are computed once)
GRID_ISSUE14 = [
    "+sweep.name=bench_issue14",
    "engine=fluid",
    "policy=qemu",
    "workload=uniform",
    "vm=medium",
    "sweep.replicates=10",
    "+sweep.axes.memory={key: vm.memory_gib, values: [1, 2, 3, 4, 6, 8, 12, 16, 32, 64]}",
    "+sweep.axes.bandwidth={key: network.bandwidth_gbit_s, values: [1, 2, 2.5, 5, 10, 20, 25, 40, 50, 100]}",
    "+sweep.axes.dirty_rate={key: workload.dirty_rate_pages_s, values: {start: 0, stop: 100000, num: 100}}",
]


def _overrides(case: str, results: str) -> list[str]:
    common = [f"paths.results_dir={results}", "sweep.cache=false", "sweep.progress=false"]
    if case.startswith("fluid100k"):
        ov = GRID_100K + common
        if case.endswith("processes"):
            ov += ["sweep.executor=processes", "sweep.workers=2"]
        return ov
    if case == "issue14":
        return GRID_ISSUE14 + common
    if case == "issue14-1M-zarr":
        ov = [o for o in GRID_ISSUE14 if not o.startswith("sweep.replicates")]
        return ov + ["sweep.replicates=100", "sweep.format=zarr"] + common
    if case == "fluidmap":
        return ["experiment=fluid_map_100k"] + common
    return ["experiment=quickstart"] + common


def _child(case: str, repeats: int, results: str) -> dict:
    from lmtoolkit.io import write_dataset
    from lmtoolkit.sweep import make_plan, run, run_chunk
    from lmtoolkit.sweep.execute import chunk_task
    from lmtoolkit.sweep.run import assemble
    from lmtoolkit.tasks import get_task

    ov = _overrides(case, results)
    times, n = [], 0
    for _ in range(repeats + 1):
        t = time.perf_counter()
        ds, info = run(ov)
        times.append(time.perf_counter() - t)
        n = info["points"]
    warm = statistics.median(times[1:])
    out = {
        "case": case,
        "points": n,
        "cold_s": round(times[0], 3),
        "warm_s": round(warm, 3),
        "cold_points_per_s": round(n / times[0]),
        "warm_points_per_s": round(n / warm),
        "dims": {k: int(v) for k, v in ds.sizes.items()},
    }
    # stage breakdown (warm, inline)
    t0 = time.perf_counter()
    plan = make_plan(ov)
    t1 = time.perf_counter()
    parts = [run_chunk(chunk_task(plan, s, e)) for s, e in plan.chunks]
    batch = get_task(plan.task).concat(parts)
    t2 = time.perf_counter()
    ds = assemble(plan, batch, "bench")
    t3 = time.perf_counter()
    write_dataset(ds, os.path.join(results, "stage.nc"))
    t4 = time.perf_counter()
    out["stages_s"] = {
        "plan (compose, expand)": round(t1 - t0, 3),
        "simulate": round(t2 - t1, 3),
        "assemble Dataset": round(t3 - t2, 3),
        "write netCDF": round(t4 - t3, 3),
    }
    out["engine_points_per_s"] = round(n / (t2 - t1))
    out["sweep_vs_engine_alone"] = round((t2 - t1) / warm, 3)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _run_case(case: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_sweep",
                "--child",
                case,
                "--repeats",
                str(repeats),
                "--results",
                d,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(p.stdout.strip().splitlines()[-1])


def _cli_wall() -> dict:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, LMT_RESULTS_DIR=d)
        t = time.perf_counter()
        subprocess.run(
            ["lmtk", "sweep", "experiment=quickstart"], env=env, check=True, capture_output=True, text=True
        )
        cold = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(
            ["lmtk", "sweep", "experiment=quickstart"], env=env, check=True, capture_output=True, text=True
        )
        cached = time.perf_counter() - t
    return {
        "case": "lmtk sweep experiment=quickstart (wall, fresh process)",
        "first_run_s": round(cold, 2),
        "rerun_from_cache_s": round(cached, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        with tempfile.TemporaryDirectory() as d:  # a child run by hand (no --results): nothing left behind
            print(json.dumps(_child(a.child, a.repeats, a.results or d)))
        return 0
    cases = ("issue14", "fluid100k", "fluid100k-processes", "fluidmap", "quickstart")
    rows = [_run_case(c, a.repeats) for c in cases] + [_run_case("issue14-1M-zarr", 1)]
    rows.append(_cli_wall())
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}\n")
    for r in rows:
        print(r["case"])
        for k, v in r.items():
            if k != "case":
                print(f"  {k:20s} {v}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
