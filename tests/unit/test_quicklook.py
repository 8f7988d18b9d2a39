"""The quick-look PNG of `lmtk sweep` draws every point (mean over replicates), or says in its
title and on the console which points it left out; it drew the first 12 combinations silently
(vmware_vs_hyperv: 12 of 40 bars and no Hyper-V bar under the title "VMware-like vs
Hyper-V-like"; energy_pareto: 12 of 70)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from lmtoolkit import sweep_cli  # noqa: E402
from tests.notebooks.synthetic import experiment_like  # noqa: E402

WORKLOADS = ["idle", "web_server", "database", "hpc", "memory_intensive"]


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """quicklook(ds) -> the figure it wrote (kept open) and the notes it logged."""
    import matplotlib.pyplot as plt

    figs, close = [], plt.close

    def keep(fig=None):
        figs.append(fig)

    monkeypatch.setattr(plt, "close", keep)

    def draw(ds, log=False):
        notes = []
        kwargs = {"log": notes.append} if log else {}  # (the first tests: the old signature too)
        assert sweep_cli.quicklook(ds, tmp_path / "q.png", **kwargs) == tmp_path / "q.png"
        assert (tmp_path / "q.png").stat().st_size > 10_000
        return figs[-1], notes

    yield draw
    for f in figs:
        close(f)


def _bars(ax) -> list[float]:
    return sorted(p.get_height() for p in ax.patches)


def _title(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle else ""


def _legend_labels(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


@pytest.mark.parametrize(
    "policies",
    [
        ["vmware", "vmware_vsphere7", "hyperv", "hyperv_2008r2"],  # vmware_vs_hyperv: 40 points
        ["qemu", "xen", "vmware", "hyperv", "postcopy", "hybrid", "stopcopy"],  # energy_pareto: 70
    ],
)
def test_categorical_sweeps_draw_a_bar_for_every_point(drawn, policies):
    ds = experiment_like(policy=policies, workload=WORKLOADS, network=["1gbe", "10gbe"])
    ds.attrs["title"] = "VMware-like vs Hyper-V-like"
    fig, _ = drawn(ds)
    mean = ds[["total_time", "downtime"]].mean("replicate")
    panels = [ax for ax in fig.axes if ax.patches]
    assert len(panels) == 2
    want = [sorted(mean.total_time.values.ravel()), sorted(mean.downtime.values.ravel() * 1e3)]
    for ax, values in zip(panels, want):
        assert len(ax.patches) == len(policies) * 10
        np.testing.assert_allclose(_bars(ax), values)
    assert set(policies) <= set(_legend_labels(fig))  # every policy named (no Hyper-V was)
    assert "showing" not in _title(fig) and sweep_cli.quicklook_layout(ds)["note"] is None


def test_more_than_twelve_lines_are_all_drawn_in_panels(drawn):
    ds = experiment_like(
        network=["1gbe", "10gbe"],
        background=[0.0, 0.25, 0.5, 0.75, 0.9],
        workload=["idle", "hpc"],
        dirty_rate=[5000, 20000, 60000],
    )
    fig, _ = drawn(ds)
    lines = [
        ln for ax in fig.axes for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_linestyle() != "None"
    ]
    assert len(lines) == 2 * 20  # 20 combinations, total time and downtime (rings: timeouts)
    got = sorted(float(y) for ln in lines for y in ln.get_ydata())
    mean = ds[["total_time", "downtime"]].mean("replicate")
    want = sorted([*mean.total_time.values.ravel(), *(mean.downtime.values.ravel() * 1e3)])
    np.testing.assert_allclose(got, want)
    assert sweep_cli.quicklook_layout(ds)["note"] is None


def test_a_capped_quicklook_says_what_it_left_out(drawn, monkeypatch):
    monkeypatch.setattr(sweep_cli, "QUICKLOOK_MAX_BARS", 16)
    ds = experiment_like(
        policy=["vmware", "hyperv", "xen", "qemu"], workload=WORKLOADS, network=["1gbe", "10gbe"]
    )
    fig, notes = drawn(ds, log=True)
    assert [len(ax.patches) for ax in fig.axes if ax.patches] == [16, 16]
    assert "showing 16 of 40 points" in _title(fig)
    assert "the first 4 of 10 groups of bars (workload × network)" in _title(fig)
    assert notes == [
        "the quick-look shows 16 of 40 points (the first 4 of 10 groups of bars (workload × network)); "
        "the Dataset has them all"
    ]


@pytest.mark.integration
def test_lmtk_sweep_prints_the_quicklook_note(monkeypatch, capsys):
    from lmtoolkit.cli import main

    monkeypatch.setattr(sweep_cli, "QUICKLOOK_MAX_BARS", 2)  # debug=default: 2 x 2 x 2 points
    assert main(["sweep", "experiment=energy_pareto", "debug=default", "-q"]) == 0
    out = capsys.readouterr().out
    assert "energy_pareto.png" in out
    assert "note: the quick-look shows 2 of 8 points (the first 1 of 4 groups of bars" in out


def test_timed_out_points_are_circled_not_drawn_as_migration_times(drawn):
    """A point where a replicate timed out has the timeout as its total time (a lower bound):
    shared_network's 1 GbE at 0.9 Gbit/s background drew two 600 s points as ordinary ones.
    Each such point is ringed (lines) or hatched (bars), and the title counts them."""
    from lmtoolkit.plotting.figures import lines

    ds = experiment_like(network=["1gbe", "10gbe"], background=[0.0, 0.5, 0.9], dirty_rate=[5000, 20000])
    ds["completed"][:] = True
    ds["completed"].loc[{"network": "1gbe", "background": 0.9}] = False  # 2 points, one replicate each
    ds["completed"][0, 0, 0, 0] = True
    fig, _ = drawn(ds)
    rings = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "None"]
    assert sum(len(r.get_xdata()) for r in rings) == 2 * 2  # both panels' 2 points (time, downtime)
    cut = ds.total_time.sel(network="1gbe", background=0.9).mean("replicate").values
    ringed = sorted(float(y) for r in rings for y in r.get_ydata())
    assert all(np.isclose(ringed, c).any() for c in cut)  # the total-time panel rings those points
    assert "2 points timed out" in _title(fig)
    bars = experiment_like(policy=["qemu", "xen"], network=["1gbe", "10gbe"])
    bars["completed"][:] = True
    bars["completed"].loc[{"policy": "xen", "network": "1gbe"}] = False
    fig, _ = drawn(bars)
    assert sum(p.get_hatch() == "xx" for ax in fig.axes for p in ax.patches) == 2  # time and downtime
    assert "1 point timed out" in _title(fig)

    def paper_rings(data):
        fig = lines(
            data, "background", ["total_time", "downtime"], hue="network", style_by="dirty_rate", title="t"
        )
        per_panel = [
            sum(
                len(ln.get_xdata())
                for ln in ax.get_lines()
                if ln.get_marker() == "o" and ln.get_mfc() == "none"
            )
            for ax in fig.axes[:2]
        ]
        return per_panel, fig._suptitle.get_text()

    # both panels: a downtime there is the pause of a switchover abandoned at the timeout
    rings, title = paper_rings(ds)
    assert rings == [2, 2] and "2 points timed out" in title and "downtime = the pause until it" in title
    # no pause (NaN downtime, timed out in pre-copy): nothing to ring in the downtime panel
    ds["downtime"].loc[{"network": "1gbe", "background": 0.9}] = np.nan
    assert paper_rings(ds)[0] == [2, 0]
