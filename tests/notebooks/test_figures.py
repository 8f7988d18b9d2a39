"""Figure functions on small synthetic Datasets: axes with labels and units; the registry;
sidecars; the one palette."""

from __future__ import annotations

import re

import matplotlib
import pytest
import yaml

matplotlib.use("Agg")

from lmtoolkit.plotting import figures as F  # noqa: E402
from lmtoolkit.plotting import style  # noqa: E402
from lmtoolkit.plotting.make import save_figure  # noqa: E402
from lmtoolkit.plotting.registry import FIGURES, get  # noqa: E402
from tests.notebooks.synthetic import EXPERIMENTS, evacuation_like, experiment_like  # noqa: E402

UNIT = re.compile(r"\((s|ms|GiB|MiB|pages/s|Gbit/s|%|count|pages|index|1)\)")


def _plot_axes(fig):
    """Axes that plot data (not colour bars: those carry the unit as their only label)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("fig_id", list(FIGURES))
def test_every_registered_figure_draws_labelled_axes_from_a_dataset(fig_id):
    import matplotlib.pyplot as plt

    spec = FIGURES[fig_id]
    from lmtoolkit.sweep import make_plan

    task = make_plan([f"experiment={spec.experiment}"], expand=False).task
    ds = evacuation_like() if task == "evacuation" else experiment_like(**EXPERIMENTS[spec.experiment])
    fig = spec.function(ds)
    axes = _plot_axes(fig)
    assert axes
    for ax in axes:
        assert UNIT.search(ax.get_ylabel()), (fig_id, ax.get_ylabel())
        assert ax.get_xlabel()
        assert ax.has_data()
    plt.close(fig)


def test_registry_ids_files_and_lookup():
    for i, (fid, spec) in enumerate(FIGURES.items(), 1):
        assert fid == f"fig{i:02d}" and spec.stem == f"{fid}_{spec.slug}"
        assert spec.caption and spec.notebook.startswith("2")
    assert get("1") is get("fig01") is get("quickstart")
    from lmtoolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="fig01"):
        get("fig99")


def test_save_writes_png_pdf_and_a_sidecar(tmp_path):
    spec = FIGURES["fig01"]
    ds = experiment_like(**EXPERIMENTS["quickstart"])
    entry = {"experiment": "quickstart", "config_hash": ds.attrs["lmt_config_hash"]}
    side = save_figure(spec.function(ds), spec, [entry], tmp_path, "lmtk figures fig01")
    for ext in ("png", "pdf"):
        assert (tmp_path / f"fig01_quickstart.{ext}").stat().st_size > 1000
    doc = yaml.safe_load((tmp_path / "fig01_quickstart.yaml").read_text())
    assert doc == side
    assert doc["caption"] == spec.caption and doc["command"] == "lmtk figures fig01"
    assert doc["datasets"][0]["config_hash"] == "0123456789abcdef" and doc["git_commit"]


def test_teaching_and_validation_figures_label_their_axes():
    import numpy as np
    import xarray as xr

    ds = experiment_like(policy=["qemu", "xen"])
    cases = ds.isel(replicate=0).rename(policy="case")
    fig = F.compare_bars(cases, ["total_time", "downtime", "transferred"])
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "total migration time (s)",
        "downtime (ms)",
        "data sent (GiB)",
    ]
    # a case that did not complete: its downtime bar, where it has one (a pause abandoned at
    # the timeout), says "abandoned"; with none (NaN), "did not complete"
    cases["completed"][:] = [False, False]
    cases["downtime"][:] = [30.0, np.nan]
    notes = [t.get_text() for t in F.compare_bars(cases, ["downtime"]).axes[0].texts]
    assert notes == ["abandoned", "did not\ncomplete"]
    bitmap = xr.DataArray(
        np.random.default_rng(0).uniform(size=(3, 8)),
        dims=("round", "address"),
        coords={"round": [0, 1, 2], "address": ("address", np.arange(8) * 128.0, {"units": "MiB"})},
    )
    fig = F.dirty_bitmap(bitmap)
    assert "MiB" in fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel() == "round (index)"


def test_one_palette_for_policies():
    assert style.policy_color("vmware") != style.policy_color("hyperv")
    assert style.policy_color("hyperv_2012r2") == style.policy_color("hyperv")
    assert style.policy_color("vmware_future") == style.policy_color("vmware")  # family fallback
    assert set(style.policy_palette(["qemu", "xen"])) == {"qemu", "xen"}


@pytest.mark.integration
def test_lmtk_figures_runs_the_experiment_on_every_core_and_writes_the_figure(tmp_path):
    """`lmtk figures` runs its experiments with the processes executor (a run-time key) and
    writes the figure with its sidecar; the Dataset is the same as an inline run's."""
    import os
    import subprocess

    import xarray as xr

    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path))
    p = subprocess.run(
        ["lmtk", "figures", "fig02", "debug=default"], env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    out = tmp_path / "debug" / "figures"
    stem = FIGURES["fig02"].stem
    for ext in ("png", "pdf", "yaml"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    nc = next((tmp_path / "debug").rglob("bandwidth_vs_dirty_rate.nc"))
    prov = yaml.safe_load((nc.parent / "provenance.yaml").read_text())
    assert prov["run"]["executor"] == ("processes" if (os.cpu_count() or 1) > 1 else "inline")
    from lmtoolkit.sweep import run as sweep_run

    inline, _ = sweep_run(
        ["experiment=bandwidth_vs_dirty_rate", "debug=default", f"paths.results_dir={tmp_path / 'inline'}"]
    )
    with xr.open_dataset(nc) as ds:
        xr.testing.assert_allclose(ds.total_time.load(), inline.total_time)


def test_a_narrow_dirty_page_axis_still_has_labelled_ticks():
    """Issue 15: a log axis with a single tick label reads as broken; the explorer's
    dirty-pages panel labels 1-2-5 steps when its data span under ~1.5 decades (here a
    migration on a half-shared 1 GbE link that times out: 520k down to 110k pages)."""
    import lmtoolkit as lmt

    ds = lmt.simulate(
        [
            "policy=qemu",
            "policy.timeout_s=120",
            "workload=uniform",
            "workload.dirty_rate_pages_s=15000",
            "vm.memory_gib=2",
            "network=1gbe",
            "network.background_gbit_s=0.5",
            "engine=fluid",
        ]
    )
    fig = F.precopy_rounds(ds)
    fig.canvas.draw()
    ax = fig.axes[1]
    lo, hi = ax.get_ylim()
    assert hi / lo < 30
    labels = [
        t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks()) if t.get_text() and lo <= v <= hi
    ]
    assert len(labels) >= 2, labels


@pytest.mark.integration
def test_a_figure_names_the_file_it_read_and_a_variant_never_replaces_the_canonical_one(capsys):
    """The sidecar names the file the sweep actually read or wrote, with its config hash (a
    freshly computed Dataset was recorded as the canonical ``quickstart.nc`` — another config's
    file — for a variant, and as a ``.nc`` for a zarr result); a variant's figure goes beside
    the variant and the canonical figure is left as it was (it was overwritten)."""
    import os
    from pathlib import Path

    from lmtoolkit.cli import main

    root = Path(os.environ["LMT_RESULTS_DIR"]) / "debug"
    stem = FIGURES["fig01"].stem

    def sidecar(d: Path) -> dict:
        return yaml.safe_load((d / f"{stem}.yaml").read_text())

    def recorded_hash(data: Path) -> str:
        return yaml.safe_load((data.parent / "provenance.yaml").read_text())["config_hash"]

    assert main(["figures", "fig01", "debug=default", "sweep.executor=inline"]) == 0
    canonical = root / "figures"
    nc = root / "quickstart" / "quickstart.nc"
    entry = sidecar(canonical)["datasets"][0]
    assert entry["path"] == str(nc) and entry["config_hash"] == recorded_hash(nc)
    before = {ext: (canonical / f"{stem}.{ext}").read_bytes() for ext in ("png", "yaml")}
    capsys.readouterr()

    assert main(["figures", "fig01", "debug=default", "sweep.executor=inline", "seed=7"]) == 0
    out = capsys.readouterr().out
    variants = list((root / "quickstart" / "variants").iterdir())
    assert len(variants) == 1
    data = variants[0] / "quickstart.nc"
    entry = sidecar(variants[0] / "figures")["datasets"][0]
    assert entry["path"] == str(data) and entry["variant"] == variants[0].name
    assert entry["config_hash"] == recorded_hash(data) != recorded_hash(nc)
    assert f"wrote {variants[0] / 'figures' / stem}.png" in out and "kept apart from the canonical" in out
    assert {ext: (canonical / f"{stem}.{ext}").read_bytes() for ext in ("png", "yaml")} == before

    assert main(["figures", "fig01", "debug=default", "sweep.executor=inline", "sweep.format=zarr"]) == 0
    zarr = root / "quickstart" / "quickstart.zarr"
    entry = sidecar(canonical)["datasets"][0]
    assert entry["path"] == str(zarr) and entry["config_hash"] == recorded_hash(zarr)
    # the README's thumbnails: from canonical results only
    assert main(["figures", "fig01", "debug=default", "seed=7", "--thumbnails", str(root / "thumbs")]) == 2
    assert "--thumbnails redraws the README's thumbnails" in capsys.readouterr().err
    assert not list((root / "thumbs").glob("*.png"))
