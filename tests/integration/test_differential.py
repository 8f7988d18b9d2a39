"""Differential test: the fluid engine against the page engine (the reference).

Random scenarios over every policy and workload shape (sequential included), fixed seeds,
plus a boundary sweep near QEMU-like convergence.  Goals (issue 12): total time and bytes
p99 of |fluid / page - 1| <= 3 %; downtime p90 of the error <= 10 % (or <= 5 ms absolute);
no convergence verdict flips beyond those where page-engine seeds disagree among themselves.

The default tier runs a reduced set (:data:`N_FAST` scenarios, < 60 s on one core); the
full set (:data:`N_FULL` + the boundary sweep) runs under ``-m slow``.  Run this file as a
script to print the percentiles: ``python tests/integration/test_differential.py [N]``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_FAST = 60
N_FULL = 660
#: page-engine seeds used to tell a real verdict flip from a verdict the page engine itself
#: is not sure of (a scenario on the convergence boundary)
SEEDS = (11, 12, 13)

POLICIES = (
    "qemu",
    "qemu_ac",
    "qemu_xbzrle",
    "xen",
    "xen_v2",
    "vmware",
    "hyperv",
    "hyperv_2008r2",
    "postcopy",
    "hybrid",
    "stopcopy",
)
WORKLOADS = ("idle", "uniform", "hotcold", "zipf", "sequential", "sequential_hotcold")


def make_policy(name: str, rng: np.random.Generator, timeout_s: float):
    from lmtoolkit.policies import (
        HybridPolicy,
        HypervPolicy,
        PostcopyPolicy,
        QemuPolicy,
        StopCopyPolicy,
        VmwarePolicy,
        XenPolicy,
    )

    limit = float(rng.choice([30.0, 100.0, 300.0, 1000.0]))
    if name == "qemu":
        return QemuPolicy(downtime_limit_ms=limit, timeout_s=timeout_s)
    if name == "qemu_ac":
        return QemuPolicy(downtime_limit_ms=limit, auto_converge=True, timeout_s=timeout_s)
    if name == "qemu_xbzrle":
        return QemuPolicy(
            downtime_limit_ms=limit,
            xbzrle=True,
            xbzrle_cache_mib=float(rng.choice([16.0, 64.0, 256.0])),
            timeout_s=timeout_s,
        )
    if name == "xen":
        return XenPolicy(timeout_s=timeout_s)
    if name == "xen_v2":
        return XenPolicy(version="v2", timeout_s=timeout_s)
    if name == "vmware":
        return VmwarePolicy(timeout_s=timeout_s)
    if name == "hyperv":
        return HypervPolicy(timeout_s=timeout_s)
    if name == "hyperv_2008r2":
        return HypervPolicy(profile="2008r2", timeout_s=timeout_s)
    if name == "postcopy":
        return PostcopyPolicy(timeout_s=timeout_s)
    if name == "hybrid":
        return HybridPolicy(
            downtime_limit_ms=limit, precopy_passes=int(rng.integers(1, 4)), timeout_s=timeout_s
        )
    if name == "stopcopy":
        return StopCopyPolicy(timeout_s=timeout_s)
    raise ValueError(name)


def make_workload(name: str, rng: np.random.Generator, mem_mib: float, rate: float):
    from lmtoolkit.model import HotColdWorkload, IdleWorkload, UniformWorkload, ZipfWorkload

    hot = float(min(mem_mib, 2.0 ** rng.uniform(4, 9)))
    if name == "idle":
        return IdleWorkload()
    if name == "uniform":
        wss = None if rng.random() < 0.5 else float(min(mem_mib, 2.0 ** rng.uniform(5, 11)))
        return UniformWorkload(dirty_rate_pages_s=rate, wss_mib=wss)
    if name == "hotcold":
        return HotColdWorkload(
            dirty_rate_pages_s=rate, hot_mib=hot, hot_fraction=float(rng.uniform(0.6, 0.98))
        )
    if name == "zipf":
        return ZipfWorkload(dirty_rate_pages_s=rate, zipf_s=float(rng.uniform(0.7, 1.3)))
    # the writer's phase (workload.sweep_start) follows from the rate: no extra draw, so the
    # rest of the scenario set is what it was before the phase existed
    phase = float((rate * 0.0137) % 1.0)
    if name == "sequential":
        return UniformWorkload(
            dirty_rate_pages_s=rate,
            pattern="sequential",
            wss_mib=float(min(mem_mib, 2.0 ** rng.uniform(5, 11))),
            sweep_start=phase,
        )
    if name == "sequential_hotcold":
        return HotColdWorkload(
            dirty_rate_pages_s=rate,
            hot_mib=hot,
            pattern="sequential",
            hot_fraction=float(rng.uniform(0.6, 0.98)),
            sweep_start=phase,
        )
    raise ValueError(name)


def scenarios(n: int, seed: int = 20240612):
    """``n`` random scenarios (fixed seed): every policy x workload in turn, random sizes and
    rates (write rate relative to the link from 1 % to 150 %)."""
    from lmtoolkit.model import VM, Network
    from lmtoolkit.scenario import Scenario

    rng = np.random.default_rng(seed)
    out = []
    combos = [(p, w) for p in POLICIES for w in WORKLOADS]
    order = rng.permutation(len(combos))
    for i in range(n):
        pol_name, wl_name = combos[order[i % len(combos)]]
        mem_gib = float(2.0 ** rng.uniform(-2, 1.5))
        gbit = float(2.0 ** rng.uniform(-1, 3.3))
        net = Network(bandwidth_gbit_s=gbit)
        link_pages_s = net.payload_bytes_s() / 4096
        rho = float(10 ** rng.uniform(-2, np.log10(1.5)))
        wl = make_workload(wl_name, rng, mem_gib * 1024, rho * link_pages_s)
        timeout = float(rng.choice([60.0, 120.0]))
        vm = VM(memory_gib=mem_gib, zero_fraction=float(rng.choice([0.0, 0.1, 0.3])))
        out.append(
            (
                f"{i:03d}-{pol_name}-{wl_name}",
                Scenario(vm=vm, workload=wl, network=net, policy=make_policy(pol_name, rng, timeout)),
            )
        )
    return out


def make_tuned_policy(name: str, rng: np.random.Generator, timeout_s: float):
    """A policy with its settings drawn too (dirty-log clears, multifd, caps, auto-converge
    steps, XBZRLE, stop overhead; Xen versions and pass caps; vMotion SDPS and goals;
    Hyper-V profiles and goals)."""
    from lmtoolkit.policies import HybridPolicy, HypervPolicy, QemuPolicy, VmwarePolicy, XenPolicy

    limit = float(rng.choice([30.0, 100.0, 300.0, 1000.0]))
    if name in ("qemu", "hybrid"):
        kw = dict(
            downtime_limit_ms=limit,
            timeout_s=timeout_s,
            dirty_clear=str(rng.choice(["chunk", "send", "sync"])),
            clear_bitmap_shift=int(rng.choice([12, 14, 18])),
            multifd_channels=int(rng.choice([0, 0, 2, 8])),
            max_bandwidth_mib_s=None if rng.random() < 0.5 else float(rng.choice([32, 128, 1024])),
            auto_converge=bool(rng.random() < 0.3),
            stop_overhead_ms=float(rng.choice([0.0, 5.0])),
        )
        if not kw["multifd_channels"] and rng.random() < 0.25:
            kw["xbzrle"] = True  # QEMU refuses XBZRLE with multifd
        if kw["auto_converge"]:
            kw.update(
                cpu_throttle_initial=float(rng.choice([20, 50])),
                cpu_throttle_increment=float(rng.choice([5, 10, 30])),
            )
        if name == "qemu":
            return QemuPolicy(**kw)
        return HybridPolicy(precopy_passes=int(rng.integers(1, 4)), **kw)
    if name == "xen":
        return XenPolicy(
            timeout_s=timeout_s,
            version=str(rng.choice(["classic", "v2"])),
            max_rounds=None if rng.random() < 0.5 else int(rng.integers(2, 10)),
        )
    if name == "vmware":
        return VmwarePolicy(
            timeout_s=timeout_s,
            sdps=str(rng.choice(["dynamic", "off"])),
            switchover_goal_ms=float(rng.choice([100, 500])),
        )
    return HypervPolicy(
        timeout_s=timeout_s,
        profile=str(rng.choice(["2012r2", "2008r2"])),
        remaining_goal_ms=float(rng.choice([100, 300])),
    )


def scenarios_tuned(n: int, seed: int):
    """``n`` random scenarios whose VM, link and policy settings are drawn too (the set above
    keeps them at their defaults): link efficiency, latency and streams, 2 MiB pages, the
    Linux zero layout, vCPUs, device state, and :func:`make_tuned_policy`'s settings."""
    from lmtoolkit.model import VM, Network
    from lmtoolkit.model.vm import tracked_page_kib
    from lmtoolkit.scenario import Scenario

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mem_gib = float(2.0 ** rng.uniform(-2, 1.5))
        net = Network(
            bandwidth_gbit_s=float(2.0 ** rng.uniform(-1, 3.3)),
            latency_ms=float(rng.choice([0.0, 0.2, 5.0, 50.0])),
            efficiency=float(rng.choice([0.94, 0.7])),
            streams=int(rng.choice([1, 4])),
        )
        page_kib = int(rng.choice([4, 4, 4, 2048]))
        # a huge-page guest is whole pages (VM refuses others); the engines always ran the
        # whole pages, so the scenarios are those they were
        mem_gib = math.floor(mem_gib * 2**20 / page_kib) * page_kib / 2**20 if page_kib > 64 else mem_gib
        rho = float(10 ** rng.uniform(-2, np.log10(1.5)))
        wl_name = str(rng.choice(["uniform", "hotcold", "zipf", "sequential", "sequential_hotcold"]))
        # the write rate in the pages the migration tracks (4 KiB ones for 2 MiB pages)
        wl = make_workload(
            wl_name, rng, mem_gib * 1024, rho * net.payload_bytes_s() / (tracked_page_kib(page_kib) * 1024)
        )
        pol_name = str(rng.choice(["qemu", "qemu", "qemu", "xen", "vmware", "hyperv", "hybrid"]))
        timeout = float(rng.choice([60.0, 120.0]))
        pol = make_tuned_policy(pol_name, rng, timeout)
        vm = VM(
            memory_gib=mem_gib,
            page_size_kib=page_kib,
            zero_fraction=float(rng.choice([0.0, 0.3])),
            zero_layout=str(rng.choice(["spread", "linux"])),
            vcpus=int(rng.choice([1, 2, 8])),
            device_state_mib=float(rng.choice([0.25, 16.0])),
        )
        if pol.network_streams_unused() is not None:
            # network.streams is vMotion's vmknics; a policy that opens its own streams
            # refuses it (the streams drawn above keep the random sequence as it was)
            net = dataclasses.replace(net, streams=1)
        name = f"{i:03d}-{pol_name}-{wl_name}-p{page_kib}"
        out.append((name, Scenario(vm=vm, workload=wl, network=net, policy=pol)))
    return out


