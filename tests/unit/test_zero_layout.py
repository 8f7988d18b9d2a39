"""vm.zero_layout: where an idle guest's zero pages lie decides what it has left at its switchover."""

import numpy as np
import pytest

from lmtoolkit import api
from lmtoolkit.engine.page import _zero_below_top
from lmtoolkit.model.vm import VM
from lmtoolkit.model.workload import UniformWorkload, page_of_rank
from lmtoolkit.records import ROUND_KINDS

IDLE = [
    "policy=qemu",
    "workload=idle",
    "vm.memory_gib=1",
    "vm.zero_fraction=0.5",
    "network.bandwidth_gbit_s=1",
    "policy.max_bandwidth_mib_s=64",
    "policy.downtime_limit_ms=1000",
]


def test_top_tail_is_the_struct_page_array():
    vm = VM(memory_gib=1.0, zero_fraction=0.5, zero_layout="linux")
    assert vm.top_nonzero_pages * vm.page_bytes == 2**30 // 64  # 64 bytes per 4 KiB page: 16 MiB
    assert VM(memory_gib=1.0, zero_fraction=0.5).top_nonzero_pages == 0  # spread: no tail


def test_zero_pages_lie_below_the_tail_and_avoid_the_written_pages():
    n, z, top = 4096, 1000, 64
    wl = UniformWorkload(dirty_rate_pages_s=100.0, wss_mib=2.0)  # 512 written pages, scattered
    nonzero = np.ones(n, dtype=bool)
    _zero_below_top(nonzero, z, top, wl, 4096)
    zero = np.flatnonzero(~nonzero)
    written = page_of_rank(np.arange(512), n)
    assert zero.size == z and zero.max() < n - top
    assert not np.isin(zero, written).any()
    # the highest untouched pages below the tail: nothing untouched above the lowest zero page is left out
    free = np.setdiff1d(np.arange(zero.min(), n - top), written)
    assert np.array_equal(free, zero)


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_idle_guest_stops_with_the_tail_not_a_threshold_of_mixed_pages(engine):
    """1 GiB, half zero, 64 MiB/s, 1000 ms: spread, the threshold (64 MiB) of mixed pages is
    left, half of them data (~32 MiB); linux, the zero pages pass before the switchover and
    what is left is at most the 16 MiB tail."""
    spread = api.simulate([*IDLE, f"engine={engine}"])
    linux = api.simulate([*IDLE, f"engine={engine}", "vm.zero_layout=linux"])
    mib = 2**20

    def stop_bytes(ds):  # the last round is the stop-and-copy
        return float(ds.round_bytes.values[int(ds.rounds.item())])

    assert 24 * mib < stop_bytes(spread) < 40 * mib
    assert stop_bytes(linux) <= 16.5 * mib
    assert float(linux.downtime.item()) < 0.6 * float(spread.downtime.item())
    # the same pages are sent either way: the bytes differ by the tail's split only
    assert float(linux.transferred.item()) == pytest.approx(float(spread.transferred.item()), rel=0.02)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["workload=uniform", "workload.dirty_rate_pages_s=5000", "workload.wss_mib=128"],
        ["policy.max_bandwidth_mib_s=150", "policy.downtime_limit_ms=300", "vm.zero_fraction=0.7"],
        ["policy=xen"],
        # hot/cold writes every page: no page is left for the zero stretch, which stays spread
        ["policy=hybrid", "workload=hotcold", "workload.dirty_rate_pages_s=20000", "vm.zero_fraction=0.3"],
        # hot/cold at hot_fraction 1 never writes its cold set: the zero pages lie there (the
        # fluid engine had put them on the untouched rest only, empty here, and sent every zero
        # page as data: 1034 MiB and 15.7 s for the page engine's 113 MiB and 1.69 s)
        [
            "workload=hotcold",
            "workload.dirty_rate_pages_s=5000",
            "workload.hot_mib=8",
            "workload.hot_fraction=1.0",
            "vm.zero_fraction=0.9",
        ],
        # a written set nearly as large as the data: fewer untouched pages below the top tail
        # than zero pages, the rest lie in the tail (page engine: _zero_below_top); the fluid
        # engine had packed them all below it (26 rounds, 7.99 s, 527 MiB for 3, 3.00 s, 213 MiB)
        [
            "workload=sequential",
            "workload.dirty_rate_pages_s=20000",
            "workload.wss_mib=100",
            "vm.zero_fraction=0.9",
        ],
    ],
)
def test_engines_agree_on_the_linux_layout(extra):
    base = [o for o in IDLE if "policy=xen" not in extra or not o.startswith("policy")]
    cfg = [*base, "vm.zero_layout=linux", *extra]
    page = [api.simulate([*cfg, "engine=page", f"seed={s}"]) for s in (1, 2)]
    fluid = api.simulate([*cfg, "engine=fluid"])
    for k in ("total_time", "transferred"):
        mean = np.mean([float(p[k].item()) for p in page])
        assert float(fluid[k].item()) == pytest.approx(mean, rel=0.03), k
    mean = np.mean([float(p.downtime.item()) for p in page])
    assert abs(float(fluid.downtime.item()) - mean) <= max(0.1 * mean, 0.005)


