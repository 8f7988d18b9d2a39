"""Issue 7: concurrent migrations sharing links (max-min fairness) and host evacuation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import lmtoolkit as lmt
from lmtoolkit.cli import main
from lmtoolkit.concurrency import Planned, max_min_rates, simulate_concurrent
from lmtoolkit.errors import ConfigError
from tests.conftest import cli_error

pytestmark = pytest.mark.integration

SMALL = [
    "evacuation.vms=[{name: a, memory_gib: 1, dirty_rate_pages_s: 2000, count: 3},"
    "{name: b, memory_gib: 2, dirty_rate_pages_s: 500, count: 2}]"
]


def test_max_min_shares_a_link_equally_and_gives_the_rest_to_others():
    links = {("s", "out"): 10.0, ("d1", "in"): 10.0, ("d2", "in"): 3.0}
    r = max_min_rates(
        [(("s", "out"), ("d1", "in")), (("s", "out"), ("d1", "in"))], links, np.array([np.inf, np.inf])
    )
    assert r == pytest.approx([5.0, 5.0])
    # a flow held to 3 by its other link leaves 7 to the other one
    r = max_min_rates(
        [(("s", "out"), ("d1", "in")), (("s", "out"), ("d2", "in"))], links, np.array([np.inf, np.inf])
    )
    assert r == pytest.approx([7.0, 3.0])


def test_two_identical_migrations_share_the_source_link_equally():
    # no propagation delay: the mean rate is bytes over a duration the link is busy throughout
    scn = lmt.build_scenario(
        lmt.compose(["vm.memory_gib=0.5", "engine=fluid", "network=1gbe", "network.latency_ms=0"])
    )
    link = scn.network.payload_bytes_s()
    solo = simulate_concurrent([Planned("a", scn, "s", "d1", 0.0)], {"s": link, "d1": link})[0]
    pair = simulate_concurrent(
        [Planned("a", scn, "s", "d1", 0.0), Planned("b", scn, "s", "d2", 0.0)],
        {"s": link, "d1": link, "d2": link},
    )
    assert pair[0].end_s == pytest.approx(pair[1].end_s)
    assert pair[0].mean_rate_bytes_s == pytest.approx(link / 2, rel=1e-6)
    assert pair[0].end_s == pytest.approx(2 * solo.end_s, rel=0.02)  # idle guest: exactly twice


def test_evacuation_dataset_and_makespan_bound():
    ds = lmt.evacuate(["policy=vmware"] + SMALL)
    assert ds.sizes["vm"] == 5
    for v, u in (
        ("start", "s"),
        ("end", "s"),
        ("downtime", "s"),
        ("transferred", "bytes"),
        ("makespan", "s"),
    ):
        assert v in ds and ds[v].attrs["units"] == u
    assert float(ds.concurrency) == 8  # vMotion on 10 GbE
    link = 10e9 * 0.94 / 8  # source host payload rate (bytes/s)
    assert float(ds.makespan) >= float(ds.transferred.sum()) / link * (1 - 1e-9)
    assert float(ds.makespan) == pytest.approx(float(ds.end.max()))
    assert (ds.end > ds.start).all() and bool(ds.completed.all())
    # the engine it ran is the one it records (it recorded page and ran fluid)
    assert "engine: fluid" in ds.attrs["lmt_config"]


def test_concurrency_limit_comes_from_the_policy_and_serialises_migrations():
    hv = lmt.evacuate(["policy=hyperv"] + SMALL)
    assert float(hv.concurrency) == 2
    starts = np.sort(hv.start.values)
    ends = np.sort(hv.end.values)
    # never more than 2 running at once
    t = np.concatenate([starts, ends])
    running = [(hv.start.values <= x + 1e-9).sum() - (hv.end.values <= x + 1e-9).sum() for x in t]
    assert max(running) <= 2
    one = lmt.evacuate(["policy=vmware", "evacuation.concurrency=1"] + SMALL)
    assert float(one.makespan) > float(lmt.evacuate(["policy=vmware"] + SMALL).makespan)


def test_order_changes_who_goes_first():
    big = lmt.evacuate(["evacuation.order=largest_first", "evacuation.concurrency=1"] + SMALL)
    small = lmt.evacuate(["evacuation.order=smallest_first", "evacuation.concurrency=1"] + SMALL)
    first = lambda ds: str(ds.vm.values[int(np.argmin(ds.start.values))])  # noqa: E731
    assert first(big).startswith("b") and first(small).startswith("a")
    # serial migrations of small VMs first finish more VMs early
    assert float(small.end.mean()) < float(big.end.mean())


def test_experiment_axes_become_dims():
    ds = lmt.evacuate(
        [
            "experiment=evacuation_order",
            "sweep.axes.order.values=[largest_first,given]",
            "evacuation.vms=[{name: a, memory_gib: 1, count: 2}]",
        ]
    )
    assert set(ds.makespan.dims) == {"order", "links", "replicate"}  # like every sweep
    assert (ds.end.max("vm") == ds.makespan).all()
    # 1 GbE takes about ten times as long as 10 GbE
    ratio = float(ds.makespan.sel(links="gigabit")[0, 0] / ds.makespan.sel(links="default")[0, 0])
    assert 5 < ratio < 11


def test_vm_larger_than_every_destination_is_one_clear_error():
    with pytest.raises(ConfigError) as e:
        lmt.evacuate(["evacuation.vms=[{name: huge, memory_gib: 300}]"])
    assert e.value.key == "evacuation.vms[0].memory_gib"
    with pytest.raises(ConfigError) as e:
        lmt.evacuate(["evacuation.order=random"])
    assert e.value.key == "evacuation.order"


def test_cli_evacuate(tmp_path, capsys):
    out = tmp_path / "ev.nc"
    assert main(["evacuate", "-o", str(out), "policy=hyperv"] + SMALL) == 0
    text = capsys.readouterr().out
    assert "makespan" in text and out.exists()
    assert main(["evacuate", "evacuation.setup_s=-1"]) == 2


def test_a_vm_that_cannot_converge_stops_at_its_timeout_and_stays_on_the_source():
    """QEMU-like, no auto-converge: 60,000 pages/s over 4 GiB never converges on 1 GbE.  It used
    to run to the rate tables' horizon (makespan 10,000,001 s, ~1 PB "sent"); now it is
    abandoned at policy.timeout_s after its data starts flowing, and the other VM is moved."""
    vms = (
        "evacuation.vms=[{name: hot, memory_gib: 4.0, dirty_rate_pages_s: 60000, wss_mib: 4096, count: 1},"
        " {name: quiet, memory_gib: 2.0, dirty_rate_pages_s: 100, wss_mib: 64, count: 1}]"
    )
    ds = lmt.evacuate(
        ["policy=qemu", "policy.timeout_s=300", "evacuation=gigabit", "evacuation.setup_s=1", vms]
    )
    hot, quiet = ds.sel(vm="hot"), ds.sel(vm="quiet")
    assert not bool(hot.completed) and np.isnan(float(hot.downtime))
    assert float(hot.end) - float(hot.start) == pytest.approx(301.0, abs=0.01)
    link = 1e9 / 8
    assert float(hot.transferred) <= link * 300
    assert float(hot.transferred) > 0.8 * link * 300 * 0.9
    assert bool(quiet.completed) and float(quiet.downtime) > 0
    assert float(ds.makespan) == pytest.approx(301.0, abs=0.01)


def test_an_abandoned_vm_has_no_downtime_when_its_timeout_is_the_tables_horizon():
    """With policy.timeout_s=20000 the rate tables run to the timeout itself (it exceeds 50
    memory copies at the slowest rate), so the hot VM's progress reaches 1 at the timeout, and
    it took the table's downtime: 0.0 s for a VM that never paused (NaN read as 0), where the
    engines now also report an abandoned pause."""
    vms = (
        "evacuation.vms=[{name: hot, memory_gib: 4.0, dirty_rate_pages_s: 60000, wss_mib: 4096, count: 1},"
        " {name: quiet, memory_gib: 2.0, dirty_rate_pages_s: 100, wss_mib: 64, count: 1}]"
    )
    ds = lmt.evacuate(
        ["policy=qemu", "policy.timeout_s=20000", "evacuation=gigabit", "evacuation.setup_s=1", vms]
    )
    hot = ds.sel(vm="hot")
    assert not bool(hot.completed) and np.isnan(float(hot.downtime))
    assert float(hot.end) - float(hot.start) == pytest.approx(20001.0, abs=0.01)


# -- what an evacuation reads, and what it refuses -------------------------------------------
#: (override, words its one-line refusal must hold: the key, the value, where to set it instead)
UNREAD = [
    # the links are the hosts': network.bandwidth_gbit_s=1 ran the 10 GbE evacuation (409.8 s)
    (
        "network.bandwidth_gbit_s=1",
        ["network.bandwidth_gbit_s=1", "evacuation.source.link_gbit_s", "evacuation=gigabit"],
    ),
    ("network=1gbe", ["network=1gbe", "evacuation.destinations[i].link_gbit_s", "network.KEY=VALUE"]),
    # every VM of evacuation.vms sets its own memory, rate and working set
    ("vm.memory_gib=64", ["vm.memory_gib=64", "evacuation.vms", "memory_gib: 64"]),
    ("vm=large", ["vm=large", "evacuation.vms[i].memory_gib", "vm.KEY=VALUE"]),
    (
        "workload.dirty_rate_pages_s=99999",
        ["workload.dirty_rate_pages_s=99999", "evacuation.vms", "dirty_rate_pages_s: 99999"],
    ),
    ("workload.wss_mib=100", ["workload.wss_mib=100", "evacuation.vms", "wss_mib: 100"]),
]


@pytest.fixture
def nothing_runs(monkeypatch, tmp_path):
    """Fail the test if an evacuation is simulated; the results directory the test may not write."""
    import lmtoolkit.tasks.evacuation as task

    def simulated(*a, **k):
        raise AssertionError("an evacuation was simulated")

    monkeypatch.setattr(task, "point", simulated)
    out = tmp_path / "results"
    monkeypatch.setenv("LMT_RESULTS_DIR", str(out))
    return out


@pytest.mark.parametrize("override, words", UNREAD, ids=[o for o, _ in UNREAD])
def test_a_key_an_evacuation_does_not_read_is_refused_before_any_work(override, words, nothing_runs, capsys):
    """lmtk evacuate and lmtk sweep of an evacuation experiment (the same task) refuse it alike:
    one line naming the key, the value and where to set it instead, exit 2, nothing written."""
    errs = []
    for argv in (["evacuate", override], ["sweep", "experiment=evacuation_order", override]):
        errs.append(cli_error(argv, capsys, words))
    assert errs[0] == errs[1]
    assert not nothing_runs.exists() or not any(nothing_runs.rglob("*"))


def test_a_sweep_axis_an_evacuation_does_not_read_is_refused(nothing_runs, capsys):
    for axis, words in (
        ("+sweep.axes.mem={key: vm.memory_gib, values: [1, 2]}", ["sweep.axes.mem", "vm.memory_gib"]),
        ("sweep.axes.links={key: network, values: [1gbe, 10gbe]}", ["sweep.axes.links", "network=1gbe"]),
    ):
        assert main(["sweep", "experiment=evacuation_order", axis]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not nothing_runs.exists() or not any(nothing_runs.rglob("*"))


def test_the_network_keys_an_evacuation_reads_change_it():
    base = lmt.evacuate(SMALL)
    for override in ("network.efficiency=0.5", "network.background_gbit_s=5", "network.latency_ms=40"):
        other = lmt.evacuate(SMALL + [override])
        assert float(other.makespan) > float(base.makespan), override
    # the links themselves: 1 GbE hosts take longer
    assert float(lmt.evacuate(SMALL + ["evacuation=gigabit"]).makespan) > 5 * float(base.makespan)


def test_background_traffic_is_checked_against_the_hosts_links():
    """Links faster than the network's default line rate carry background traffic above it
    (it was refused against network.bandwidth_gbit_s, which an evacuation does not read)."""
    links = [
        "evacuation.source={name: s, link_gbit_s: 40}",
        "evacuation.destinations=[{name: d1, link_gbit_s: 40, free_gib: 64}, {name: d2, link_gbit_s: 40, free_gib: 64}]",
    ]
    quiet = lmt.evacuate(SMALL + links)
    busy = lmt.evacuate(SMALL + links + ["network.background_gbit_s=15"])
    assert float(busy.makespan) > float(quiet.makespan)
    with pytest.raises(ConfigError) as e:
        lmt.evacuate(SMALL + links + ["network.background_gbit_s=40"])
    assert e.value.key == "evacuation.source.link_gbit_s"


def test_a_vm_key_is_read_for_the_vms_that_leave_it_out():
    """vm.memory_gib and workload.dirty_rate_pages_s are each VM's unless its entry sets them."""
    vms = "evacuation.vms=[{name: a, count: 2}, {name: b, memory_gib: 1, dirty_rate_pages_s: 100}]"
    small = lmt.evacuate([vms, "vm.memory_gib=1", "workload.dirty_rate_pages_s=1000"])
    big = lmt.evacuate([vms, "vm.memory_gib=3", "workload.dirty_rate_pages_s=1000"])
    hot = lmt.evacuate([vms, "vm.memory_gib=1", "workload.dirty_rate_pages_s=20000"])
    assert float(big.memory.sel(vm="a-1")) == 3 * 2**30 and float(big.memory.sel(vm="b")) == 2**30
    assert float(big.makespan) > float(small.makespan)
    assert float(hot.dirty_rate.sel(vm="a-1")) == 20000 and float(hot.dirty_rate.sel(vm="b")) == 100
    assert float(hot.transferred.sel(vm="a-1")) > float(small.transferred.sel(vm="a-1"))


