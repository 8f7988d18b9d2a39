"""All policies side by side: three workloads x 1 and 10 GbE on a 4 GiB VM, as a markdown table.

    python benchmarks/policy_table.py                 # page engine (default)
    python benchmarks/policy_table.py --engine fluid  # closed form, much faster

Workloads: ``idle`` (no writes); ``moderate`` (uniform, 5000 random page writes/s over all
memory); ``hot`` (hotcold, 100 000 page writes/s, 90 % of them into a 256 MiB hot set).
Every policy runs with its config-file defaults (``configs/policy/<name>.yaml``; QEMU-like
pre-copy gives up after ``timeout_s`` = 600 s, reported as not completed).
"""

from __future__ import annotations

import argparse
import time

import lmtoolkit as lmt
from lmtoolkit.engine import run_batch

POLICIES = (
    "qemu",
    "xen",
    "vmware",
    "vmware_vsphere7",
    "hyperv",
    "hyperv_2008r2",
    "postcopy",
    "hybrid",
    "stopcopy",
)
WORKLOADS = {
    "idle": ["workload=idle"],
    "moderate": ["workload=uniform", "workload.dirty_rate_pages_s=5000"],
    "hot": ["workload=hotcold", "workload.dirty_rate_pages_s=100000", "workload.hot_mib=256"],
}
NETWORKS = {"1 GbE": ["network=1gbe"], "10 GbE": ["network=10gbe"]}
VM = ["vm.memory_gib=4"]
GIB = 1024**3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("page", "fluid"), default="page")
    args = ap.parse_args(argv)
    keys, scns = [], []
    for wl, wo in WORKLOADS.items():
        for net, no in NETWORKS.items():
            for pol in POLICIES:
                cfg = lmt.compose([f"policy={pol}", f"engine={args.engine}"] + VM + wo + no)
                scns.append(lmt.build_scenario(cfg))
                keys.append((wl, net, pol))
    t0 = time.perf_counter()
    recs = run_batch(scns).records()
    wall = time.perf_counter() - t0
    print(f"4 GiB VM, engine={args.engine}, {len(scns)} migrations in {wall:.1f} s\n")
    print(
        "| workload | network | policy | total time (s) | downtime (ms) | GiB sent | rounds "
        "| converged | stop reason | max throttle | guest slowdown | post-copy faults |"
    )
    print("|---|---|---|---:|---:|---:|---:|:-:|---|---:|---:|---:|")
    for (wl, net, pol), r in zip(keys, recs):
        done = r.completed
        down = f"{r.downtime_s * 1000:.0f}" if done else "—"
        total = f"{r.total_time_s:.1f}" + ("" if done else " (gave up)")
        print(
            f"| {wl} | {net} | {pol} | {total} | {down} | {r.transferred_bytes / GIB:.2f} "
            f"| {r.rounds} | {'yes' if r.converged else 'no'} | {r.stop_reason} "
            f"| {r.throttle_max:.2f} | {r.guest_slowdown:.2f} | {r.postcopy_faults:.0f} |"
        )


if __name__ == "__main__":
    main()
