"""Engine behaviour: analytic limits, page/fluid agreement, determinism, Xen/stop-copy rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lmtoolkit.model import HotColdWorkload, UniformWorkload
from lmtoolkit.policies import QemuPolicy, StopCopyPolicy, XenPolicy
from tests.conftest import run, scenario

ENGINES = ["page", "fluid"]


def expected_idle(scn):
    """Analytic one-pass migration: every page once, plus device state (bytes, seconds), and
    the switchover's one-way crossings of the link before the destination runs the VM."""
    vm, pol = scn.vm, scn.policy
    rate = scn.network.payload_bytes_s()
    nz, z = vm.nonzero_pages, vm.zero_pages
    if not pol.detects_zero_pages:  # Xen: every page whole
        nz, z = nz + z, 0
    nbytes = nz * (vm.page_bytes + pol.page_header_bytes) + z * pol.zero_page_bytes + vm.device_state_bytes
    t_zero = max(pol.zero_page_bytes / rate, vm.page_bytes / (scn.host.zero_scan_gib_s * 2**30))
    t = nz * (vm.page_bytes + pol.page_header_bytes) / rate + z * t_zero + vm.device_state_bytes / rate
    return nbytes, t + pol.switchover_trips * scn.network.latency_ms / 1000.0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", [XenPolicy(), QemuPolicy(), StopCopyPolicy()])
def test_idle_vm_time_is_bytes_over_bandwidth(engine, policy):
    scn = scenario(memory_gib=1.0, zero_fraction=0.25, policy=policy, engine=engine)
    rec = run(scn)
    nbytes, t = expected_idle(scn)
    assert rec.transferred_bytes == pytest.approx(nbytes, rel=1e-9)
    assert rec.total_time_s == pytest.approx(t, rel=1e-9)
    assert rec.completed and rec.converged == (policy.name != "stopcopy")


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_pages_cost_almost_nothing(engine):
    full = run(scenario(memory_gib=1.0, zero_fraction=0.0, policy=QemuPolicy(), engine=engine))
    empty = run(scenario(memory_gib=1.0, zero_fraction=1.0, policy=QemuPolicy(), engine=engine))
    assert empty.transferred_bytes < 0.01 * full.transferred_bytes
    assert empty.total_time_s < 0.05 * full.total_time_s
    # ... but not under Xen, which sends them whole
    xen = run(scenario(memory_gib=1.0, zero_fraction=1.0, policy=XenPolicy(), engine=engine))
    assert xen.transferred_bytes == pytest.approx(full.transferred_bytes)


def test_stopcopy_downtime_is_total_time_and_pages_sent_once():
    rec = run(scenario(workload=UniformWorkload(dirty_rate_pages_s=50_000), policy=StopCopyPolicy()))
    assert rec.downtime_s == pytest.approx(rec.total_time_s)
    assert rec.rounds == 0 and rec.stop_reason == "no_precopy"


@pytest.mark.parametrize("gbit,rate", [(1, 5_000), (1, 20_000), (10, 50_000), (10, 150_000), (1, 26_000)])
@pytest.mark.parametrize("policy", [QemuPolicy(), XenPolicy()])
def test_page_and_fluid_agree_on_uniform_workloads(gbit, rate, policy):
    wl = UniformWorkload(dirty_rate_pages_s=rate)
    page = run(scenario(memory_gib=1.0, workload=wl, policy=policy, gbit=gbit, engine="page"))
    fluid = run(scenario(memory_gib=1.0, workload=wl, policy=policy, gbit=gbit, engine="fluid"))
    assert fluid.total_time_s == pytest.approx(page.total_time_s, rel=0.10)
    assert fluid.transferred_bytes == pytest.approx(page.transferred_bytes, rel=0.10)
    assert fluid.converged == page.converged


def test_same_seed_same_output_other_seed_differs():
    wl = HotColdWorkload(dirty_rate_pages_s=30_000, hot_mib=64)
    a = run(scenario(workload=wl, seed=7))
    b = run(scenario(workload=wl, seed=7))
    c = run(scenario(workload=wl, seed=8))
    assert a == b
    assert (a.total_time_s, a.transferred_bytes) != (c.total_time_s, c.transferred_bytes)