def test_vms_that_do_not_fit_in_all_say_so(nothing_runs, capsys):
    """80 GiB free for the default host's 160 GiB of VMs said 'evacuation.vms[2].memory_gib=8.0 …
    (0 GiB left on h1)'; the per-VM message is for VMs the placement leaves without room."""
    dests = "evacuation.destinations=[{name: h1, link_gbit_s: 10, free_gib: 40},{name: h2, link_gbit_s: 10, free_gib: 40}]"
    for argv in (["evacuate", dests], ["sweep", "experiment=evacuation_order", dests]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "need 160 GiB" in err and "80 GiB free in all" in err and "h1 40, h2 40" in err, err
        assert "memory_gib=8" not in err, err
    # 20 GiB free for 20 GiB of VMs, but worst fit leaves 2 + 2 GiB for the last 4 GiB VM
    with pytest.raises(ConfigError) as e:
        lmt.evacuate(
            [
                "evacuation.destinations=[{name: h1, link_gbit_s: 10, free_gib: 10},{name: h2, link_gbit_s: 10, free_gib: 10}]",
                "evacuation.vms=[{name: a, memory_gib: 8, count: 2}, {name: b, memory_gib: 4}]",
            ]
        )
    assert e.value.key == "evacuation.vms[1].memory_gib"
    assert "20 GiB free in all for 20 GiB" in str(e.value) and "largest_first" in str(e.value)
    assert "at most 2 GiB" in str(e.value)
    assert not nothing_runs.exists() or not any(nothing_runs.rglob("*"))


def test_debug_shrinks_an_evacuation_and_records_only_what_ran(tmp_path):
    """debug=default ran the evacuation_order experiment at full size (db VMs 32 GiB, 231 GiB
    sent over 1 GbE, makespan 2,110 s) while lmt_config said vm.memory_gib: 1.0, a key no VM
    read.  Now every VM is scaled so that the largest is 1 GiB (db 1, app 0.25, web 0.125,
    idle 0.0625 GiB: 5 GiB in all), and the recorded config names the scaling and leaves out
    the top-level keys every VM replaces."""
    import yaml

    ov = ["experiment=evacuation_order", "debug=default", "sweep.axes.order.values=[given]"]
    ds = lmt.sweep(ov + [f"paths.results_dir={tmp_path}"])
    gib = ds.memory.isel(order=0, links=0, replicate=0) / 2**30
    size = {n.split("-")[0]: float(g) for n, g in zip(ds.vm.values, gib.values)}
    assert size == {"db": 1.0, "app": 0.25, "web": 0.125, "idle": 0.0625}
    assert float(gib.sum()) == pytest.approx(5.0)
    assert bool(ds.completed.all())
    assert float(ds.makespan.sel(links="gigabit").max()) < 100  # full size: 2,110 s
    assert float(ds.total_transferred.max()) / 2**30 < 10  # full size: 231 GiB
    cfg = yaml.safe_load(ds.attrs["lmt_config"])
    assert cfg["evacuation"]["shrink_to_gib"] == 1.0
    assert "memory_gib" not in cfg["vm"] and "page_size_kib" in cfg["vm"]
    assert "dirty_rate_pages_s" not in cfg["workload"] and "wss_mib" not in cfg["workload"]
    assert "bandwidth_gbit_s" not in cfg["network"] and "latency_ms" in cfg["network"]


def test_shrink_to_gib_scales_sizes_and_keeps_what_vms_take_from_the_top_level():
    """evacuation.shrink_to_gib: one factor over every VM's memory and working set (the VMs that
    take vm.memory_gib too, whose key is then read and recorded); no effect on VMs already
    smaller; a bad value is one error naming the key; a migration refuses it."""
    vms = "evacuation.vms=[{name: a, memory_gib: 4, wss_mib: 1024}, {name: b}]"
    ds = lmt.evacuate([vms, "vm.memory_gib=2", "evacuation.shrink_to_gib=1"])
    assert ds.memory.values.tolist() == [2**30, 2**29]
    assert "memory_gib" in ds.attrs["lmt_config"]  # read by b
    same = lmt.evacuate([vms, "vm.memory_gib=2"])
    assert lmt.evacuate([vms, "vm.memory_gib=2", "evacuation.shrink_to_gib=8"]).makespan == same.makespan
    for bad, words in ((0, r"must be in \(0"), ("abc", "must be a number")):
        with pytest.raises(ConfigError, match=words) as e:
            lmt.evacuate([vms, f"evacuation.shrink_to_gib={bad}"])
        assert e.value.key == "evacuation.shrink_to_gib"
    with pytest.raises(ConfigError, match="read by host evacuations only"):
        lmt.compose(["evacuation.shrink_to_gib=1"])
    assert "evacuation" not in lmt.compose(["debug=default"])  # debug's section: evacuations only


def test_the_readmes_vmware_evacuation_figures_are_what_it_gives():
    """README *Migration energy*: ``lmtk evacuate policy=vmware`` prints makespan, GiB sent and
    energy, and says how much of it is the three hosts' idle power.  It said 175.7 s, 191.08
    GiB, 66.2 kJ where the run gives 175.5 s, 190.92 GiB, 66.1 kJ."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = re.search(
        r"lmtk evacuate policy=vmware +# \.\.\. makespan ([0-9.]+) s, ([0-9.]+) GiB sent, energy ([0-9.]+) kJ",
        text,
    )
    idle = re.search(r"`policy=vmware` on `evacuation=default` ([0-9.]+) of the ([0-9.]+) kJ", text)
    assert line and idle, "the README's evacuation energy figures"
    ds = lmt.evacuate(["policy=vmware"])
    makespan, energy_kj = float(ds.makespan.values.ravel()[0]), float(ds.energy_total.values.ravel()[0]) / 1e3
    assert f"{makespan:.1f}" == line.group(1)
    assert f"{float(ds.transferred.sum()) / 2**30:.2f}" == line.group(2)
    assert f"{energy_kj:.1f}" == line.group(3) == idle.group(2)
    # evacuation=default: the source and two destinations, each idle_w = 100 W (power=default)
    assert f"{3 * 100.0 * makespan / 1e3:.1f}" == idle.group(1)
