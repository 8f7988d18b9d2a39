"""Xen rules of issue 12 (lmtoolkit/policies/xen.py cites xc_domain_save.c and xg_sr_save.c),
checked by their effect in both engines."""

from __future__ import annotations

import numpy as np
import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import HotColdWorkload, UniformWorkload
from lmtoolkit.policies import XenPolicy
from lmtoolkit.policies.base import State
from tests.conftest import run, scenario

ENGINES = ("page", "fluid")


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_clears_the_log_at_the_sync(engine):
    """2 GiB, 1 Gbit/s, 20k uniform writes/s: every page written during a pass is sent again
    (SHADOW_OP_CLEAN at the sync, no to_skip): ~40 s and ~1.5 s downtime (the per-page clear
    gave 29.8 s / 0.74 s)."""
    rec = run(
        scenario(
            memory_gib=2.0,
            workload=UniformWorkload(dirty_rate_pages_s=20_000),
            policy=XenPolicy(version="v2"),
            engine=engine,
        )
    )
    assert rec.total_time_s == pytest.approx(40.1, rel=0.01)
    assert rec.downtime_s == pytest.approx(1.5, rel=0.02)
    assert (rec.rounds, rec.stop_reason) == (5, "max_rounds")
    # every page of a pass's bitmap is sent
    for r in rec.round_detail[:-1]:
        assert r.pages == pytest.approx(r.dirty_pages, rel=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_classic_skips_pages_written_since_the_sync(engine):
    wl = UniformWorkload(dirty_rate_pages_s=20_000)
    rec = run(scenario(memory_gib=2.0, workload=wl, policy=XenPolicy(), engine=engine))
    first = rec.round_detail[0]
    # pass 1 scans all 524288 pages and skips those written before their turn; time runs only
    # for the pages sent, so dt/du = P t (1 - skip(t)) gives T = ln(1 + y) / lam with
    # y = lam P t: a share ln(1 + y) / y of the pages is sent (y = 0.698 here: 76 %)
    t_page = (4096 + 8) / (1e9 * 0.94 / 8)
    y = 20_000 / 524_288 * 524_288 * t_page
    assert first.pages / 524_288 == pytest.approx(np.log1p(y) / y, rel=0.005)
    assert first.duration_s == pytest.approx(np.log1p(y) / (20_000 / 524_288), rel=0.005)
    assert rec.converged and rec.total_time_s == pytest.approx(31.5, rel=0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_classic_has_29_live_passes(engine):
    hot = HotColdWorkload(dirty_rate_pages_s=30_000, hot_mib=64)
    rec = run(scenario(memory_gib=2.0, workload=hot, policy=XenPolicy(), engine=engine))
    assert (rec.rounds, rec.stop_reason) == (29, "max_rounds")  # DEF_MAX_ITERS 29
    assert XenPolicy(max_rounds=30).max_rounds == 30


def test_classic_stop_test_is_on_the_pass_just_finished():
    pol = XenPolicy()
    ctx = scenario().context()
    st = State(())
    pol.init_state(st, ctx)
    st.round = np.float64(5)
    # sent_this_iter + skip_this_iter < 50: the finished pass's bitmap, whatever the new one
    st.phase_scanned, st.pending = np.float64(49), np.float64(5_000)
    assert bool(pol.converged(st, ctx))
    st.phase_scanned, st.pending = np.float64(50), np.float64(10)
    assert not bool(pol.converged(st, ctx))


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_sends_the_last_few_pages_live_then_stops(engine):
    """v2: < 50 pages at a sync are sent live in one more pass (the send precedes the break),
    then the suspended pass sends what was written meanwhile."""
    wl = UniformWorkload(dirty_rate_pages_s=30, wss_mib=64)
    rec = run(scenario(memory_gib=0.5, workload=wl, gbit=10, policy=XenPolicy(version="v2"), engine=engine))
    assert rec.converged and rec.rounds == 2
    assert rec.round_detail[1].dirty_pages < 50  # the extra live pass
    assert rec.round_detail[-1].pages < 5  # what it left for the stop


@pytest.mark.parametrize("engine", ENGINES)
def test_max_factor_counts_pages_sent(engine):
    hot = HotColdWorkload(dirty_rate_pages_s=50_000, hot_mib=64)
    rec = run(scenario(workload=hot, policy=XenPolicy(max_rounds=10_000), engine=engine))
    assert rec.stop_reason == "max_sent"
    pages = rec.memory_bytes / 4096
    sent = rec.precopy_bytes / (4096 + 8)  # total_sent, in pages (not bytes, not skipped)
    assert 3 * pages < sent < 3.2 * pages


def test_engines_agree_on_xen():
    for v in ("classic", "v2"):
        for wl in (
            UniformWorkload(dirty_rate_pages_s=20_000),
            HotColdWorkload(dirty_rate_pages_s=30_000, hot_mib=64),
        ):
            p, f = (
                run(scenario(memory_gib=2.0, workload=wl, policy=XenPolicy(version=v), engine=e))
                for e in ENGINES
            )
            assert f.total_time_s == pytest.approx(p.total_time_s, rel=0.01), (v, wl.name)
            assert f.transferred_bytes == pytest.approx(p.transferred_bytes, rel=0.01), (v, wl.name)
            assert f.rounds == p.rounds and f.stop_reason == p.stop_reason


@pytest.mark.parametrize(
    "policy",
    [
        XenPolicy(dirty_threshold_pages=0),  # "< 0 pages" never holds: only an empty bitmap stops it
        XenPolicy(version="v2", dirty_threshold_pages=0),  # likewise, against v2's 5-pass cap
    ],
)
def test_an_empty_bitmap_stops_both_engines_alike(policy):
    """Nothing left to send is convergence for every policy (``Policy.decide``).  The page
    engine's bitmap empties; the fluid engine's expected one only shrinks (0.1, 0.001 pages),
    so it ran on to the pass cap (``max_rounds``: 29 classic, 5 v2) where every page engine
    seed converged after 3-4 passes: an expected bitmap under ln 2 pages is empty."""
    wl = UniformWorkload(dirty_rate_pages_s=150.0)
    recs = [
        run(scenario(memory_gib=0.25, gbit=0.4, workload=wl, policy=policy, engine=e, seed=s))
        for e, s in (("page", 1), ("page", 2), ("fluid", 0))
    ]
    assert {(r.converged, r.stop_reason) for r in recs} == {(True, "converged")}
    assert abs(recs[2].rounds - recs[0].rounds) <= 1
    assert recs[2].total_time_s == pytest.approx(recs[0].total_time_s, rel=0.01)


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_xen_sends_zero_pages_whole(engine):
    """Xen has no zero-page detection (v2 write_batch sends PAGE_SIZE for every page with
    stream data; classic likewise): an idle 1 GiB guest half of zeros takes bytes / rate for
    all of it, 1 GiB x 4104/4096 at 1 GbE, where a 9-byte zero page had halved it."""
    import lmtoolkit as lmt

    ds = lmt.simulate(
        [
            "policy=xen",
            "vm.memory_gib=1",
            "vm.zero_fraction=0.5",
            "workload=idle",
            "network=1gbe",
            f"engine={engine}",
        ]
    )
    wire = 1.0e9 * 0.94 / 8  # payload bytes/s of 1 GbE
    assert float(ds.transferred) == pytest.approx(2**30 * 4104 / 4096, rel=1e-3)
    assert float(ds.total_time) == pytest.approx(float(ds.transferred) / wire, rel=0.01)


def test_classic_factor_is_on_p2m_size_which_an_hvm_guest_stretches():
    """``total_sent > p2m_size * 3``, ``p2m_size = xc_domain_maximum_gpfn + 1``: a PV guest's
    pages; an HVM guest's frames up to its special pages below pfn 0xff000 (4080 MiB), or its
    RAM plus the 256 MiB MMIO hole once RAM passes 0xF0000000."""
    one, eight = scenario(memory_gib=1.0).context(), scenario(memory_gib=8.0).context()
    assert float(XenPolicy().p2m_pages(one)) == 262_144
    assert float(XenPolicy(guest="hvm").p2m_pages(one)) == 0xFF000
    assert float(XenPolicy(guest="hvm").p2m_pages(eight)) == (8 * 2**30 + 2**28) / 4096


@pytest.mark.parametrize("engine", ENGINES)
def test_an_hvm_guest_sends_three_p2m_sizes_not_three_memories(engine):
    """The hot 1 GiB guest of :func:`test_max_factor_counts_pages_sent` as HVM: it stops after
    3 x 0xff000 pages sent (11.95 GiB, about 12 x its memory), where PV stops after 3 x."""
    hot = HotColdWorkload(dirty_rate_pages_s=50_000, hot_mib=64)
    rec = run(scenario(workload=hot, policy=XenPolicy(max_rounds=10_000, guest="hvm"), engine=engine))
    sent = rec.precopy_bytes / (4096 + 8)
    assert rec.stop_reason == "max_sent"
    assert 3 * 0xFF000 < sent < 3.05 * 0xFF000


def test_guest_is_refused_where_no_factor_reads_it():
    with pytest.raises(ConfigError) as e:
        XenPolicy(version="v2", guest="hvm")
    assert e.value.key == "guest" and "max_factor" in str(e.value)
    assert XenPolicy(version="v2", max_factor=3.0, guest="hvm").guest == "hvm"  # a cap given: read
    with pytest.raises(ConfigError, match="guest"):
        XenPolicy(guest="pvh")
