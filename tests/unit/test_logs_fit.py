"""The fit (fluid engine against a log's per-round trajectory), the FIT file as a Hydra config,
what-ifs with bands and the figure (issue 13).  One real testbed run is fitted once per
module (fluid engine, a small bootstrap: a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.compose import compose
from lmtoolkit.errors import ConfigError
from lmtoolkit.logs import validate as LV
from lmtoolkit.logs.fit import fit_log
from lmtoolkit.logs.fitfile import read_fit, run_command, write_fit
from lmtoolkit.logs.whatif import fit_variant, split_axes, whatif

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "data" / "testbed"
RUN = "r10000-h064-rand-bw064-dl0300-n0"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    res = fit_log(TESTBED / f"{RUN}.nc", bootstrap=60)
    path = tmp_path_factory.mktemp("fits") / "fit" / f"{RUN}.yaml"
    write_fit(res, path)
    return res, path


def test_fit_recovers_the_guests_workload_from_its_log_alone(fitted):
    res, _ = fitted
    guest = json.loads(res.log.attrs["lmt_guest"])
    rate = res.values["workload.dirty_rate_pages_s"]
    assert rate == pytest.approx(guest["dirty_rate_measured"], rel=0.10)
    assert res.values["workload.wss_mib"] == pytest.approx(guest["hot_mib"], rel=0.15)
    assert res.pattern == "random"
    q = res.quality
    assert abs(q["total_time_rel"]) < 0.03 and abs(q["transferred_rel"]) < 0.03
    assert abs(q["syncs_sim"] - q["syncs_obs"]) <= 1 and q["converged_sim"] == q["converged_obs"]
    assert res.elapsed_s < 20
    # uncertainty: a spread per parameter, the fitted value inside its 16-84 % band (or near)
    sd, iv = res.stderr(), res.interval()
    assert 0 < sd["workload.dirty_rate_pages_s"] < 0.2 * rate
    lo, hi = iv["workload.dirty_rate_pages_s"]
    assert lo - 2 * sd["workload.dirty_rate_pages_s"] <= rate <= hi + 2 * sd["workload.dirty_rate_pages_s"]
    # what the log states is used, not fitted
    assert res.derived["vm.zero_fraction"] == pytest.approx(0.4858, abs=1e-3)
    assert 1.0 < res.cap_factor < 1.03
    assert "fit quality" in res.summary() and "workload.dirty_rate_pages_s" in res.summary()


def test_fit_file_is_a_hydra_config_that_lmtk_run_composes(fitted):
    res, path = fitted
    text = path.read_text()
    assert text.startswith("# @package _global_")
    ff = read_fit(path)
    assert ff.defaults == [{"override /workload": "uniform"}, {"override /policy": "qemu"}]
    assert ff.config["workload"]["dirty_rate_pages_s"] == pytest.approx(
        res.values["workload.dirty_rate_pages_s"]
    )
    keys, samples = ff.samples()
    assert keys == [p.key for p in res.params] and samples.shape[0] == 60
    cmd = run_command(path)
    assert cmd.startswith(f"lmtk run hydra.searchpath=[file://{path.parent.parent}] +fit={path.stem}")
    cfg = compose([f"hydra.searchpath=[file://{path.parent.parent}]", f"+fit={path.stem}"])
    assert cfg.workload.name == "uniform" and cfg.engine == "fluid"
    assert cfg.workload.dirty_rate_pages_s == pytest.approx(res.values["workload.dirty_rate_pages_s"])
    assert cfg.policy.dirty_clear == "sync" and cfg.policy.timeout_s == 60
    assert cfg.policy.max_bandwidth_mib_s == pytest.approx(64 * res.cap_factor, rel=1e-5)
    from lmtoolkit.cli import main

    out = path.parent / "run.nc"
    assert (
        main(["run", f"hydra.searchpath=[file://{path.parent.parent}]", f"+fit={path.stem}", "-o", str(out)])
        == 0
    )
    assert out.exists()


def test_whatif_reproduces_the_observed_run_and_answers_other_settings(fitted):
    res, path = fitted
    ds = whatif(path, [])
    assert not ds.total_time.dims
    assert float(ds.total_time) == pytest.approx(float(ds.observed_total_time), rel=0.03)
    assert float(ds.total_time_lo) <= float(ds.total_time) <= float(ds.total_time_hi)
    assert float(ds.converged_share) == 1.0
    ax = whatif(path, ["policy.max_bandwidth_mib_s=32,128", "policy=qemu,hybrid"])
    assert ax.total_time.dims == ("max_bandwidth_mib_s", "policy")
    t = ax.total_time.sel(policy="qemu")
    assert float(t.sel(max_bandwidth_mib_s=128)) < float(t.sel(max_bandwidth_mib_s=32))
    assert not bool(ax.converged.sel(policy="qemu", max_bandwidth_mib_s=32))  # 32 MiB/s < writes
    assert str(ax.stop_reason.sel(policy="qemu", max_bandwidth_mib_s=32).item()) == "timeout"
    assert bool(ax.completed.sel(policy="hybrid", max_bandwidth_mib_s=32))  # post-copy ends it
    for v in ("total_time", "downtime", "transferred"):
        ok = np.isfinite(ax[v].values)
        assert (ax[f"{v}_lo"].values[ok] <= ax[v].values[ok] + 1e-9).all()
        assert (ax[f"{v}_hi"].values[ok] >= ax[v].values[ok] - 1e-9).all()
    for name in ("observed_sync_lo", "fitted_sync_time", "observed_remaining", "fitted_remaining"):
        assert name in ax and ax[name].size > 0
    assert "total_time" in ax and ax.total_time.attrs["units"] == "s"


def test_policy_swap_keeps_the_runs_settings_the_new_policy_has(fitted):
    _, path = fitted
    ff = read_fit(path)
    body = fit_variant(ff, {"policy": "hybrid"})
    pol = body["policy"]
    assert pol["max_bandwidth_mib_s"] == ff.config["policy"]["max_bandwidth_mib_s"]
    assert pol["dirty_clear"] == "sync" and pol["timeout_s"] == 60.0
    assert "iteration_ms" not in pol and "name" not in pol
    assert {"override /policy": "qemu"} not in body["defaults"]
    vm = fit_variant(ff, {"policy": "vmware"})["policy"]
    assert set(vm) == {"timeout_s", "stop_overhead_ms"}
    assert "network" not in fit_variant(ff, {"network": "1gbe"})


def test_cap_override_is_scaled_by_the_measured_cap_factor(fitted):
    res, path = fitted
    a = whatif(path, ["policy.max_bandwidth_mib_s=64"], samples=0)
    b = whatif(path, [], samples=0)
    assert float(a.total_time) == pytest.approx(float(b.total_time), rel=1e-4)  # the file keeps 6 digits
    assert float(a.attrs["lmt_cap_factor"]) == pytest.approx(res.cap_factor, rel=1e-4)


def test_axes_syntax_and_bad_whatif_input():
    plain, axes = split_axes(
        [
            "network=1gbe,10gbe",
            "policy.downtime_limit_ms=30,300",
            "+sweep.axes.x={key: a, values: [1,2]}",
            "vm.vcpus=2",
        ]
    )
    assert axes == {
        "network": ("network", ["1gbe", "10gbe"]),
        "downtime_limit_ms": ("policy.downtime_limit_ms", [30, 300]),
    }
    assert plain == ["+sweep.axes.x={key: a, values: [1,2]}", "vm.vcpus=2"]


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["policy=vmware", "policy.downtime_limit_ms=100"], ["policy.downtime_limit_ms", "vmware"]),
        (
            ["policy=qemu,vmware", "policy.max_bandwidth_mib_s=32,64"],
            ["max_bandwidth_mib_s", "policy=vmware"],
        ),
        (["workload.pattern=random,sequential"], ["workload.pattern", "cannot be varied"]),
        (["+fit=other"], ["fit"]),
        (["vm.zero_fraction=2"], ["vm.zero_fraction"]),
    ],
)
def test_bad_whatif_overrides_are_one_error(fitted, overrides, words):
    _, path = fitted
    with pytest.raises(ConfigError) as e:
        whatif(path, overrides)
    for w in words:
        assert w in str(e.value)


def test_damaged_fit_files_are_one_error_naming_them(tmp_path, fitted):
    _, path = fitted
    text = path.read_text()
    cases = {
        "missing.yaml": None,
        "empty.yaml": "",
        "noblock.yaml": "\n".join(ln for ln in text.splitlines() if not ln.startswith("#|")),
        "bad.yaml": text + "\n  : [\n",
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_text(content)
        with pytest.raises(ConfigError) as e:
            read_fit(p)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_the_figure_shows_trajectory_and_whatif_table(fitted):
    import matplotlib

    matplotlib.use("Agg")
    from lmtoolkit.logs.plot import fig_whatif, whatif_table

    _, path = fitted
    ds = whatif(path, ["network=1gbe,10gbe"], samples=10)
    fig = fig_whatif(ds)
    ax1, ax2 = fig.axes[:2]
    assert "MiB" in ax1.get_ylabel() and "[s]" in ax2.get_xlabel()
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["network=1gbe", "network=10gbe"][::-1] or len(
        ax2.get_yticklabels()
    ) == 2
    tab = whatif_table(ds)
    assert list(tab.index) == ["network=1gbe", "network=10gbe"] and "total_time [s]" in tab.columns


def test_fit_refuses_logs_it_cannot_use(tmp_path):
    qmp = ROOT / "tests" / "data" / "logs" / "qmp_r10000-h064-rand-bw064-dl0300-n0.jsonl"
    replies = [json.loads(ln) for ln in qmp.read_text().splitlines()]
    for r in replies:
        r.get("ram", {}).pop("dirty-sync-count", None)
    p = tmp_path / "nosync.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in replies))
    with pytest.raises(ConfigError, match="dirty-sync-count"):
        fit_log(p, bootstrap=0, engine="fluid")
    with pytest.raises(ConfigError, match="idle"):
        fit_log(qmp, ["workload=idle"], bootstrap=0, engine="fluid")
    with pytest.raises(ConfigError, match="--engine"):
        fit_log(qmp, engine="exact")


def test_validation_families_and_the_fit_run_rule():
    from lmtoolkit.testbed.record import load_runs

    runs = [
        r
        for pat in ("r10000-h064-rand-*", "r20000-h128-rand-*", "r10000-h032-seq-*")
        for f in sorted(TESTBED.glob(pat + ".nc"))
        for r in load_runs(f)
    ]
    fams = LV.families(runs)
    names = {LV._fam_label(k): [LV.label(r) for r in v] for k, v in fams.items()}
    assert set(names) == {"r10000-h064-rand", "r20000-h128-rand"}  # r10000-h032-seq: one setting
    assert len(names["r10000-h064-rand"]) == 4
    pick = {n: LV.label(LV.choose_fit_run(fams[k])) for k, n in ((k, LV._fam_label(k)) for k in fams)}
    assert pick["r10000-h064-rand"] == "r10000-h064-rand-bw064-dl0300-n0"
    assert pick["r20000-h128-rand"] == "r20000-h128-rand-bw032-dl0030-n0"  # the only plain one
    pc = next(r for r in runs if LV.label(r) == "r20000-h128-rand-bw032-dl0300-pc-n0")
    assert LV.run_overrides(pc, "qemu")[0] == "policy=hybrid"
    assert all(not o.startswith("policy=") for o in LV.run_overrides(pc, "hybrid"))
    from lmtoolkit.cli import build_parser
    from lmtoolkit.testbed.validate import DATASETS

    build_parser()  # lmtk's commands register `validate whatif`
    assert "whatif" in DATASETS
