"""Issue 7: NUMA, copy errors / ECC / checksums, networks (WAN window, sharing), storage.

Each test shows an effect, on both engines where it matters (they must agree)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmtoolkit as lmt
from lmtoolkit.cli import main
from lmtoolkit.errors import ConfigError

ENGINES = ("page", "fluid")
SMALL = ["vm.memory_gib=0.5", "workload=uniform", "workload.dirty_rate_pages_s=2000", "network=1gbe"]


def sim(extra, engine="fluid"):
    return lmt.simulate(SMALL + list(extra) + [f"engine={engine}"])


def val(ds, k):
    return float(ds[k])


@pytest.mark.parametrize("engine", ENGINES)
def test_numa_mismatch_gives_penalty_and_match_none(engine):
    same = sim([], engine)
    assert bool(same.numa_compatible) and val(same, "numa_penalty") == 0.0
    # 0.5 GiB VM: source nodes of 0.5 GiB (one vNUMA node), destination nodes of 0.125 GiB.
    diff = sim(["host.numa_node_gib=0.5", "host.dst_numa_nodes=8", "host.dst_numa_node_gib=0.125"], engine)
    assert not bool(diff.numa_compatible)
    # 3/4 of the vNUMA node's memory is remote; ratio 1.6 -> 0.75 x 0.6
    assert val(diff, "numa_penalty") == pytest.approx(0.75 * 0.6)
    # fewer destination nodes than vNUMA nodes: incompatible layout, memory still local
    fewer = sim(
        [
            "host.numa_node_gib=0.25",
            "host.src_numa_nodes=2",
            "host.dst_numa_nodes=1",
            "host.dst_numa_node_gib=1",
        ],
        engine,
    )
    assert not bool(fewer.numa_compatible) and val(fewer, "numa_penalty") == 0.0
    assert diff.numa_penalty.attrs["units"] == "1"


def test_numa_penalty_grows_with_latency_ratio():
    base = ["host.numa_node_gib=0.5", "host.dst_numa_node_gib=0.25"]
    lo = val(sim(base + ["host.numa_remote_latency_ratio=1.2"]), "numa_penalty")
    hi = val(sim(base + ["host.numa_remote_latency_ratio=2.1"]), "numa_penalty")
    assert 0 < lo < hi


@pytest.mark.parametrize("engine", ENGINES)
def test_ecc_lowers_corruption_by_orders_of_magnitude(engine):
    plain = val(sim(["host.ecc=false", "host.bit_error_rate=1e-12"], engine), "corruption_probability")
    ecc = val(sim(["host.ecc=true", "host.bit_error_rate=1e-12"], engine), "corruption_probability")
    assert 1e-4 < plain < 1
    assert 0 < ecc < plain * 1e-6
    checked = sim(["host.ecc=false", "host.bit_error_rate=1e-12", "policy.verify_checksums=true"], engine)
    assert val(checked, "corruption_probability") < plain * 1e-15
    assert val(checked, "retransmitted") > 0 and val(checked, "checksum_cpu_time") > 0


@pytest.mark.parametrize("policy", ["qemu", "xen", "vmware", "hyperv", "postcopy", "hybrid", "stopcopy"])
def test_verify_checksums_works_for_every_policy_and_costs_time_when_hashing_is_slow(policy):
    slow = ["host.hash_gib_s_per_core=0.02", "host.spare_cores=1"]
    off = sim([f"policy={policy}"] + slow)
    on = sim([f"policy={policy}", "policy.verify_checksums=true"] + slow)
    # 0.02 GiB/s of hashing is slower than 1 GbE: the pages go at the hash rate
    assert val(on, "total_time") > 1.5 * val(off, "total_time")
    assert val(on, "corruption_probability") < val(off, "corruption_probability")


@pytest.mark.parametrize("engine", ENGINES)
def test_wan_window_caps_throughput_at_window_over_rtt(engine):
    idle = ["vm.memory_gib=0.5", "workload=idle", "network=10gbe", f"engine={engine}"]
    ds = lmt.simulate(idle + ["network.latency_ms=25", "network.tcp_window_mib=2"])
    cap = 2 * 2**20 / 0.050  # window / RTT, RTT = 2 x 25 ms
    rate = val(ds, "transferred") / val(ds, "total_time")
    assert rate <= cap * 1.001
    assert rate == pytest.approx(cap, rel=0.05)
    # four streams are QEMU's multifd channels (network.streams is refused for QEMU)
    four = lmt.simulate(
        idle + ["network.latency_ms=25", "network.tcp_window_mib=2", "policy.multifd_channels=4"]
    )
    assert val(four, "total_time") == pytest.approx(val(ds, "total_time") / 4, rel=0.05)


WAN4 = [
    "vm.memory_gib=0.5",
    "workload=idle",
    "network=10gbe",
    "network.latency_ms=25",
    "network.tcp_window_mib=2",
]


@pytest.mark.parametrize(
    "policy",
    [
        ["policy=qemu"],
        ["policy=qemu", "policy.multifd_channels=0"],
        ["policy=qemu", "policy.multifd_channels=4"],
        ["policy=hybrid"],
        ["policy=xen"],
        ["policy=stopcopy"],
        ["policy=postcopy"],
        ["policy=hyperv"],
        ["policy=hyperv", "policy.transport=tcp"],
        ["policy=hyperv", "policy.transport=smb"],
    ],
)
def test_network_streams_is_refused_where_the_policy_opens_its_own_streams(policy):
    """``network.streams=4`` multiplied a one-stream migration's window cap: QEMU without
    multifd, Xen and stop-and-copy ran 4x faster than one stream can (41.09 -> 10.30 s on a
    4 MiB / 80 ms link).  The stream count is the policy's (QEMU's multifd channels,
    Hyper-V's SMB channels, one otherwise), so the key is refused, not read."""
    with pytest.raises(ConfigError) as e:
        lmt.simulate(WAN4 + policy + ["network.streams=4"])
    assert e.value.key == "network.streams"
    assert "network.streams=4 is not allowed for policy " in str(e.value)
    assert "it would change nothing (leave it at its default, 1)" in str(e.value)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["qemu", "xen", "stopcopy", "hyperv_2008r2"])
