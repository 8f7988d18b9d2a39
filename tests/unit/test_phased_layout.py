"""Where a workload's ranks lie (``Workload.phase_at``, ``ranks_of``, ``written_pages``): a phased
workload is, at each writer time, the phase running then, never its own ``pattern``.

Post-copy's pre-paging pushes the pages hottest first in the layout of the phase writing at the
switch (QEMU serves the running guest's page requests before its background scan,
``migration/ram.c: get_queued_page``).  The page engine had read the phased workload's own
default ``pattern: random``: phases all sequential were pushed in scattered order — a 1 GiB
post-copy on 1 GbE, a 256 MiB sweep of 40,000 writes/s: 32,999 faults where the same sweep
alone takes 11,443.  The fluid engine refuses sequential phases (it cannot move a cursor whose
speed changes with them) but missed them, and traces, inside a nested phased workload, which it
ran as random writes (19,106 faults; under XBZRLE 2,713 rounds for the page engine's 385).
XBZRLE needed no fix: the page engine keeps its cache page by page, and the fluid engine's
slots follow the regions' layout, which a phased workload it runs has random in every phase.  A
trace ranks its pages by how often it writes them, and a trace phase can be configured (the
runner had handed it the phases' default ``pattern``, which a trace refuses)."""

from __future__ import annotations

import numpy as np
import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import HotColdWorkload, PhasedWorkload, TraceWorkload, UniformWorkload
from lmtoolkit.policies import HybridPolicy, PostcopyPolicy, QemuPolicy
from tests.conftest import run, scenario

ENGINES = ("page", "fluid")
LONG = 1e4  # s: a phase no migration here outlasts (one draw per window, as the phase alone)


def _sweep(rate=40_000.0, wss_mib=256.0):
    return UniformWorkload(dirty_rate_pages_s=rate, pattern="sequential", wss_mib=wss_mib)


def _hot(rate=40_000.0):
    return HotColdWorkload(dirty_rate_pages_s=rate, hot_mib=64.0, hot_fraction=0.95)


def _alone(wl):
    return PhasedWorkload(phases=(wl,), durations_s=(LONG,))


def _nested(wl):
    return PhasedWorkload(phases=(_alone(wl),), durations_s=(LONG,))


def _prepaging(policy):
    return PostcopyPolicy(prepaging=True) if policy == "postcopy" else HybridPolicy(prepaging=True)


XBZRLE = QemuPolicy(xbzrle=True, xbzrle_cache_mib=64.0)


def _kw(wl, policy, engine, seed=0):
    return dict(workload=wl, policy=policy, engine=engine, seed=seed, zero_fraction=0.0)


# -- the rule: the phase at the time in question ----------------------------------------------
def test_a_phased_workload_is_the_phase_running_at_each_writer_time():
    a, b, c = _sweep(), _hot(), UniformWorkload(dirty_rate_pages_s=10.0)
    wl = PhasedWorkload(
        phases=(a, PhasedWorkload(phases=(b, c), durations_s=(0.5, 0.5))), durations_s=(1.0, 2.0)
    )
    # a phase runs over [start, end) of each cycle; a nested one on the same writer clock
    assert wl.phase_at(0.0) is a and wl.phase_at(0.999) is a
    # the nested phases at writer times 1.0, 1.25 (mod its 1 s cycle: 0, 0.25) and 1.5, 1.75
    assert wl.phase_at(1.0) is b and wl.phase_at(1.25) is b
    assert wl.phase_at(1.5) is c and wl.phase_at(1.75) is c and wl.phase_at(3.2) is a
    assert [k for k, _ in wl.leaves()] == [
        "workload.phases[0]",
        "workload.phases[1].phases[0]",
        "workload.phases[1].phases[1]",
    ]
    n = 1 << 16
    pages = np.arange(n)
    for g, leaf in ((0.2, a), (1.25, b)):  # the running phase's layout, both ways
        assert np.array_equal(wl.ranks_of(pages, n, 4096, g), leaf.ranks_of(pages, n, 4096, 0.0))
        assert np.array_equal(wl.pages_of(wl.ranks_of(pages, n, 4096, g), n, 4096, g), pages)
    assert np.array_equal(wl.ranks_of(pages, n, 4096, 0.2), pages)  # a sweep's ranks are its addresses