def test_xen_classic_caps_at_29_live_rounds_and_v2_at_5():
    hot = HotColdWorkload(dirty_rate_pages_s=50_000, hot_mib=64)
    classic = run(scenario(workload=hot, policy=XenPolicy()))
    v2 = run(scenario(workload=hot, policy=XenPolicy(version="v2")))
    # DEF_MAX_ITERS 29: 29 live passes, then the suspended one (the stop round)
    assert (classic.rounds, classic.stop_reason, classic.converged) == (29, "max_rounds", False)
    assert (v2.rounds, v2.stop_reason) == (5, "max_rounds")
    assert classic.completed and classic.downtime_s > 0.1


def test_xen_stops_after_three_times_memory():
    hot = HotColdWorkload(dirty_rate_pages_s=50_000, hot_mib=64)
    rec = run(scenario(workload=hot, policy=XenPolicy(max_rounds=10_000)))
    assert rec.stop_reason == "max_sent"
    assert 3 * rec.memory_bytes < rec.precopy_bytes < 3.2 * rec.memory_bytes


def test_xen_converges_below_50_dirty_pages():
    rec = run(scenario(workload=UniformWorkload(dirty_rate_pages_s=2_000), policy=XenPolicy(), gbit=10))
    assert rec.converged and rec.stop_reason == "converged"
    assert rec.round_detail[-1].kind == "stop" and rec.round_detail[-1].dirty_pages < 50


@pytest.mark.parametrize("engine", ENGINES)
def test_unconvergeable_migration_times_out_with_rounds_and_bytes(engine):
    hot = HotColdWorkload(dirty_rate_pages_s=80_000, hot_mib=128)
    rec = run(scenario(workload=hot, policy=QemuPolicy(timeout_s=60), engine=engine))
    assert not rec.converged and not rec.completed and rec.stop_reason == "timeout"
    assert 60 <= rec.total_time_s < 61 and np.isnan(rec.downtime_s)
    assert rec.rounds > 10 and rec.transferred_bytes > rec.memory_bytes


def test_sequential_writes_sweep_the_working_set():
    from lmtoolkit.model.workload import UniformWorkload as U

    wl = U(dirty_rate_pages_s=1000, wss_mib=40, pattern="sequential")  # 10240 pages
    smp = wl.sampler(262144, 4096, np.random.default_rng(0))
    p, t = smp.sample(0.0, 2.0)
    assert p.size == 2000 and np.all(np.diff(np.sort(p)) == 1)
    p2, _ = smp.sample(2.0, 20.0)  # 18,000 writes wrap a 10,240-page set
    assert p2.size == 10240


#: a sequential writer in passes shorter than one sweep of its 512 MiB set (2 GiB, default
#: link): the page engine's stop set and downtime.  Its cursor is deterministic, so every seed
#: gives the same (seeds 0-2: 4,522 pages, 16.117 ms); recomputed by the slow test below.
SEQ_SHORT_PASSES = (
    ["policy=qemu", "vm.zero_fraction=0.99", "workload=uniform", "workload.pattern=sequential"]
    + ["workload.dirty_rate_pages_s=63477.3"],
    4522.0,
    0.016117,
)


def test_fluid_sequential_pending_pages_lie_behind_the_write_cursor():
    """Pages a sequential writer dirties in a pass shorter than its sweep: the pending pages
    of its cursor's bin are the ones it wrote last, right behind it.  Spread evenly over the
    bin, the writes ahead of the cursor hit them: the stop set came out 4,040 pages (-10.7 %)
    and the downtime 14.43 ms.  The page engine has no seed spread here, so 1 %."""
    import lmtoolkit as lmt

    overrides, stop_pages, downtime = SEQ_SHORT_PASSES
    ds = lmt.simulate(overrides + ["engine=fluid"])
    assert ds.round_dirty_pages.values[-1] == pytest.approx(stop_pages, rel=0.01)
    assert ds.downtime.item() == pytest.approx(downtime, rel=0.01)


