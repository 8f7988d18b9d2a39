"""Real QEMU migrations (lmtoolkit/testbed): an idle and a dirtying run, guest memory checked,
and the simulator's prediction for each within the validation goals.

Needs `lmtk testbed setup` (CI runs it in .ci/run); if the testbed is not set up, the first
test runs it: it downloads QEMU 10 and a Debian kernel (about 0.5 GB unpacked into
~/.cache/lmtoolkit/testbed) and compiles the guest.  Skipped with the reason if the testbed
cannot be set up here.  Part of the CI tier (`-m testbed`), not of the default run.
About 30 s once set up: one TCG boot, two migrations.
"""

from __future__ import annotations

import pytest

from lmtoolkit.testbed import validate as V
from lmtoolkit.testbed.driver import GuestSpec, RunSpec, Testbed
from lmtoolkit.testbed.record import to_dataset
from lmtoolkit.testbed.setup import SetupError, paths, setup

pytestmark = [pytest.mark.integration, pytest.mark.testbed]


@pytest.fixture(scope="module")
def testbed_paths():
    p = paths()
    if not p.ready():
        try:
            p = setup(log=lambda *a: None)
        except SetupError as e:
            pytest.skip(f"testbed not available: {e}")
    return p


@pytest.fixture(scope="module")
def calibration():
    from lmtoolkit.paths import project_root
    from lmtoolkit.testbed.record import load_runs

    runs = load_runs(project_root() / "data" / "testbed")
    return V.fit([r for r in runs if V.is_fit(r.attrs.get("lmt_label", ""))])


@pytest.fixture(scope="module")
def measured(testbed_paths):
    specs = {
        "idle": RunSpec(dirty_rate_pages_s=0, max_bandwidth_mib_s=100, settle_s=0.5),
        "dirty": RunSpec(dirty_rate_pages_s=5000, hot_mib=32, max_bandwidth_mib_s=100, settle_s=1.0),
    }
    out = {}
    with Testbed(GuestSpec(), testbed_paths, log=lambda *a: None) as tb:
        for name, spec in specs.items():
            m = tb.migrate(spec)
            m["label"] = name
            out[name] = (m, to_dataset(m))
        assert tb.src.alive()
    return out


@pytest.mark.parametrize("name", ["idle", "dirty"])
def test_real_migration_keeps_guest_memory(measured, name):
    m, ds = measured[name]
    assert m["status"] == "completed" and bool(ds.completed.item())
    assert m["verify_pages"] == GuestSpec().buffer_mib * 256
    assert m["verify_bad_pages"] == 0
    assert ds.dirty_sync_count.item() >= 3  # setup sync + one in pre-copy + the final one
    if name == "dirty":
        assert m["dirty_rate_measured"] > 4000
        assert ds.ram_normal.item() > ds.ram_total.item() / 4096 - ds.ram_duplicate.item()  # re-sent pages


@pytest.mark.parametrize("name", ["idle", "dirty"])
def test_simulator_predicts_the_real_migration(measured, calibration, name):
    import lmtoolkit as lmt

    _, run = measured[name]
    sim = lmt.simulate(V.overrides_for(run, calibration))
    rel_t = abs(sim.total_time.item() / run.total_time.item() - 1)
    rel_b = abs(sim.transferred.item() / run.transferred.item() - 1)
    down_ms = abs(sim.downtime.item() - run.downtime.item()) * 1000
    # One run, not a median: held to the 90th-percentile goal of the total time and to twice
    # the median goal of the bytes.
    assert rel_b <= 2 * V.GOALS["transferred"], rel_b
    assert rel_t <= V.GOALS["total_time_p90"], rel_t
    # The stop-and-copy runs uncapped and its speed follows the host's load, and an idle
    # guest's last bytes depend on its memory layout (data/testbed's idle runs at 150 MiB/s:
    # measured 43 and 48 ms, simulated 25 and 56 ms): held to the 90th percentile of the
    # reference set's held-out downtime errors (35.2 ms, README), not to the median goal.
    assert down_ms <= 35.2, down_ms
    assert bool(sim.converged.item()) == bool(run.converged.item())
    assert abs(V.simulated_syncs(sim) - run.dirty_sync_count.item()) <= 1