def test_a_one_stream_policy_is_window_limited_at_one_window_per_rtt(policy, engine):
    """An idle guest over a window-limited link: time = bytes / min(line, window / RTT) for
    every one-stream policy (Hyper-V 2008 R2: TCP, no compression)."""
    ds = lmt.simulate(WAN4 + [f"policy={policy}", f"engine={engine}"])
    cap = 2 * 2**20 / 0.050
    rate = val(ds, "transferred") / val(ds, "total_time")
    assert rate <= cap * 1.001
    assert rate == pytest.approx(cap, rel=0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_streams_multiply_the_window_cap_up_to_the_line(engine):
    """QEMU's multifd channels and vMotion's vmknics (``network.streams``, one stream each,
    Broadcom KB 323379) multiply window / RTT; never beyond the line rate."""
    base = WAN4 + [f"engine={engine}"]
    cap = 2 * 2**20 / 0.050

    def rate(extra):
        ds = lmt.simulate(base + extra)
        return val(ds, "transferred") / val(ds, "total_time")

    for n in (2, 4):
        assert rate([f"policy.multifd_channels={n}"]) == pytest.approx(n * cap, rel=0.05)
        vm = rate(["policy=vmware", "policy.encryption=false", f"network.streams={n}"])
        assert vm == pytest.approx(n * cap, rel=0.05)
    line = 10e9 * 0.94 / 8
    assert rate(["policy.multifd_channels=64"]) <= line * 1.001


@pytest.mark.parametrize("engine", ENGINES)
def test_the_wan_preset_is_window_limited(engine):
    """``network=wan``: 1 Gbit/s at 85 % payload, 4 MiB window per stream.  An idle guest
    takes bytes / min(line, streams x window / RTT), RTT = 2 x latency: line-limited at 10 ms,
    window-limited beyond (4 MiB / 80 ms = 0.42 Gbit/s), so 150 ms is 3.75x slower than 40 ms.
    The preset had a fixed 0.5 Gbit/s stream and no window: 40.52 / 40.55 / 40.59 / 40.66 s
    for 10 / 40 / 80 / 150 ms (2 GiB)."""
    line = 1e9 * 0.85 / 8
    window = 4 * 2**20
    base = ["network=wan", "vm.memory_gib=0.5", "workload=idle", f"engine={engine}"]
    times = {}
    for ms, extra, streams in [(10, [], 1), (40, [], 1), (80, [], 1), (150, [], 1)] + [
        (150, ["policy.multifd_channels=4"], 4),
        (40, ["policy.multifd_channels=4"], 4),
    ]:
        ds = lmt.simulate(base + [f"network.latency_ms={ms}"] + extra)
        want = min(line, streams * window / (2 * ms / 1000))
        rate = val(ds, "transferred") / val(ds, "total_time")
        assert rate <= want * 1.001, (ms, extra)
        assert rate == pytest.approx(want, rel=0.03), (ms, extra)
        times[ms, streams] = val(ds, "total_time")
    assert times[150, 1] / times[40, 1] == pytest.approx(150 / 40, rel=0.03)
    assert times[80, 1] / times[40, 1] == pytest.approx(2, rel=0.03)
    assert times[150, 4] == pytest.approx(times[150, 1] / 4, rel=0.03)
    assert times[40, 4] == pytest.approx(times[10, 1], rel=0.03)  # both fill the line


def test_background_traffic_slows_a_shared_link():
    idle = ["vm.memory_gib=0.5", "workload=idle", "network=1gbe", "engine=fluid"]
    ded = lmt.simulate(idle)
    shared = lmt.simulate(idle + ["network.background_gbit_s=0.5"])
    assert val(shared, "total_time") == pytest.approx(2 * val(ded, "total_time"), rel=0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_storage_migrate_adds_disk_bytes_and_time(engine):
    shared = sim([], engine)
    moved = sim(["storage=migrate", "storage.disk_gib=2", "storage.write_rate_mib_s=10"], engine)
    disk = 2 * 2**30
    assert val(shared, "storage_time") == 0 and val(shared, "storage_transferred") == 0
    assert val(moved, "storage_transferred") >= disk
    assert val(moved, "transferred") >= val(shared, "transferred") + disk
    assert val(moved, "storage_time") >= disk / (1e9 * 0.94 / 8)
    assert val(moved, "total_time") > val(shared, "total_time") + val(moved, "storage_time") * 0.99
    assert moved.storage_time.attrs["units"] == "s"


def _near_copy_rate(share, *extra):
    """storage=migrate over 1 GbE, the disk written at ``share`` of the rate its copy gets."""
    from lmtoolkit.model.network import Network
    from lmtoolkit.model.storage import Storage

    rate = Storage(mode="migrate").copy_rate_bytes_s(Network(bandwidth_gbit_s=1.0))
    return ["storage=migrate", f"storage.write_rate_mib_s={share * rate / 2**20!r}", *extra], rate


@pytest.mark.parametrize("engine", ENGINES)
def test_a_disk_copy_not_in_sync_by_the_timeout_ends_the_migration(engine):
    """The 40 GiB disk written at 95 % of the 112 MiB/s its copy gets on 1 GbE: 30 passes,
    1,734.5 s before the mirror took over, and then the memory migration had its own 600 s
    (total 2,100.5 s, "converged").  The timeout covers the whole migration: the copy is
    abandoned at 600 s (QEMU: the mirror job is not ready, block/mirror.c), memory never
    starts, the guest never paused."""
    o, rate = _near_copy_rate(0.95, "vm.memory_gib=0.5", "workload=idle", "network=1gbe", f"engine={engine}")
    ds = lmt.simulate(o)
    assert str(ds.stop_reason.values) == "timeout" and not bool(ds.completed) and not bool(ds.converged)
    assert val(ds, "total_time") == val(ds, "storage_time") == pytest.approx(600.0, rel=1e-12)
    assert int(ds.rounds) == 0 and np.isnan(val(ds, "downtime"))
    # the link carried the disk copy the whole 600 s, and nothing of the memory
    assert val(ds, "transferred") == val(ds, "storage_transferred") == pytest.approx(600.0 * rate, rel=1e-12)
    # given the time, the same copy gets in sync and the migration completes
    late = lmt.simulate([*o, "policy.timeout_s=3600"])
    assert bool(late.completed) and val(late, "storage_time") == pytest.approx(1734.5, abs=0.1)
    assert val(late, "total_time") > val(late, "storage_time")


def test_one_fluid_batch_mixes_rows_cut_in_the_disk_copy_and_rows_that_run():
    """A batch with a row whose disk copy takes the whole timeout and rows that migrate memory
    gives each row what it gives alone (the cut row leaves the group before the first phase)."""
    from lmtoolkit.engine import simulate_fluid
    from lmtoolkit.runner import build_scenario, compose

    base = ["engine=fluid", "storage=migrate", "storage.disk_gib=1", "vm.memory_gib=0.5", "network=1gbe"]
    scns = [build_scenario(compose([*base, f"policy.timeout_s={t}"])) for t in (5, 60, 600)]
    both = simulate_fluid(scns).records()
    alone = [simulate_fluid([s]).records()[0] for s in scns]
    assert [r.stop_reason for r in both] == ["timeout", "converged", "converged"]
    assert both[0].rounds == 0 and both[0].total_time_s == both[0].storage_time_s == 5.0
    for b, a in zip(both, alone):
        assert b.total_time_s == a.total_time_s and b.transferred_bytes == a.transferred_bytes


def test_the_disk_copy_is_cut_at_the_deadline_with_the_bytes_sent_by_then():
    from lmtoolkit.model.storage import Storage, disk_precopy

    rate = 100.0 * 2**20
    st = Storage(mode="migrate", disk_gib=10.0, write_rate_mib_s=95.0)
    whole = disk_precopy(st, rate)
    assert whole.ready and whole.passes == 31 and whole.time_s > 300  # 30 passes and the flush
    cut = disk_precopy(st, rate, deadline_s=300.0)
    assert not cut.ready and cut.time_s == 300.0 and cut.bytes == pytest.approx(300.0 * rate)
    assert cut.passes < whole.passes
    assert disk_precopy(st, rate, deadline_s=whole.time_s + 1) == whole


def test_every_mirror_granularity_qemu_takes_is_accepted():
    from lmtoolkit.model.storage import Storage

    for kib in (0.5, 1, 4, 64, 1024, 65536):
        assert Storage(mode="migrate", block_kib=kib).block_kib == kib


def test_storage_results_agree_between_engines():
    o = ["storage=migrate", "storage.disk_gib=1"]
    p, f = sim(o, "page"), sim(o, "fluid")
    assert val(p, "storage_time") == pytest.approx(val(f, "storage_time"))
    assert val(p, "transferred") == pytest.approx(val(f, "transferred"), rel=0.02)


@pytest.mark.parametrize(
    "override,key",
    [
        (["vm.memory_gib=600"], "vm.memory_gib"),  # larger than the host
        (["vm.memory_gib=2", "host.numa_node_gib=1", "host.numa_spanning=false"], "vm.memory_gib"),
        (["host.dst_numa_nodes=0"], "host.dst_numa_nodes"),
        (["network.background_gbit_s=-1"], "network.background_gbit_s"),
        (["storage.write_rate_mib_s=-5"], "storage.write_rate_mib_s"),
        (["host.bit_error_rate=-1e-9"], "host.bit_error_rate"),
        (["network.tcp_window_mib=0"], "network.tcp_window_mib"),
        (["storage=migrate", "storage.write_rate_mib_s=500"], "storage.write_rate_mib_s"),  # > 1 GbE
        # shared storage copies and mirrors nothing: a disk size or write rate ran as the default
        (["storage=shared", "storage.disk_gib=100"], "storage.disk_gib"),
        (["storage.write_rate_mib_s=50"], "storage.write_rate_mib_s"),
        # QEMU's mirror granularity: a power of two from 512 B to 64 MiB (blockdev.c)
        (["storage=migrate", "storage.block_kib=3"], "storage.block_kib"),
        (["storage=migrate", "storage.block_kib=0.75"], "storage.block_kib"),
        (["storage=migrate", "storage.block_kib=131072"], "storage.block_kib"),
    ],
)
def test_bad_input_is_one_clear_error(override, key):
    with pytest.raises(ConfigError) as e:
        sim(override)
    assert e.value.key == key
    assert "=" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_bad_topology_from_the_cli(capsys):
    assert main(["run", "vm.memory_gib=600"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vm.memory_gib=600" in err[0] and "host" in err[0]


# -- copy errors: re-sends inside the phase that found them (lmtoolkit/model/reliability.py) --
#: 1 GbE, no ECC, checksums on: a 4 KiB page arrives right with q = (1 - 1e-6)^32768 ~ 0.968
RESEND = ["host.ecc=false", "policy.verify_checksums=true", "host.bit_error_rate=1e-6"]


def _q(ber=1e-6, page_bytes=4096):
    return (1.0 - ber) ** (8 * page_bytes)


@pytest.mark.parametrize("engine", ENGINES)
def test_stopcopy_resends_are_part_of_the_pause(engine):
    """Stop-and-copy has no pre-copy: the guest is paused throughout, so the pages its
    checksums re-send are sent in the pause.  The re-sends used to be added after the engine:
    total 9.4636 s, downtime 9.1585 s, 3.585e7 B reported as pre-copy bytes."""
    o = ["policy=stopcopy", "network=1gbe", "vm.memory_gib=1", f"engine={engine}"]
    clean = lmt.simulate(o + ["policy.verify_checksums=true"])
    ds = lmt.simulate(o + RESEND)
    assert val(ds, "downtime") == val(ds, "total_time")
    assert val(ds, "precopy_transferred") == 0.0
    assert val(ds, "retransmitted") > 0
    # every non-zero page goes 1/q times: the pause's page time and bytes grow by 1/q
    assert val(ds, "downtime") == pytest.approx(val(clean, "downtime") / _q(), rel=2e-3)
    assert val(ds, "transferred") == pytest.approx(val(clean, "transferred") / _q(), rel=2e-3)
    # the re-sent bytes are the share p = 1 - q of the verified pages' bytes
    assert val(ds, "retransmitted") == pytest.approx((1 - _q()) * val(ds, "transferred"), rel=2e-3)
    stop = ds.round_kind.values == 1
    assert float(ds.round_bytes.values[stop].sum()) == pytest.approx(val(ds, "transferred"), rel=1e-9)


TIMED_OUT = [
    "network=1gbe",
    "workload=uniform",
    "workload.dirty_rate_pages_s=60000",
    "policy.timeout_s=30",
    "vm.memory_gib=1",
    *RESEND,
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("disk", [[], ["storage=migrate", "storage.disk_gib=1"]])
def test_a_run_with_resends_that_times_out_stops_at_the_timeout(engine, disk):
    """README: a timed-out run has total_time = timeout_s, a disk copy included (9.6 s of the
    30 here; the memory migration had its own 30 s after it: 39.6 s).  The re-sends' time was
    added after the engine had stopped at the timeout: 31.00 s."""
    ds = lmt.simulate(TIMED_OUT + disk + [f"engine={engine}"])
    assert str(ds.stop_reason.values) == "timeout" and not bool(ds.completed)
    assert val(ds, "total_time") == pytest.approx(30.0, rel=1e-12)
    assert (val(ds, "storage_time") > 9) == bool(disk) and int(ds.rounds) > 0
    # the rounds' bytes hold the re-sends (they are the memory migration's bytes)
    mem = val(ds, "transferred") - val(ds, "storage_transferred")
    assert float(np.nansum(ds.round_bytes.values)) == pytest.approx(mem, rel=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_stopcopy_with_resends_times_out_inside_the_pause(engine):
    """The fluid engine reported 5.17 s for a 5 s timeout."""
    ds = sim(["policy=stopcopy", "policy.timeout_s=5", "vm.memory_gib=1", *RESEND], engine)
    assert str(ds.stop_reason.values) == "timeout"
    assert val(ds, "total_time") == pytest.approx(5.0, rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_resends_slow_a_hash_limited_copy(engine):
    """A re-sent page is hashed again: where hashing, not the wire, sets the pace the
    re-sends cost time too (they were charged at the wire rate)."""
    slow = ["policy=stopcopy", "host.hash_gib_s_per_core=0.02", "host.spare_cores=1"]
    clean = sim(slow + ["policy.verify_checksums=true"], engine)
    ds = sim(slow + RESEND, engine)
    assert val(ds, "total_time") == pytest.approx(val(clean, "total_time") / _q(), rel=2e-3)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_error_rate_does_not_converge_it_times_out(engine):
    """1e-3 per bit without ECC: 1/q ~ 1.7e14 transmissions per page.  It reported a total
    of 3.17e14 s, "converged yes, completed yes"."""
    ds = sim(["host.ecc=false", "policy.verify_checksums=true", "host.bit_error_rate=1e-3"], engine)
    assert not bool(ds.completed) and not bool(ds.converged)
    assert str(ds.stop_reason.values) == "timeout"
    assert val(ds, "total_time") == pytest.approx(600.0)
    for k in ("transferred", "energy_total", "retransmitted", "checksum_cpu_time"):
        assert np.isfinite(val(ds, k)), k


def test_a_page_that_can_never_pass_its_checksum_is_one_clear_error():
    """0.01 per bit (the top of the range) without ECC: q = e^-329, a page fails with
    probability 1 in double precision.  It ran to total inf, energy nan, "completed yes"."""
    with pytest.raises(ConfigError) as e:
        sim(["host.ecc=false", "policy.verify_checksums=true", "host.bit_error_rate=0.01"])
    assert e.value.key == "host.bit_error_rate"
    assert len(str(e.value).splitlines()) == 1 and "verify_checksums" in str(e.value)
    # without checksums nothing is re-sent: the run completes and reports the corruption
    ds = sim(["host.ecc=false", "host.bit_error_rate=0.01"])
    assert bool(ds.completed) and val(ds, "corruption_probability") == 1.0


def test_corruption_counts_the_resent_pages():
    """Re-sent pages are moved again, so they count in corruption_probability (its docstring
    said so; it was computed before they were added)."""
    from lmtoolkit.model.reliability import HASH_MISS

    ds = sim(RESEND)
    pages = (val(ds, "transferred") - val(ds, "storage_transferred")) / 4096
    expect = -np.expm1(pages * np.log1p(-(1 - _q()) * HASH_MISS))
    assert val(ds, "corruption_probability") == pytest.approx(expect, rel=1e-9, abs=0)


def test_resends_agree_between_engines():
    for extra in (["policy=qemu"], ["policy=stopcopy"], ["policy=postcopy"], ["policy=xen"]):
        p, f = sim(extra + RESEND, "page"), sim(extra + RESEND, "fluid")
        for k in ("total_time", "transferred", "retransmitted", "checksum_cpu_time"):
            assert val(f, k) == pytest.approx(val(p, k), rel=0.02), (extra, k)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ber=st.one_of(st.floats(0.0, 0.01), st.floats(-12, -2).map(lambda x: 10.0**x)),
    ecc=st.booleans(),
    verify=st.booleans(),
    policy=st.sampled_from(["qemu", "stopcopy", "postcopy", "hybrid", "xen", "vmware", "hyperv"]),
    engine=st.sampled_from(ENGINES),
)
def test_no_allowed_error_rate_gives_inf_or_nan(ber, ecc, verify, policy, engine):
    """Any host.bit_error_rate of the allowed range [0, 0.01], with or without checksums: a
    result with finite numbers (a timeout where the re-sends are too many) or one clear error
    where a page can never pass its checksum — never inf, nan or a RuntimeWarning."""
    o = [
        f"host.bit_error_rate={ber!r}",
        f"host.ecc={str(ecc).lower()}",
        f"policy.verify_checksums={str(verify).lower()}",
        f"policy={policy}",
        "vm.memory_gib=0.25",
        "policy.timeout_s=60",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            ds = sim(o, engine)
        except ConfigError as e:
            assert verify and e.key == "host.bit_error_rate", str(e)
            return
    for k in ("total_time", "transferred", "retransmitted", "checksum_cpu_time", "energy_total"):
        assert np.isfinite(val(ds, k)), (k, val(ds, k))
    assert 0.0 <= val(ds, "corruption_probability") <= 1.0
    if bool(ds.completed):
        assert np.isfinite(val(ds, "downtime"))
    else:
        assert val(ds, "total_time") == pytest.approx(60.0)


# -- host.spare_cores: one rule for compression, encryption and hashing ------------------------
@pytest.mark.parametrize(
    "policy,refused",
    [
        (["policy=hyperv"], True),  # compression (2012 R2 profile): timed out at 600 s, 0 B sent
        (["policy=vmware", "policy.encryption=true"], True),  # ran 1.83 s on a core it did not have
        (["policy=qemu", "policy.verify_checksums=true"], True),  # hashing likewise
        (["policy=hyperv", "policy.transport=tcp"], False),  # no helper work: needs no spare core
        (["policy=vmware", "policy.encryption=false"], False),
        (["policy=qemu"], False),
    ],
)
def test_no_spare_core_is_refused_where_the_policy_has_helper_work(policy, refused):
    o = policy + ["host.spare_cores=0"]
    if not refused:
        assert bool(sim(o).completed)
        return
    with pytest.raises(ConfigError) as e:
        sim(o)
    assert e.value.key == "host.spare_cores" and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "work",
    [
        ["policy=vmware", "policy.encryption=true", "host.encrypt_gib_s_per_core=0.05"],
        ["policy=xen", "policy.verify_checksums=true", "host.hash_gib_s_per_core=0.05"],
        ["policy=hyperv", "policy.transport=compression", "host.compress_mib_s_per_core=50"],
    ],
)
def test_helper_work_runs_on_the_spare_cores_fractions_included(engine, work):
    """Half a spare core does the CPU-bound work in twice the time, whatever the work — it
    did for compression only (encryption and hashing were given a whole core below one)."""
    o = work + ["workload=idle", "vm.memory_gib=0.5", "network=1gbe", f"engine={engine}"]
    half = lmt.simulate(o + ["host.spare_cores=0.5"])
    one = lmt.simulate(o + ["host.spare_cores=1"])
    assert val(half, "total_time") == pytest.approx(2 * val(one, "total_time"), rel=0.02)


def test_the_host_and_scheduling_constants_name_their_sources():
    """Each illustrative constant says where its number comes from (or that it is ours): the
    NUMA latency ratio had "~80 vs ~130 ns" with no source, the compressor's and the cipher's
    per-core rates none, worst-fit placement and max-min sharing none."""
    from lmtoolkit import concurrency
    from lmtoolkit.model import evacuation, numa
    from lmtoolkit.model.host import Host

    # Denneman's NUMA deep dive: ~190 cycles local, ~310 remote on a two-socket Xeon
    assert "Denneman" in numa.__doc__ and Host().numa_remote_latency_ratio == pytest.approx(
        310 / 190, abs=0.05
    )
    assert "LZ4" in Host.__doc__ and "Gopal" in Host.__doc__ and "**ours**" in Host.__doc__
    assert "worst fit: **ours**" in evacuation.__doc__
    assert "Bertsekas" in concurrency.__doc__