@pytest.mark.slow
def test_fluid_sequential_writer_at_the_link_rate_keeps_to_the_page_engine():
    """A sequential writer near the (latency-bound) link rate, its passes shorter than a sweep:
    the writer's new pages lie next to the unsent end of its last sweep.  The fluid engine took
    179.7 s and 91 rounds for the page engine's 245.7 s and 237 (every seed the same); now
    245.5 s, 236.  Also recomputes :data:`SEQ_SHORT_PASSES`."""
    import lmtoolkit as lmt

    overrides, stop_pages, downtime = SEQ_SHORT_PASSES
    for seed in (0, 1):
        ds = lmt.simulate(overrides + ["engine=page", f"seed={seed}"])
        assert ds.round_dirty_pages.values[-1] == stop_pages
        assert ds.downtime.item() == pytest.approx(downtime, rel=1e-4)
    link = ["policy=qemu", "network.latency_ms=100", "network.tcp_window_mib=16", "workload=sequential"]
    page = lmt.simulate(link + ["engine=page"])
    fluid = lmt.simulate(link + ["engine=fluid"])
    assert fluid.total_time.item() == pytest.approx(page.total_time.item(), rel=0.01)
    assert abs(int(fluid.rounds.item()) - int(page.rounds.item())) <= 3
    np.testing.assert_allclose(fluid.round_dirty_pages.values, page.round_dirty_pages.values, rtol=0.01)


def test_fluid_send_cursor_stops_after_the_last_pending_page():
    """A phase that sends every pending page leaves the cursor after the last of them, as the
    page engine's does — also when the pages to send come out one rounding above the
    segments' sum (the empty segments after the last one were passed: a whole lap)."""
    from lmtoolkit.engine.fluid import _schedule

    P = np.array([[0.1, 0.2, 0.0, 0.0]])
    w = dict(P=P, Z=np.zeros_like(P), length=np.full((1, 4), 0.25))
    k = np.nextafter(P.sum(1), np.inf)  # one rounding above
    t = np.ones(1)
    assert _schedule(w, k, t, t, np.full(1, 1e9))["walk"][0] == pytest.approx(0.5, abs=1e-12)
    assert _schedule(w, 0.5 * P.sum(1), t, t, np.full(1, 1e9))["walk"][0] == pytest.approx(0.25 + 0.25 / 4)


def test_random_sampler_matches_poisson_expectation():
    wl = UniformWorkload(dirty_rate_pages_s=50_000, wss_mib=100)  # 25,600 pages
    smp = wl.sampler(262144, 4096, np.random.default_rng(1))
    p, t = smp.sample(0.0, 0.5)
    n = 25600
    expected = n * (1 - np.exp(-50_000 * 0.5 / n))
    assert p.size == pytest.approx(expected, rel=0.03)
    assert np.unique(p).size == p.size and (t >= 0).all() and (t <= 0.5).all()


def test_trace_workload_replays_the_example_file():
    import lmtoolkit as lmt

    ds = lmt.simulate(["workload=trace", "vm.memory_gib=1", "network=1gbe", "policy=xen"])
    idle = lmt.simulate(["workload=idle", "vm.memory_gib=1", "network=1gbe", "policy=xen"])
    assert ds.rounds.item() > 1 and ds.transferred.item() > idle.transferred.item()


def test_round_records_add_up():
    rec = run(scenario(workload=UniformWorkload(dirty_rate_pages_s=20_000)))
    assert sum(r.bytes for r in rec.round_detail) == pytest.approx(rec.transferred_bytes)
    assert rec.round_detail[-1].start_s + rec.round_detail[-1].duration_s == pytest.approx(rec.total_time_s)
    starts = [r.start_s for r in rec.round_detail]
    assert starts == sorted(starts)


def test_fluid_columns_match_scenario_objects():
    from lmtoolkit.engine.fluid import simulate_fluid, simulate_fluid_columns

    base = scenario(workload=HotColdWorkload(dirty_rate_pages_s=1.0, hot_mib=128), engine="fluid")
    rates = np.array([0.0, 4000.0, 30_000.0])
    mems = np.array([1.0, 2.0, 1.0])
    cols = simulate_fluid_columns(base, {"workload.dirty_rate_pages_s": rates, "vm.memory_gib": mems})
    objs = simulate_fluid(
        [
            dataclasses.replace(
                base,
                vm=dataclasses.replace(base.vm, memory_gib=m),
                workload=HotColdWorkload(dirty_rate_pages_s=r, hot_mib=128),
            )
            for r, m in zip(rates, mems)
        ]
    )
    np.testing.assert_allclose(cols.scalars["total_time_s"], objs.scalars["total_time_s"], rtol=1e-12)
    np.testing.assert_array_equal(cols.scalars["rounds"], objs.scalars["rounds"])


