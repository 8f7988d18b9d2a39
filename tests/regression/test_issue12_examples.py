"""The page/fluid disagreements issue 12 reported, as regression tests (the issue's commands).

* Sequential writes: a write cursor slower than the send cursor lands on pages already sent,
  so every write re-dirties — the fluid engine treated half of them as absorbed (downtime
  off by up to 26x).
* Short partial phases: QEMU's 50/100 ms iterations send in address order from a persistent
  cursor — the fluid engine sampled the bitmap at random, ran ~10 % high on skewed workloads
  and timed out where the page engine converged.
"""

from __future__ import annotations

import numpy as np
import pytest

import lmtoolkit as lmt

SEQUENTIAL = [
    "policy=vmware",
    "workload=sequential",
    "vm.memory_gib=6.75",
    "network.bandwidth_gbit_s=1.91",
    "workload.dirty_rate_pages_s=891",
    "seed=264622216",
]
ZIPF = [
    "policy=qemu",
    "workload=zipf",
    "vm.memory_gib=2",
    "network.bandwidth_gbit_s=1",
    "workload.dirty_rate_pages_s=69102",
]


def both(overrides):
    return [lmt.simulate([f"engine={e}"] + overrides) for e in ("page", "fluid")]


def test_sequential_writes_every_write_redirties():
    page, fluid = both(SEQUENTIAL)
    assert float(page.downtime) == pytest.approx(0.0098, rel=0.05)
    assert float(fluid.downtime) == pytest.approx(float(page.downtime), rel=0.10)  # was 26x
    assert float(fluid.total_time) == pytest.approx(float(page.total_time), rel=0.01)
    assert float(fluid.transferred) == pytest.approx(float(page.transferred), rel=0.01)
    assert int(fluid.rounds) == int(page.rounds) == 2


def test_short_partial_phases_keep_the_cursor():
    """The issue's run used the per-page dirty-log clear (then the default): the page engine
    converges in ~38 s (three seeds: 37.0-39.4 s); the fluid bitmap follows it within 2 %
    (a seed's noise) through the 50 ms phases and the fluid engine converges too (median first dip below the
    threshold, :func:`lmtoolkit.engine.fluid._first_passage`)."""
    page, fluid = both(ZIPF + ["policy.dirty_clear=send"])
    assert bool(page.converged) and bool(fluid.converged)
    assert float(page.total_time) == pytest.approx(37.6, rel=0.01)
    assert float(fluid.total_time) == pytest.approx(float(page.total_time), rel=0.25)
    kind = page.round_kind.values
    pre = np.flatnonzero(kind == 0)[5:60]
    dp, df = page.round_dirty_pages.values[pre], fluid.round_dirty_pages.values[pre]
    # within one seed's noise (sd ~1 %) of the page engine's bitmap (was ~10 % high)
    assert abs(np.mean(df / dp - 1)) < 0.01 and np.max(np.abs(df / dp - 1)) < 0.03


def test_short_partial_phases_with_the_chunk_rule():
    """With the KVM default (1 GiB chunks) the same migration hovers ~5 standard deviations
    above the threshold: page-engine seeds disagree (one converges by 150 s, two do not), and
    the fluid bitmap sits on the page engine's mean level (3 seeds, 20 s windows)."""
    import dataclasses

    from lmtoolkit.engine import simulate_fluid, simulate_page

    scn = lmt.build_scenario(lmt.compose(ZIPF + ["policy.timeout_s=100"]))

    def level(rec, a, b):
        rd = [(r.start_s, r.dirty_pages) for r in rec.round_detail if r.kind == "precopy"]
        return np.mean([d for t, d in rd if a <= t < b])

    pages = [simulate_page(dataclasses.replace(scn, seed=s), round_detail=10**5) for s in (0, 1, 2)]
    fluid = simulate_fluid([dataclasses.replace(scn, engine="fluid")], round_detail=10**5).records()[0]
    for a, b in ((60, 80), (80, 100)):
        page_level = np.mean([level(r, a, b) for r in pages])
        assert level(fluid, a, b) == pytest.approx(page_level, rel=0.015), (a, b)
