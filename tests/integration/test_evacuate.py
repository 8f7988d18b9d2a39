"""Issue 7: concurrent migrations sharing links (max-min fairness) and host evacuation."""

from __future__ import annotations

import numpy as np
import pytest

import lmtoolkit as lmt
from lmtoolkit.cli import main
from lmtoolkit.concurrency import Planned, max_min_rates, simulate_concurrent
from lmtoolkit.errors import ConfigError

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