def test_a_workload_that_writes_every_page_keeps_its_zero_pages_spread():
    from lmtoolkit.compose import compose
    from lmtoolkit.engine.common import zero_layout
    from lmtoolkit.runner import build_scenario

    hot = build_scenario(compose(["vm.zero_layout=linux", "vm.zero_fraction=0.3", "workload=hotcold"]))
    idle = build_scenario(compose(["vm.zero_layout=linux", "vm.zero_fraction=0.3", "workload=idle"]))
    assert zero_layout(hot) == "spread" and zero_layout(idle) == "linux"


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_phases_after_the_zero_pages_were_sent_end_on_a_check(engine):
    """QEMU tests the switchover estimate only between iterations (``migration_iteration_run``,
    one 50 ms ``ram_save_iterate`` when no cap binds), so every pre-copy phase lasts a whole
    number of check periods (:meth:`QemuPolicy.phase_pages`).  Under the Linux layout the first
    pass stops short of the data tail at the top of RAM; with no zero page left pending, both
    engines took those unsent pages for ``zero_fraction`` zero pages (the spread layout's
    mean) and planned the second phase 10 % too short: 0.223 s, a sync between two checks."""
    ds = api.simulate(
        [
            f"engine={engine}",
            "policy=qemu",
            "policy.dirty_clear=sync",
            "vm.memory_gib=2",
            "vm.zero_fraction=0.3",
            "vm.zero_layout=linux",
            "workload=uniform",
            "workload.dirty_rate_pages_s=1700",
            "workload.wss_mib=146",
            "workload.pattern=sequential",
            "workload.sweep_start=0.66",
            "network.bandwidth_gbit_s=2",
            "network.efficiency=0.7",
            "seed=1",
        ]
    )
    dur = ds.round_duration.values[ds.round_kind.values == ROUND_KINDS.index("precopy")]
    assert dur.size >= 2
    checks = dur / 0.05
    assert np.allclose(checks, np.round(checks), atol=1e-3), dur
    assert dur[1] == pytest.approx(0.25, abs=1e-4)