# -- pre-paging: a phase alone and the phased workload of it -----------------------------------
@pytest.mark.parametrize("policy", ["postcopy", "hybrid"])
@pytest.mark.parametrize("wrap", [_alone, _nested], ids=["phased", "nested"])
def test_a_sequential_phase_prepages_as_the_sweep_alone_in_the_page_engine(policy, wrap):
    """The sweep's ranks are its addresses: pre-paging pushes it in address order, phased or not
    (post-copy 32,999 faults before for the sweep's 11,443; hybrid 9,172 for 9,221)."""
    sweep = _sweep()
    alone = run(scenario(**_kw(sweep, _prepaging(policy), "page")))
    phased = run(scenario(**_kw(wrap(sweep), _prepaging(policy), "page")))
    assert alone.postcopy_faults > 1000
    assert phased.postcopy_faults == alone.postcopy_faults
    assert phased.total_time_s == alone.total_time_s


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["postcopy", "hybrid"])
def test_a_hot_cold_phase_prepages_as_the_workload_alone(engine, policy):
    """A random phase's layout is its workload's: the same faults phased or not, in both engines."""
    hot = _hot()
    alone = run(scenario(**_kw(hot, _prepaging(policy), engine)))
    phased = run(scenario(**_kw(_alone(hot), _prepaging(policy), engine)))
    assert alone.postcopy_faults > 1000
    assert phased.postcopy_faults == pytest.approx(alone.postcopy_faults, rel=1e-9)
    assert phased.total_time_s == pytest.approx(alone.total_time_s, rel=1e-9)


@pytest.mark.parametrize("first, equal", [("hot", True), ("sweep", False)])
def test_prepaging_follows_the_phase_running_at_the_switch(first, equal):
    """A hybrid switches after its first pass (1 GiB on 1 GbE: over 9 s), past a 5 s first phase:
    when the phase then is a sweep, its rank order is its address order and pre-paging pushes
    exactly as the plain push does (10,992 faults, the same draws); when it is a hot/cold
    writer, pre-paging moves its hot set first (5,713 faults for 10,864).  Before, the phased
    workload's own ``random`` layout scattered the sweep's push (11,760 faults)."""
    sweep, hot = _sweep(), _hot()
    phases = (hot, sweep) if first == "hot" else (sweep, hot)
    wl = PhasedWorkload(phases=phases, durations_s=(5.0, LONG))
    pre, plain = (run(scenario(**_kw(wl, HybridPolicy(prepaging=p), "page"))) for p in (True, False))
    assert pre.rounds == plain.rounds == 1 and pre.total_time_s > 5.0
    assert plain.postcopy_faults > 1000
    assert (pre.postcopy_faults == plain.postcopy_faults) is equal


@pytest.mark.parametrize("policy", ["postcopy", "hybrid"])
def test_fluid_and_page_agree_on_prepaging_a_sequential_phase(policy):
    """The fluid engine runs the sweep alone (it refuses sequential phases); the page engine's
    phased run of it agrees: measured 2,868 / 2,861 faults (post-copy) and 5,980 / 5,973
    (hybrid), total time to 1e-4 (11,441 / 11,443 and 9,222 / 9,221 with one speed over the
    push; 2,903 and 6,005 while the fluid engine's windows cut the corner where the push
    overtakes the sweep as coarsely as a random writer's, common.STALL_JUMP_SHARP)."""
    sweep = _sweep()
    page = run(scenario(**_kw(_alone(sweep), _prepaging(policy), "page")))
    fluid = run(scenario(**_kw(sweep, _prepaging(policy), "fluid")))
    assert fluid.postcopy_faults == pytest.approx(page.postcopy_faults, rel=0.01)
    assert fluid.total_time_s == pytest.approx(page.total_time_s, rel=0.01)


@pytest.mark.parametrize("durations", [(5.0, 2.0), (1.0, 6.0)])
@pytest.mark.parametrize("policy", ["postcopy", "hybrid"])
def test_fluid_and_page_agree_on_prepaging_a_phased_workload(policy, durations):
    """Quiet uniform then a hot/cold burst (the default phased shape), pre-paged: measured fluid
    against the page engine's mean of 3 seeds within 0.6 % of the faults for post-copy and
    2.2 % for hybrid (about 400 faults there), total time within 0.1 %."""
    wl = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=2000.0),
            HotColdWorkload(dirty_rate_pages_s=50_000.0, hot_mib=128.0, hot_fraction=0.9),
        ),
        durations_s=durations,
    )
    page = [run(scenario(**_kw(wl, _prepaging(policy), "page", seed))) for seed in range(3)]
    fluid = run(scenario(**_kw(wl, _prepaging(policy), "fluid")))
    faults = np.mean([r.postcopy_faults for r in page])
    assert faults > 300
    assert fluid.postcopy_faults == pytest.approx(faults, rel=0.05)
    assert fluid.total_time_s == pytest.approx(np.mean([r.total_time_s for r in page]), rel=0.01)