#: near-critical migrations (write rate ~ link rate) of issue 14's sweep, QEMU-like, uniform:
#: (GiB, Gbit/s, pages/s, the page engine's total time (s), seed 0 — regression values, they
#: take ~40 s to recompute)
NEAR_CRITICAL = [
    (8.0, 2.0, 57575.757575757576, 235.85),
    (6.0, 2.0, 57575.757575757576, 168.0),
    (4.0, 2.5, 72727.27272727272, 98.0),
    (6.0, 2.5, 72727.27272727272, 600.0),
    (8.0, 2.5, 71717.17171717172, 154.95),
    (8.0, 2.5, 72727.27272727272, 600.0),
    (3.0, 2.0, 58585.85858585858, 600.0),
    (3.0, 2.5, 73737.37373737374, 600.0),
    (8.0, 1.0, 28282.828282828283, 334.8),
    (2.0, 1.0, 29292.92929292929, 600.0),
    (4.0, 2.0, 57575.757575757576, 101.35),
    (6.0, 2.5, 71717.17171717172, 110.25),
]


def _near_critical(cases, round_detail):
    """The fluid engine's batch of ``cases`` (rows of :data:`NEAR_CRITICAL`) through the
    columnar path a sweep uses, and the page engine's total times."""
    from lmtoolkit.engine.fluid import simulate_fluid_columns

    gib, gbit, rate, page_s = (np.array(c) for c in zip(*cases))
    tpl = scenario(
        memory_gib=4.0, workload=UniformWorkload(dirty_rate_pages_s=1.0), gbit=10.0, engine="fluid"
    )
    cols = {"vm.memory_gib": gib, "network.bandwidth_gbit_s": gbit, "workload.dirty_rate_pages_s": rate}
    return simulate_fluid_columns(tpl, cols, round_detail=round_detail), page_s


def test_fluid_leaps_a_slow_drift_and_keeps_to_the_page_engine(monkeypatch):
    """Near a write rate equal to the link rate the bitmap creeps by well under a percent a
    sync for hundreds of syncs; the fluid engine follows the trend a few percent of the bitmap
    at a time (``_cycle_leap``'s drift) instead of phase by phase: 4,991 scenario-phases for
    these 12 before, 3,640 with the drift, 3,277 with the last stretch to the threshold leapt
    too, and the total time within 4 % of the page engine's (10.8 % before, the 8 GiB one),
    median within 1.5 %.  (57,576 instead of 57,575.76 pages/s gave 253 s, then 244 s, instead
    of 239 s: not chaos but a geometric leap on a false fit, see
    :func:`test_a_long_geometric_leap_fits_the_syncs_before_its_four`.)"""
    import lmtoolkit.engine.fluid as F

    rows = []
    phase = F._phase
    monkeypatch.setattr(F, "_phase", lambda g, out, L: rows.append(g.idx.size) or phase(g, out, L))
    out, page_s = _near_critical(NEAR_CRITICAL, round_detail=0)
    err = np.abs(out.scalars["total_time_s"] / page_s - 1)
    assert sum(rows) < 3500
    assert err.max() <= 0.04 and np.median(err) <= 0.015, err
    assert (out.scalars["converged"] == (page_s < 600)).all()


def test_a_leapt_drift_keeps_the_per_round_trajectory_smooth():
    """The per-round detail of the rounds a drift leap jumps over follows the trend: no jump
    between consecutive rounds' bitmaps beyond what the stepped rounds show (< 1 %; the
    history's values repeated gave 3.7-4.1 % jumps at each leap's end)."""
    out, _ = _near_critical([NEAR_CRITICAL[0], NEAR_CRITICAL[9]], round_detail=5000)
    for i, n in enumerate(out.scalars["rounds"]):
        d = out.round["round_dirty_pages"][i, 100:n]
        assert n > 600 and np.all(np.isfinite(d))
        assert np.max(np.abs(np.diff(d)) / d[1:]) < 0.01


def _without_leaps(monkeypatch):
    """The fluid engine stepped phase by phase: no geometric, cycle, wobble or drift leap."""
    import lmtoolkit.engine.fluid as F

    monkeypatch.setattr(
        F, "_fast_forward", lambda g, out, L, T, B, k, cut: np.zeros(np.shape(cut), dtype=bool)
    )
    monkeypatch.setattr(F, "_cycle_leap", lambda *a, **k: None)