@pytest.mark.parametrize("engine", ["page", "fluid"])
@pytest.mark.parametrize("layout", ["spread", "linux"])
def test_a_timed_postcopy_switch_comes_at_the_first_check_after_it(engine, layout):
    """``policy.postcopy_after_s=2.02``: QEMU acts on migrate-start-postcopy between iterations,
    so the pre-copy phase ends at the first 50 ms check after it, 2.05 s, wherever the zero
    pages lie.  Under the Linux layout the hybrid policy planned the phase at the pending
    pages' mean cost, which takes the first pass's data (sent first) for half zero pages:
    the switch came at 4.04 s."""
    ds = api.simulate(
        [
            f"engine={engine}",
            "policy=hybrid",
            "policy.postcopy_after_s=2.02",
            "vm.memory_gib=1",
            "vm.zero_fraction=0.5",
            f"vm.zero_layout={layout}",
            "workload=uniform",
            "workload.dirty_rate_pages_s=1000",
            "workload.wss_mib=64",
            "network.bandwidth_gbit_s=1",
            "seed=1",
        ]
    )
    kinds = ds.round_kind.values
    assert ROUND_KINDS[int(kinds[0])] == "precopy" and ROUND_KINDS[int(kinds[1])] == "stop"
    assert float(ds.round_duration.values[0]) == pytest.approx(2.05, abs=1e-3)


def test_a_first_pass_cut_mid_memory_leaves_its_own_mix_of_zero_pages():
    """1 GiB idle, 82 % zero pages, 2.5 GbE: the first pass stops at a check 92 % through memory
    and the next round sends the rest.  The fluid engine spread the cursor bin's pending zero
    pages by address (92 % of them before the cursor, where nothing is pending), so that round
    sent 2,075 more non-zero pages than the guest has: +3.7 % total time, 4.3 % more bytes, a
    downtime of 2.8 ms for the page engine's 12.6 ms.  An idle guest's bytes are its pages'."""
    from lmtoolkit.model import IdleWorkload
    from lmtoolkit.policies import QemuPolicy
    from tests.conftest import run, scenario

    kw = dict(
        memory_gib=1.0,
        zero_fraction=0.82,
        gbit=2.5,
        workload=IdleWorkload(),
        policy=QemuPolicy(timeout_s=120),
    )
    page, fluid = run(scenario(**kw)), run(scenario(engine="fluid", **kw))
    assert fluid.total_time_s == pytest.approx(page.total_time_s, rel=1e-3)
    vm = VM(memory_gib=1.0, zero_fraction=0.82)
    pages = vm.nonzero_pages * (vm.page_bytes + 8) + vm.zero_pages * 9  # header 8 B, a zero page 9 B
    assert fluid.transferred_bytes == pytest.approx(pages + 0.25 * 2**20, rel=1e-4)  # + device state


@pytest.mark.parametrize(
    "zero, rate, gbit",
    [
        (0.6, 40000.0, 5.0),  # the fluid engine kept them zero: -1.6 % total time, -1.8 % bytes
        (0.5, 5000.0, 1.0),  # ... and a downtime of 220 ms for the page engine's 285 ms
    ],
)
def test_a_written_zero_page_is_sent_as_data(zero, rate, gbit):
    """A page the guest writes is no longer a zero page (QEMU ``save_zero_page`` tests each
    page's content as it sends it; the page engine sets its non-zero flag at the write): under
    ``zero_layout: spread`` the zero pages are the highest-ranked pages, so writes over all of
    memory reach them.  1 GiB, uniform writes over all of it, QEMU: the fluid engine kept the
    pending zero pages it had written zero, and sent them, and the switchover's, as markers."""
    from lmtoolkit.policies import QemuPolicy
    from tests.conftest import run, scenario

    wl = UniformWorkload(dirty_rate_pages_s=rate, wss_mib=1024.0)
    kw = dict(memory_gib=1.0, zero_fraction=zero, gbit=gbit, workload=wl, policy=QemuPolicy())
    page = [run(scenario(seed=s, **kw)) for s in range(1, 6)]
    fluid = run(scenario(engine="fluid", **kw))
    for k, rel in (("total_time_s", 3e-3), ("transferred_bytes", 3e-3), ("downtime_s", 0.03)):
        ref = float(np.median([getattr(p, k) for p in page]))
        assert getattr(fluid, k) == pytest.approx(ref, rel=rel), k
