"""Issue 7: NUMA, copy errors / ECC / checksums, networks (WAN window, sharing), storage.

Each test shows an effect, on both engines where it matters (they must agree)."""

from __future__ import annotations

import pytest

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