def _agree(out, ref, rel=0.005, rounds=0.02):
    s, r = out.scalars, ref.scalars
    np.testing.assert_allclose(s["total_time_s"], r["total_time_s"], rtol=rel)
    np.testing.assert_allclose(s["transferred_bytes"], r["transferred_bytes"], rtol=rel)
    np.testing.assert_allclose(s["rounds"], r["rounds"], rtol=rounds)
    assert (s["converged"] == r["converged"]).all()


def test_fluid_leaps_the_last_stretch_to_the_threshold_with_its_first_dip_chance(monkeypatch):
    """A drift towards the switchover threshold was leapt only down to FAR_SIGMAS and 10 %
    above it, then followed sync by sync: 325 phases within 10 % of the threshold for these two
    (8 GiB at 2 GbE, 12 GiB at 2.5 GbE).  The leap now carries the chance of a first dip along
    the drift's bent path and stops before it reaches 10 %: 75 such phases; total time, bytes
    and the verdict as without any leap (to 0.5 %; rounds to 2 %)."""
    import lmtoolkit.engine.fluid as F

    cases = [NEAR_CRITICAL[0], (12.0, 2.5, 71717.17171717172, 248.8)]
    near, phase = [0], F._phase

    def counted(g, out, L):
        thr = g.st.pending - np.asarray(g.pol.convergence_margin_pages(g.st, g.ctx), dtype=float)
        near[0] += int(((g.rounds > 1) & (g.st.pending < 1.1 * thr)).sum())
        return phase(g, out, L)

    monkeypatch.setattr(F, "_phase", counted)
    out, _ = _near_critical(cases, round_detail=0)
    assert near[0] < 120, near
    _without_leaps(monkeypatch)
    _agree(out, _near_critical(cases, round_detail=0)[0])


def test_a_long_geometric_leap_fits_the_syncs_before_its_four(monkeypatch):
    """8 GiB at 2 GbE writing 57,576 pages/s: the bitmap creeps by 0.5 % a sync with a
    wobble of a percent of its steps, and four syncs lined up as a sequence converging seven
    times faster; the geometric leap jumped 184 rounds to a limit the bitmap never took
    (244.2 s against 239.6 s without leaps).  A ratio above FIT_RATIO must also fit the four
    syncs before: 239.05 s."""
    out, _ = _near_critical([(8.0, 2.0, 57576.0, 235.85)], round_detail=0)
    _without_leaps(monkeypatch)
    _agree(out, _near_critical([(8.0, 2.0, 57576.0, 235.85)], round_detail=0)[0])


def test_with_values_replaces_keys_together():
    """Several dotted keys at once: the same scenario as one key at a time where every step is
    valid, and no error where only an intermediate state would be (a smaller VM before its
    smaller hot set); values typed like the old ones; nothing to replace, the same object."""
    from lmtoolkit.engine.fluid import with_value, with_values
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.model import VM, Network
    from lmtoolkit.scenario import Scenario

    tpl = Scenario(
        vm=VM(memory_gib=8), workload=HotColdWorkload(hot_mib=4096), network=Network(), policy=QemuPolicy()
    )
    items = [
        ("vm.memory_gib", 2.0),
        ("workload.hot_mib", 512.0),
        ("policy.downtime_limit_ms", 30),
        ("network.bandwidth_gbit_s", 1),
    ]
    got = with_values(tpl, items)
    chain = tpl
    for k, v in (items[1], items[0], items[2], items[3]):
        chain = with_value(chain, k, v)
    assert got == chain
    assert (got.vm.memory_gib, got.workload.hot_mib, got.policy.downtime_limit_ms) == (2, 512.0, 30.0)
    assert isinstance(got.vm.memory_gib, int) and isinstance(got.policy.downtime_limit_ms, float)
    with pytest.raises(ConfigError, match="hot set must fit"):
        with_value(tpl, "vm.memory_gib", 2.0)
    assert with_values(tpl, []) is tpl
    # a value its model refuses: the error names the dotted key, not the bare field
    with pytest.raises(ConfigError) as e:
        with_values(tpl, [("network.bandwidth_gbit_s", 1), ("policy.downtime_limit_ms", -1)])
    assert e.value.key == "policy.downtime_limit_ms"
    assert str(e.value).startswith("policy.downtime_limit_ms=-1")