def scenarios_hosted(n: int, seed: int):
    """``n`` random scenarios over what neither set above draws: host cores, NUMA and ECC,
    storage migration, background traffic and TCP windows, post-copy variants, timed hybrid
    switches, QEMU versions and populate rates, Xen thresholds, vMotion profiles and
    encryption, Hyper-V transports and pass caps, checksums, and phased and clock-paced
    workloads."""
    from lmtoolkit.model import VM, Host, HotColdWorkload, Network, PhasedWorkload, UniformWorkload
    from lmtoolkit.model.storage import Storage
    from lmtoolkit.policies import (
        HybridPolicy,
        HypervPolicy,
        PostcopyPolicy,
        QemuPolicy,
        StopCopyPolicy,
        VmwarePolicy,
        XenPolicy,
    )
    from lmtoolkit.scenario import Scenario

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mem = float(2.0 ** rng.uniform(-2, 1.5))
        net = Network(
            bandwidth_gbit_s=float(2.0 ** rng.uniform(-1, 3.3)),
            background_gbit_s=float(rng.choice([0.0, 0.0, 0.3])),
            tcp_window_mib=None if rng.random() < 0.7 else float(rng.choice([0.25, 4.0])),
            latency_ms=float(rng.choice([0.2, 20.0])),
            streams=int(rng.choice([1, 2])),
        )
        rate = float(10 ** rng.uniform(-2, np.log10(1.5))) * net.payload_bytes_s() / 4096
        kind = str(rng.choice(["uniform", "hotcold", "sequential", "phased", "paced"]))
        wss = float(min(mem * 1024, 2 ** rng.uniform(5, 10)))
        if kind == "phased":
            burst = HotColdWorkload(
                dirty_rate_pages_s=rate * float(rng.choice([0.1, 3.0])), hot_mib=min(64.0, mem * 1024)
            )
            wl = PhasedWorkload(
                phases=(UniformWorkload(dirty_rate_pages_s=rate, wss_mib=wss), burst),
                durations_s=(float(rng.uniform(1, 10)), float(rng.uniform(1, 10))),
            )
        elif kind == "paced":
            pacing = str(rng.choice(["wall", "guest"]))
            peak = float(rate * rng.choice([1.5, 3.0]))  # (drawn for either: the set stays as it was)
            wl = UniformWorkload(
                dirty_rate_pages_s=rate,
                pacing=pacing,
                max_rate_pages_s=peak if pacing == "wall" else None,  # a guest-paced writer has none
                wss_mib=wss,
            )
        else:
            wl = make_workload(kind, rng, mem * 1024, rate)
        name = str(rng.choice(["qemu_ac", "postcopy", "hybrid_t", "xen", "vmware", "hyperv", "stopcopy"]))
        tmo = float(rng.choice([60.0, 120.0]))
        if name == "qemu_ac":
            pol = QemuPolicy(
                timeout_s=tmo,
                auto_converge=True,
                qemu_version=str(rng.choice(["10.1", "8.2", "6.2"])),
                max_cpu_throttle=float(rng.choice([50, 99])),
                dst_populate_mib_s=None if rng.random() < 0.7 else 500.0,
            )
        elif name == "postcopy":
            pol = PostcopyPolicy(
                timeout_s=tmo,
                prepaging=bool(rng.random() < 0.5),
                access_factor=float(rng.choice([0.5, 1.0, 2.0])),
                fault_overhead_us=float(rng.choice([20, 200])),
            )
        elif name == "hybrid_t":
            pol = HybridPolicy(
                timeout_s=tmo,
                postcopy_after_s=float(rng.uniform(0.5, 20)),
                prepaging=bool(rng.random() < 0.5),
            )
        elif name == "xen":
            pol = XenPolicy(
                timeout_s=tmo,
                max_factor=None if rng.random() < 0.5 else float(rng.choice([2.0, 3.0])),
                dirty_threshold_pages=None if rng.random() < 0.5 else int(rng.choice([50, 5000])),
            )
        elif name == "vmware":
            pol = VmwarePolicy(
                timeout_s=tmo,
                encryption=bool(rng.random() < 0.5),
                stream_autoscale=bool(rng.random() < 0.5),
                profile=str(rng.choice(["generic", "vsphere5", "vsphere7"])),
            )
        elif name == "hyperv":
            pol = HypervPolicy(
                timeout_s=tmo,
                transport=str(rng.choice(["tcp", "compression", "smb"])),
                max_passes=None if rng.random() < 0.5 else int(rng.integers(2, 10)),
            )
        else:
            pol = StopCopyPolicy(timeout_s=tmo, verify_checksums=bool(rng.random() < 0.5))
        host = Host(
            spare_cores=float(rng.choice([0.5, 4.0])),
            src_numa_nodes=int(rng.choice([1, 2])),
            dst_numa_nodes=int(rng.choice([1, 2])),
            ecc=bool(rng.random() < 0.7),
        )
        mode = str(rng.choice(["shared", "shared", "migrate"]))
        disk_gib = float(rng.choice([4.0, 40.0]))  # (drawn for either mode: the set stays as it was)
        storage = Storage(mode=mode, disk_gib=disk_gib) if mode == "migrate" else Storage()
        vm = VM(
            memory_gib=mem,
            zero_fraction=float(rng.choice([0.0, 0.3])),
            compressibility=float(rng.choice([0.2, 0.5, 0.9])),
        )
        if pol.network_streams_unused() is not None:
            net = dataclasses.replace(net, streams=1)  # vMotion's vmknics only (as above)
        scn = Scenario(vm=vm, workload=wl, network=net, policy=pol, host=host, storage=storage)
        out.append((f"{i:03d}-{name}-{kind}", scn))
    return out


