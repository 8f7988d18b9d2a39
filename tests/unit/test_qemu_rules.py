"""QEMU-like rules (lmtoolkit/policies/qemu.py): switchover threshold, bandwidth cap,
iteration granularity, auto-converge steps, xbzrle, multifd."""

from __future__ import annotations

import numpy as np
import pytest

from lmtoolkit.model import HotColdWorkload, IdleWorkload, UniformWorkload
from lmtoolkit.policies import QemuPolicy
from tests.conftest import run, scenario

MIB = 2**20


@pytest.mark.parametrize("engine", ["page", "fluid"])
@pytest.mark.parametrize("limit_ms", [30, 300, 1000])
def test_switchover_when_remaining_fits_bandwidth_times_downtime_limit(engine, limit_ms):
    rec = run(
        scenario(
            workload=UniformWorkload(dirty_rate_pages_s=8_000),
            policy=QemuPolicy(downtime_limit_ms=limit_ms),
            engine=engine,
        )
    )
    assert rec.converged
    *precopy, stop = rec.round_detail
    # The bitmap at the switchover fits the threshold (bandwidth estimate x limit) ...
    assert stop.dirty_pages * 4096 <= precopy[-1].bandwidth_bytes_s * limit_ms / 1000 * 1.0001
    # ... and the sync before it did not (otherwise QEMU would have switched earlier).
    assert precopy[-1].dirty_pages * 4096 > precopy[-1].bandwidth_bytes_s * limit_ms / 1000
    # Downtime stays near the limit (pages + device state at line rate).
    assert rec.downtime_s <= limit_ms / 1000 * 1.05 + 0.003


def test_switchover_can_happen_inside_the_first_pass():
    rec = run(scenario(memory_gib=1.0, workload=IdleWorkload(), gbit=10))
    first = rec.round_detail[0]
    assert rec.rounds == 1 and first.pages < 262144  # pass 1 stopped early ...
    assert rec.round_detail[-1].pages == 262144 - first.pages  # ... the rest went in the downtime
    # The switchover check runs once per 50 ms iteration (uncapped): what is left at the sync
    # is below the threshold (0.3 s of sending) by less than one iteration's worth.
    assert 0.3 - 0.050 - 0.005 <= rec.downtime_s <= 0.3 * 1.05


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_bandwidth_cap_limits_precopy_but_not_the_stop_and_copy(engine):
    rec = run(
        scenario(
            workload=UniformWorkload(dirty_rate_pages_s=2_000),
            gbit=10,
            policy=QemuPolicy(max_bandwidth_mib_s=50),
            engine=engine,
        )
    )
    for r in rec.round_detail[:-1]:
        assert r.bytes / r.duration_s <= 50 * MIB * 1.0001
    stop = rec.round_detail[-1]
    assert stop.bytes / stop.duration_s > 500 * MIB  # 10 GbE line rate during downtime
    assert rec.total_time_s > rec.memory_bytes / (50 * MIB) * 0.95


def test_phases_last_at_least_one_iteration():
    rec = run(
        scenario(
            workload=HotColdWorkload(dirty_rate_pages_s=40_000, hot_mib=64), policy=QemuPolicy(timeout_s=30)
        )
    )
    durations = np.array([r.duration_s for r in rec.round_detail if r.kind == "precopy"])
    assert durations.min() >= 0.050 * 0.999


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_auto_converge_throttles_in_steps_and_converges(engine):
    hot = HotColdWorkload(dirty_rate_pages_s=60_000, hot_mib=256)
    plain = run(scenario(workload=hot, policy=QemuPolicy(timeout_s=120), engine=engine))
    ac = run(scenario(workload=hot, policy=QemuPolicy(timeout_s=120, auto_converge=True), engine=engine))
    assert not plain.converged and ac.converged
    steps = np.unique([round(r.throttle, 6) for r in ac.round_detail if r.kind == "precopy"])
    assert steps[0] == 0.0 and steps[1] == pytest.approx(0.20)  # cpu-throttle-initial
    assert np.allclose(np.diff(steps[1:]), 0.10)  # cpu-throttle-increment
    assert ac.throttle_max == pytest.approx(steps[-1]) and ac.guest_slowdown > 0


def test_auto_converge_needs_two_high_periods_and_respects_max():
    hot = HotColdWorkload(dirty_rate_pages_s=150_000, hot_mib=512)
    rec = run(
        scenario(workload=hot, policy=QemuPolicy(auto_converge=True, max_cpu_throttle=40, timeout_s=60))
    )
    thr = [r.throttle for r in rec.round_detail if r.kind == "precopy"]
    first = next(i for i, t in enumerate(thr) if t > 0)
    # Throttling starts only after at least two >1 s periods with dirtied > 50 % of sent.
    assert rec.round_detail[first].start_s >= 2.0
    assert max(thr) == pytest.approx(0.40)


def test_xbzrle_reduces_bytes_once_the_cache_is_filled():
    hot = HotColdWorkload(dirty_rate_pages_s=30_000, hot_mib=32)
    plain = run(scenario(workload=hot, policy=QemuPolicy()))
    xb = run(scenario(workload=hot, policy=QemuPolicy(xbzrle=True, xbzrle_cache_mib=64)))
    # the first pass and the phase in which the scan wraps (its pages fill the cache: misses)
    # send full pages; pages sent after the wrap come back as deltas (or nothing) later
    for i in (0, 1):
        assert xb.round_detail[i].bytes == pytest.approx(plain.round_detail[i].bytes)
    per_page = lambda r: sum(x.bytes for x in r.round_detail[2:]) / sum(x.pages for x in r.round_detail[2:])  # noqa: E731
    assert per_page(xb) < 0.85 * per_page(plain)


def test_multifd_lifts_the_single_stream_limit():
    from lmtoolkit.model import VM, Network
    from lmtoolkit.scenario import Scenario

    net = Network(bandwidth_gbit_s=25, stream_gbit_s=8)
    one = run(Scenario(vm=VM(memory_gib=1), workload=IdleWorkload(), network=net, policy=QemuPolicy()))
    four = run(
        Scenario(
            vm=VM(memory_gib=1), workload=IdleWorkload(), network=net, policy=QemuPolicy(multifd_channels=4)
        )
    )
    assert four.total_time_s == pytest.approx(one.total_time_s * 8 / 25, rel=0.02)


def test_iteration_ms_is_bounded_by_the_timeout_or_qemus_max_wait():
    """An iteration beyond the timeout checks only at each pass's end, as one of timeout_s
    does; 1e308 ran into NaN pages.  QEMU's 50 ms stays allowed under a shorter timeout (the
    first bound, timeout_s alone, refused every timeout under 50 ms with the default)."""
    from lmtoolkit.errors import ConfigError

    assert QemuPolicy(timeout_s=0.01).iteration_ms == 50.0
    assert QemuPolicy(iteration_ms=600_000.0).iteration_ms == 600_000.0
    with pytest.raises(ConfigError, match=r"iteration_ms=51 .*\(0, 50\] ms"):
        QemuPolicy(timeout_s=0.01, iteration_ms=51)
    with pytest.raises(ConfigError, match=r"\(0, 600000\] ms: at most timeout_s"):
        QemuPolicy(iteration_ms=1e308)