def test_a_bitmap_larger_than_the_available_memory_is_refused_before_it_is_allocated(monkeypatch):
    """A 64 TiB VM on the page engine asked numpy for 16 GiB at once (a MemoryError traceback,
    or the OOM killer); now one error says what it needs and to use engine=fluid."""
    import lmtoolkit.engine.page as page
    from lmtoolkit.errors import ConfigError

    monkeypatch.setattr(page, "available_memory_bytes", lambda: 100_000)  # 0.1 MB free
    with pytest.raises(ConfigError, match=r"needs at least 0\.0 GiB.*use engine=fluid") as e:
        run(scenario(memory_gib=0.25, engine="page"))  # 65,536 pages: 128 KiB at least
    assert e.value.key == "vm.memory_gib"
    assert run(scenario(memory_gib=0.25, engine="fluid")).total_time_s > 0  # the fluid engine keeps no bitmap
    monkeypatch.setattr(page, "available_memory_bytes", lambda: 200_000)
    assert run(scenario(memory_gib=0.25, engine="page")).total_time_s > 0


def test_fluid_follows_the_send_order_of_a_hot_and_a_cold_region():
    """Logs cleared at each send (VMware-like): after a pass the cold region's pending pages
    lie at lower addresses than the hot region's, so the next pass sends them earlier and
    re-dirties fewer hot pages than an even mix; one fluid bin missed it (second pass
    +1.8 % dirtied, a fourth round, +6 % time against the page engine's 3 rounds)."""
    from lmtoolkit.model import Network
    from lmtoolkit.policies import VmwarePolicy

    rate = 1.2 * Network(bandwidth_gbit_s=1.0).payload_bytes_s() / 4096
    pol = VmwarePolicy(sdps="off")
    wl = HotColdWorkload(dirty_rate_pages_s=rate, hot_mib=256)
    page = [run(scenario(workload=wl, policy=pol, seed=s)) for s in range(4)]
    fluid = run(scenario(workload=wl, policy=pol, engine="fluid"))
    third = np.mean([r.round_detail[2].dirty_pages for r in page])
    assert fluid.round_detail[2].dirty_pages == pytest.approx(third, rel=0.005)
    assert fluid.stop_reason == "no_progress" and fluid.rounds == 3
    assert fluid.total_time_s == pytest.approx(np.median([r.total_time_s for r in page]), rel=0.01)


def test_fluid_chunk_clears_after_a_pass_that_ends_on_a_bin_edge():
    """QEMU's default 1 GiB clear chunks on a 2 GiB guest, writes above the link rate: every
    phase is a pass that wraps at the end of memory.  The fluid engine kept the last bin's
    re-dirtied pages as lying before the cursor in the first bin, so they counted as cleared
    with the first chunk (round 2: +1.2 % against the page engine, round 6: -21 %)."""
    from lmtoolkit.model import Network

    net = Network(bandwidth_gbit_s=10.0)
    wl = UniformWorkload(dirty_rate_pages_s=1.42 * net.payload_bytes_s() / 4096)
    pol = QemuPolicy(timeout_s=6.0, downtime_limit_ms=30)
    page = run(scenario(memory_gib=2.0, workload=wl, policy=pol, gbit=10.0))
    fluid = run(scenario(memory_gib=2.0, workload=wl, policy=pol, gbit=10.0, engine="fluid"))
    assert fluid.rounds == page.rounds
    for a, b in zip(page.round_detail[1:-1], fluid.round_detail[1:-1]):
        assert b.duration_s == pytest.approx(a.duration_s, rel=1e-6)
        assert b.dirty_pages == pytest.approx(a.dirty_pages, rel=0.005)