def boundary(n: int = 24):
    """QEMU-like migrations around the convergence boundary (rate swept across it)."""
    from lmtoolkit.model import VM, HotColdWorkload, Network, UniformWorkload, ZipfWorkload
    from lmtoolkit.policies import QemuPolicy
    from lmtoolkit.scenario import Scenario

    out = []
    shapes = [
        lambda r: UniformWorkload(dirty_rate_pages_s=r),
        lambda r: HotColdWorkload(dirty_rate_pages_s=r, hot_mib=256),
        lambda r: ZipfWorkload(dirty_rate_pages_s=r),
    ]
    for i, rate in enumerate(np.geomspace(5_000, 120_000, n)):
        wl = shapes[i % len(shapes)](float(rate))
        out.append(
            (
                f"b{i:02d}-{wl.name}",
                Scenario(
                    vm=VM(memory_gib=1.0),
                    workload=wl,
                    network=Network(bandwidth_gbit_s=1.0),
                    policy=QemuPolicy(timeout_s=60.0),
                ),
            )
        )
    return out


def compare(named):
    """Per-scenario errors of the fluid engine against the page engine (seed ``SEEDS[0]``),
    and whether the page engine's own seeds agree on the verdict."""
    from lmtoolkit.engine import simulate_fluid, simulate_page

    scns = [s for _, s in named]
    fluid = simulate_fluid([dataclasses.replace(s, engine="fluid") for s in scns]).records()
    rows = []
    for (name, s), f in zip(named, fluid):
        p = simulate_page(dataclasses.replace(s, seed=SEEDS[0]))
        verdicts = {(p.converged, p.completed)}
        if (f.converged, f.completed) != (p.converged, p.completed):
            for sd in SEEDS[1:]:
                q = simulate_page(dataclasses.replace(s, seed=sd))
                verdicts.add((q.converged, q.completed))
        rel = lambda a, b: abs(a / b - 1.0) if b else abs(a - b)  # noqa: E731
        both = np.isfinite(p.downtime_s) and np.isfinite(f.downtime_s)
        rows.append(
            dict(
                name=name,
                total=rel(f.total_time_s, p.total_time_s),
                bytes=rel(f.transferred_bytes, p.transferred_bytes),
                down=rel(f.downtime_s, p.downtime_s)
                if both
                else (0.0 if np.isnan(p.downtime_s) and np.isnan(f.downtime_s) else np.inf),
                down_abs=abs(f.downtime_s - p.downtime_s) if both else 0.0,
                flip=(f.converged, f.completed) != (p.converged, p.completed),
                rounds_ok=abs(f.rounds - p.rounds) <= max(1, 0.1 * p.rounds),
                seed_disagree=len(verdicts) > 1,
                page=p,
                fluid=f,
            )
        )
    return rows