# -- XBZRLE: a phase alone and the phased workload of it ---------------------------------------
@pytest.mark.parametrize(
    "engine, make",
    [("page", lambda: _sweep(20_000.0, 64.0)), ("page", _hot), ("fluid", _hot)],
    ids=["page-sweep", "page-hotcold", "fluid-hotcold"],
)
def test_xbzrle_runs_a_phase_alone_as_the_phased_workload_of_it(engine, make):
    """XBZRLE's cache (direct-mapped, ``page_cache.c: cache_get_cache_pos``) sees the pages the
    phase writes: the page engine keeps it page by page, the fluid engine groups its slots by
    the regions' layout (the phase's, :meth:`Workload.phase_at`)."""
    wl = make()
    alone = run(scenario(**_kw(wl, XBZRLE, engine)))
    phased = run(scenario(**_kw(_alone(wl), XBZRLE, engine)))
    assert alone.converged and alone.rounds >= 3
    assert phased.rounds == alone.rounds
    assert phased.total_time_s == pytest.approx(alone.total_time_s, rel=1e-9)
    assert phased.transferred_bytes == pytest.approx(alone.transferred_bytes, rel=1e-9)


def test_fluid_and_page_agree_on_xbzrle_of_a_sequential_phase():
    """The fluid engine's sweep alone against the page engine's phased sweep: measured 9.816 s
    for 9.801 s (+0.15 %), bytes +0.21 %, 5 rounds each."""
    sweep = _sweep(20_000.0, 64.0)
    page = run(scenario(**_kw(_alone(sweep), XBZRLE, "page")))
    fluid = run(scenario(**_kw(sweep, XBZRLE, "fluid")))
    assert fluid.rounds == page.rounds
    assert fluid.total_time_s == pytest.approx(page.total_time_s, rel=0.01)
    assert fluid.transferred_bytes == pytest.approx(page.transferred_bytes, rel=0.01)


@pytest.mark.parametrize("durations", [(5.0, 2.0), (1.0, 3.0)])
def test_fluid_and_page_agree_on_xbzrle_of_a_phased_workload(durations):
    """Quiet then a hot/cold burst under XBZRLE (64 MiB cache): measured within 0.07 % and
    0.32 % of the page engine's mean of 3 seeds (total time and bytes), the same rounds."""
    wl = PhasedWorkload(
        phases=(
            UniformWorkload(dirty_rate_pages_s=2000.0),
            HotColdWorkload(dirty_rate_pages_s=50_000.0, hot_mib=128.0, hot_fraction=0.9),
        ),
        durations_s=durations,
    )
    page = [run(scenario(**_kw(wl, XBZRLE, "page", seed))) for seed in range(3)]
    fluid = run(scenario(**_kw(wl, XBZRLE, "fluid")))
    assert {r.rounds for r in page} == {fluid.rounds}
    assert fluid.total_time_s == pytest.approx(np.mean([r.total_time_s for r in page]), rel=0.01)
    assert fluid.transferred_bytes == pytest.approx(np.mean([r.transferred_bytes for r in page]), rel=0.01)


# -- traces and the zero layout read the same answer --------------------------------------------
def _trace(n_pages=65_536, hot=2048, intervals=40, seed=3):
    """A hot set written every 10 ms interval, 50 other pages at random in each."""
    rng = np.random.default_rng(seed)
    hot_pages = rng.choice(n_pages, hot, replace=False)
    ivs = [np.unique(np.concatenate([hot_pages, rng.choice(n_pages, 50)])) for _ in range(intervals)]
    wl = TraceWorkload(interval_s=0.01, counts=tuple(len(v) for v in ivs), pages=np.concatenate(ivs))
    return wl, hot_pages