def test_a_geometric_leap_does_not_skip_the_first_dip_near_the_threshold():
    """A working set of 64 pages: the bitmap settles at 24 +- 4 pages over a threshold of 17,
    and the page engine dips under it within 51 rounds in every seed.  The geometric leap
    jumped 28, 28, then 1,285 rounds without the first-passage chance and ran the fluid engine
    to the timeout; it now leaves rows within FAR_SIGMAS of the threshold to the sync-by-sync
    chance (and to the cycle leap, which carries it).  (Found with 2 MiB pages on 0.5 GiB and
    10 GbE, whose pre-copy now tracks 4 KiB pages: the same migration scaled by 1/32 in
    bytes, 64 KiB base pages.)"""
    wl = UniformWorkload(dirty_rate_pages_s=705.63, wss_mib=4)
    pol = QemuPolicy(timeout_s=60, downtime_limit_ms=30)
    kw = dict(memory_gib=0.5 / 32, workload=wl, policy=pol, gbit=10.0 / 32, page_size_kib=64)
    page = [run(scenario(seed=s, **kw)) for s in range(5)]
    fluid = run(scenario(engine="fluid", **kw))
    assert all(r.converged for r in page) and fluid.converged
    assert min(r.rounds for r in page) <= fluid.rounds <= 2 * max(r.rounds for r in page)


def test_fluid_per_send_clears_follow_a_phase_boundary_inside_a_round():
    """A phased workload (a busy uniform phase, then a quiet hot/cold one) under per-send log
    clears: a page sent late in a round sees only the later phase.  The round's mean rate for
    every page gave +9.4 % total time against the page engine (14.63 s for 13.37).  (Found
    with 2 MiB pages, whose pre-copy now tracks 4 KiB pages: here 64 KiB base pages, the rates
    x32 for the same writes per page.)"""
    from lmtoolkit.model import PhasedWorkload
    from lmtoolkit.policies import VmwarePolicy

    ph = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=73.409 * 32, wss_mib=512.0),
            HotColdWorkload(dirty_rate_pages_s=14.682 * 32, hot_mib=64.0, hot_fraction=0.9),
        ),
        durations_s=(6.0643, 3.9513),
    )
    kw = dict(workload=ph, policy=VmwarePolicy(timeout_s=60), page_size_kib=64)
    page = [run(scenario(seed=s, **kw)) for s in range(6)]
    fluid = run(scenario(engine="fluid", **kw))
    assert fluid.total_time_s == pytest.approx(np.median([r.total_time_s for r in page]), rel=0.02)
    assert fluid.round_detail[1].dirty_pages == pytest.approx(102.6 * 32, rel=0.03)  # by hand: 102.6 x 32


@pytest.mark.parametrize("busy_first", [True, False])
@pytest.mark.parametrize("shift", [16, 12])  # 4 chunks of 256 MiB (a bin each); 64 of 16 MiB (sharing bins)
def test_fluid_chunk_clears_follow_a_phase_boundary_inside_a_round(busy_first, shift):
    """QEMU's chunked log clears under a phased workload whose boundary falls 4 s into the
    8.9 s first pass: a chunk cleared late in the pass sees only the later phase.  The pass's
    mean rate for every chunk gave, busy then quiet, 45,796 pages dirtied in the first pass
    for the page engine's 33,969 and +4.4 % total time (shift 16); quiet then busy 51,532 for
    62,388 and -5.1 %."""
    from lmtoolkit.model import PhasedWorkload

    busy = UniformWorkload(dirty_rate_pages_s=15000.0, wss_mib=1024.0)
    quiet = UniformWorkload(dirty_rate_pages_s=2000.0, wss_mib=1024.0)
    ph = PhasedWorkload(phases=(busy, quiet) if busy_first else (quiet, busy), durations_s=(4.0, 60.0))
    kw = dict(workload=ph, policy=QemuPolicy(clear_bitmap_shift=shift, timeout_s=60))
    page = [run(scenario(seed=s, **kw)) for s in range(5)]
    fluid = run(scenario(engine="fluid", **kw))
    assert fluid.total_time_s == pytest.approx(np.median([r.total_time_s for r in page]), rel=0.01)
    dirty = np.median([r.round_detail[1].dirty_pages for r in page])
    assert fluid.round_detail[1].dirty_pages == pytest.approx(dirty, rel=0.02)


def _check(name):
    from lmtoolkit.analytic import CHECKS

    return next(c for c in CHECKS if c.name == name)