def summary(rows) -> dict:
    tot = np.array([r["total"] for r in rows])
    byt = np.array([r["bytes"] for r in rows])
    # downtime: an error counts when it is both > 10 % and > 5 ms
    down = np.array([r["down"] if r["down_abs"] > 0.005 or not np.isfinite(r["down"]) else 0.0 for r in rows])
    flips = [r["name"] for r in rows if r["flip"] and not r["seed_disagree"]]
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    return dict(
        n=len(rows),
        total_p50=pct(tot, 50),
        total_p90=pct(tot, 90),
        total_p99=pct(tot, 99),
        bytes_p50=pct(byt, 50),
        bytes_p90=pct(byt, 90),
        bytes_p99=pct(byt, 99),
        down_p50=pct(down, 50),
        down_p90=pct(down, 90),
        down_p99=pct(down, 99),
        flips=flips,
        seed_flips=sum(r["flip"] and r["seed_disagree"] for r in rows),
        # rounds (dirty syncs) within +-1 or 10 %: the per-round trajectories researchers plot
        rounds_share=float(np.mean([r["rounds_ok"] for r in rows])),
    )


def check(s: dict) -> None:
    assert s["total_p99"] <= 0.03, s
    assert s["bytes_p99"] <= 0.03, s
    assert s["down_p90"] <= 0.10, s
    assert not s["flips"], s
    # measured: 680 of 684 (the misses: a 100 ms check more or less per phase tips a
    # non-converging migration onto another phase length, e.g. b20-zipf 350 vs 256 rounds)
    assert s["rounds_share"] >= 0.98, s