def test_a_trace_ranks_its_pages_by_how_often_it_writes_them():
    """Pre-paging a trace pushes its most written pages first (before: its page numbers were
    unscattered as if they were a random writer's ranks, an order unrelated to the trace)."""
    wl, hot = _trace()
    n = 65_536
    ranks = wl.ranks_of(np.arange(n), n, 4096, 0.0)
    assert np.array_equal(np.sort(ranks), np.arange(n))
    assert set(np.flatnonzero(ranks < hot.size)) == set(hot.tolist())
    assert np.array_equal(wl.pages_of(ranks, n, 4096, 0.0), np.arange(n))


def test_prepaging_a_trace_pushes_its_hot_set_first():
    """1 GiB on 1 GbE, a 32 MiB hot set written every 10 ms and 200 other pages in each interval:
    pre-paging now saves a third of the faults (29,794 without, 20,373 with); before it changed
    nothing (29,803)."""
    n = 262_144
    wl, _ = _trace(n_pages=n, hot=8192, intervals=400)
    faults = [
        run(
            scenario(memory_gib=1.0, workload=wl, policy=PostcopyPolicy(prepaging=p), zero_fraction=0.0)
        ).postcopy_faults
        for p in (False, True)
    ]
    assert faults[1] < 0.8 * faults[0]


def test_the_linux_zero_layout_avoids_the_pages_each_phase_writes():
    """``vm.zero_layout=linux`` puts the zero pages on pages the workload never writes: a phased
    sweep's are its block at the bottom of memory (before: the scattered pages of the phased
    workload's own ``random`` layout, so zero pages fell inside the sweep's block), a trace's
    the pages it recorded."""
    from lmtoolkit.engine.page import _zero_below_top

    n, z, top = 1 << 16, 30_000, 64
    sweep = _sweep(1000.0, 128.0)  # 32,768 pages: the lower half
    lone = np.ones(n, dtype=bool)
    _zero_below_top(lone, z, top, sweep, 4096)
    for wl in (_alone(sweep), _nested(sweep)):
        got = np.ones(n, dtype=bool)
        _zero_below_top(got, z, top, wl, 4096)
        assert np.array_equal(got, lone)
    assert lone[: n // 2].all()  # none in the sweep's block
    trace, _ = _trace(n_pages=n)
    got = np.ones(n, dtype=bool)
    _zero_below_top(got, z, top, trace, 4096)
    assert not (~got & trace.written_pages(n, 4096)).any() and (~got).sum() == z


# -- the fluid engine refuses what it cannot follow, at any depth --------------------------------
@pytest.mark.parametrize("policy", [PostcopyPolicy(prepaging=True), XBZRLE], ids=["prepaging", "xbzrle"])
def test_the_fluid_engine_refuses_a_sequential_phase_inside_nested_phases(policy):
    """It had run one as random writes: 19,106 faults (the page engine 11,443); under XBZRLE
    2,713 rounds to the page engine's 385."""
    with pytest.raises(
        ConfigError, match=r"workload\.phases\[0\]\.phases\[0\]\.pattern=sequential.*engine=page"
    ):
        run(scenario(**_kw(_nested(_sweep()), policy, "fluid")))


def test_the_fluid_engine_refuses_a_trace_inside_nested_phases():
    wl, _ = _trace()
    with pytest.raises(ConfigError, match="cannot replay workload=trace"):
        run(scenario(memory_gib=0.25, workload=_nested(wl), engine="fluid"))


# -- a trace phase in a config ----------------------------------------------------------------
def test_a_trace_phase_is_configured_and_prepaged_by_its_own_layout():
    """The config's ``workload.pattern`` is the phases' default, which the runner handed a trace
    phase too, and a trace takes no pattern: every phased workload with a trace phase was refused
    (``workload.phases[0].pattern=random would have no effect``).  Now it runs; with pre-paging
    at the switch (writer time 0, the trace's phase) its most written pages go first: 150 faults
    without, 77 with."""
    import lmtoolkit as lmt

    base = [
        "workload=phased",
        "workload.phases=[{name: trace, file: data/raw/traces/example.npz}, "
        "{name: uniform, dirty_rate_pages_s: 1000, pattern: sequential}]",
        "workload.durations_s=[1,1]",
        "vm.memory_gib=0.25",
        "policy=postcopy",
    ]
    plain, pre = (
        float(lmt.simulate([*base, f"policy.prepaging={p}"]).postcopy_faults) for p in ("false", "true")
    )
    assert plain > 100 and pre < 0.6 * plain