def test_notebook_10s_checks_say_which_does_not_apply_and_name_a_failing_one():
    """``lmtk notebooks 10 -p vm.memory_gib=0.05`` failed on a bare ``assert`` (no_convergence:
    a 51 MiB guest writing 1.5x the link converges in 0.64 s: its steady dirty set, 58 % of
    memory, is sent in 0.268 s < the 0.3 s downtime limit), ``-p policy.timeout_s=5`` too
    (geometric_series: the migration times out).  Now each check is one line, n/a and why."""
    from lmtoolkit.analytic import check_limits, limits, steady_dirty_share
    from lmtoolkit.errors import ClaimError

    assert steady_dirty_share(1.5) == pytest.approx(0.5828, abs=1e-4) and steady_dirty_share(0.5) == 0.0
    checks = [_check("idle_one_pass"), _check("no_convergence")]
    lim = limits(["vm.memory_gib=0.05"], checks)
    assert not bool(lim.ok.all())  # the old notebook's assert
    assert float(lim.simulated.sel(check="no_convergence")) == pytest.approx(0.6415, rel=1e-3)
    lines = check_limits(lim).splitlines()
    assert lines[0].startswith("ok   idle_one_pass: total_time simulated 0.0461 ≈ analytic 0.0461 s")
    assert lines[1] == (
        "n/a  no_convergence: the steady dirty set (58% of memory, 0.268 s to send) fits in the "
        "0.3 s downtime limit: a writer faster than the link converges anyway"
    )
    lim["not_applicable"][:] = ""  # were it to apply: named, with its values and the settings
    with pytest.raises(ClaimError, match=r"notebook 10's checks do not hold") as e:
        check_limits(lim)
    assert "(vm.memory_gib=0.05): no_convergence: total_time simulated 0.6415 ≥ analytic 30 s" in str(e.value)
    assert "idle_one_pass" not in str(e.value)
    timed_out = limits(["policy.timeout_s=5"], [_check("geometric_series")])
    assert not bool(timed_out.ok.all())
    assert check_limits(timed_out) == (
        "n/a  geometric_series: the migration did not complete before the 5 s timeout: nothing converged to check"
    )


def test_notebook_11s_claims_leave_a_verdict_to_the_timeout_and_name_a_real_disagreement():
    """``lmtk notebooks 11 -p policy.timeout_s=20.93`` failed on a bare ``assert``: QEMU at
    5,000 pages/s on 1 GbE converges at 20.925 s on the fluid engine and 20.937 s on the page
    engine, which the 20.93 s timeout stops first.  That verdict is the timeout's (n/a); a
    disagreement far from the timeout, or total times 20 % apart, is named."""
    from lmtoolkit.analytic import check_engines, compare_engines
    from lmtoolkit.errors import ClaimError

    cmp = compare_engines(["policy.timeout_s=20.93"], cases=[("qemu", "uniform", 5000, "1gbe")])
    conv = cmp.converged.sel(engine="page") == cmp.converged.sel(engine="fluid")
    assert not bool(conv.all())  # the old notebook's assert
    lines = check_engines(cmp).splitlines()
    assert lines[0].startswith(
        "ok   total time: largest |fluid − page| / page 0.02% (qemu/uniform@5000/1gbe)"
    )
    assert lines[1] == "ok   converged or not: the same verdict on both engines in 0 of 1 cases"
    assert lines[2].startswith("n/a  qemu/uniform@5000/1gbe: converged on the fluid engine only, at 20.925 s")
    far = cmp.assign_coords(timeout_s=("case", [30.0]))
    far["total_time_rel_diff"] = far.total_time_rel_diff * 0 + 0.2
    with pytest.raises(ClaimError) as e:
        check_engines(far)
    assert str(e.value) == (
        "notebook 11's claims do not hold with these settings (policy.timeout_s=20.93): total time: "
        "largest |fluid − page| / page 20.00% (qemu/uniform@5000/1gbe) < 15%; converged or not: the "
        "same verdict on both engines in 0 of 1 cases; qemu/uniform@5000/1gbe: converged "
        "on the fluid engine only, at 20.925 s, the other ran until the 30 s timeout"
    )


def test_a_transfer_of_subnormal_duration_is_done_without_a_warning():
    """``_share(t, d)`` for a duration so short that ``t / d`` overflows (a hypothesis example
    of test_total_time_non_increasing_in_bandwidth warned 'overflow encountered in divide')."""
    import warnings

    from lmtoolkit.engine.common import _share

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _share(np.array([1.0, 0.5, 0.0]), np.array([1e-310, 1.0, 0.0]))
    assert out.tolist() == [1.0, 0.5, 1.0]