def test_differential_reduced():
    check(summary(compare(scenarios(N_FAST))))


@pytest.mark.slow
def test_differential_full():
    check(summary(compare(scenarios(N_FULL) + boundary())))


def check_tuned(s: dict, max_flips: int = 0) -> None:
    """The tuned set: near the threshold a sequential writer's convergence turns on its phase
    (one of the 80 fast scenarios, 077, converges after 30 rounds, 13.6 s in the page engine and
    12 rounds, 11.9 s in the fluid engine — it had been 893: its p99 is not held).  While pre-copy tracked whole 2 MiB pages, near the
    threshold the page engine's whole pages and the fluid engine's expected ones could fall
    either side of it (2 flips in 600); the 2 MiB guests' pre-copy now tracks 4 KiB pages."""
    assert s["total_p90"] <= 0.02, s
    assert s["bytes_p90"] <= 0.02, s
    assert len(s["flips"]) <= max_flips, s
    assert s["rounds_share"] >= 0.95, s


def test_differential_tuned_reduced():
    """80 scenarios with tuned settings (measured: total and bytes p90 0.30 %, no flip; 0.62 %
    while 2 MiB pages were tracked whole; a hybrid run under the Linux zero layout flipped
    before both engines planned the phases after the first pass along the scan profile)."""
    check_tuned(summary(compare(scenarios_tuned(80, seed=1))))


@pytest.mark.slow
def test_differential_tuned_full():
    """600 tuned scenarios (measured: total p90 0.11 %, p99 1.7 %, no flip (session 20); while 2 MiB pages
    were tracked whole p90 0.70 %, p99 8.0 % and 2 flips, hybrid migrations whose last pass left
    the bitmap within a 2 MiB page of the threshold: 304 and 532)."""
    check_tuned(summary(compare(scenarios_tuned(600, seed=3))))


def test_differential_hosted_reduced():
    """60 scenarios of :func:`scenarios_hosted` (measured: total p99 1.1 %, no flip; a phased
    workload's flip and p99 8.1 % before the fluid engine followed its phases in time)."""
    s = summary(compare(scenarios_hosted(60, seed=1)))
    check(s)


@pytest.mark.slow
def test_differential_hosted_full():
    """300 scenarios of :func:`scenarios_hosted` (measured: total p90 0.19 %, p99 2.4 %, no
    flip; a phased post-copy run among them filled memory before the page engine's phased
    sampler got past a phase end hidden by rounding)."""
    check(summary(compare(scenarios_hosted(300, seed=2))))


def report(rows, worst: int = 12) -> str:
    s = summary(rows)
    lines = [
        f"n={s['n']}  total p50/p90/p99 = {s['total_p50']:.2%} / {s['total_p90']:.2%} / "
        f"{s['total_p99']:.2%};  bytes {s['bytes_p50']:.2%} / {s['bytes_p90']:.2%} / "
        f"{s['bytes_p99']:.2%};  downtime {s['down_p50']:.2%} / {s['down_p90']:.2%} / "
        f"{s['down_p99']:.2%};  flips {len(s['flips'])} (+{s['seed_flips']} seed-uncertain);  "
        f"rounds within +-1/10 % {s['rounds_share']:.1%}"
    ]
    for r in sorted(rows, key=lambda r: -max(r["total"], r["bytes"], min(r["down"], 9.99)))[:worst]:
        p, f = r["page"], r["fluid"]
        lines.append(
            f"  {r['name']:34s} T {p.total_time_s:8.2f}/{f.total_time_s:<8.2f} "
            f"B {p.transferred_bytes / 2**20:8.0f}/{f.transferred_bytes / 2**20:<8.0f} "
            f"D {p.downtime_s * 1000:8.1f}/{f.downtime_s * 1000:<8.1f} "
            f"c {p.converged:d}/{f.converged:d} r {p.rounds}/{f.rounds}"
            f"{'  FLIP' if r['flip'] else ''}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_FAST
    t0 = time.time()
    named = scenarios(n) + (boundary() if "--boundary" in sys.argv else [])
    if "--tuned" in sys.argv:
        named = scenarios_tuned(n, seed=3)
    rows = compare(named)
    print(report(rows, worst=int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 12))
    print(f"{time.time() - t0:.1f} s")
