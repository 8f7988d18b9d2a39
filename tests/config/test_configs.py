"""Every config option and every experiment composes, builds, and plans (no simulation)."""

from __future__ import annotations

import re

import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.paths import config_dir, group_options
from lmtoolkit.runner import build_scenario, compose

CONFIGS = config_dir()
BUILT_GROUPS = ("vm", "workload", "network", "host", "policy")
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def _options(group):
    return [(group, o) for o in group_options(group)]


@pytest.mark.parametrize("group,option", [go for g in BUILT_GROUPS for go in _options(g)])
def test_every_group_option_composes_and_builds(group, option, monkeypatch):
    if (group, option) == ("policy", "custom"):
        monkeypatch.syspath_prepend(str(CONFIGS.parent / "examples"))
    cfg = compose([f"{group}={option}"])
    build_scenario(cfg)


@pytest.mark.parametrize("group", ["sweep", "hydra", "paths", "debug"])
def test_support_groups_compose(group):
    opts = group_options(group)
    assert opts, f"configs/{group}/ has no options"
    for o in opts:
        compose([f"{group}={o}"])


def test_presets_cover_the_documented_range():
    assert {"small", "default", "medium", "large", "huge"} <= set(group_options("vm"))
    sizes = [compose([f"vm={o}"]).vm.memory_gib for o in ("small", "huge")]
    assert sizes == [1.0, 512.0]
    assert {"1gbe", "10gbe", "25gbe", "40gbe", "100gbe_rdma", "wan"} <= set(group_options("network"))
    wan = compose(["network=wan"]).network
    assert wan.latency_ms == 40.0
    # README: "window-limited stream" — a 4 MiB window, and no sender cap below the window's rate
    assert wan.tcp_window_mib == 4.0 and wan.stream_gbit_s * 1e9 * wan.efficiency / 8 > 4 * 2**20 / 0.080
    assert {"idle", "web_server", "database", "hpc", "memory_intensive"} <= set(group_options("workload"))


def test_local_yaml_is_gitignored():
    gi = (CONFIGS.parent / ".gitignore").read_text()
    assert "configs/local/*.yaml" in gi


def test_default_config_runs_no_experiment():
    cfg = compose([])
    assert dict(cfg.sweep.axes) == {} and cfg.sweep.executor == "inline"


def test_experiments_exist():
    need = {
        "quickstart",
        "bandwidth_vs_dirty_rate",
        "vmware_vs_hyperv",
        "downtime_target",
        "auto_converge",
        "postcopy_vs_precopy",
        "memory_scaling",
    }
    assert need <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_format(name):
    text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
    assert text.splitlines()[0].strip() == "# @package _global_"
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    # (evacuation experiments run with `lmtk evacuate`, issue 7)
    assert any(re.search(rf"lmtk (sweep|evacuate) experiment={name}\b", ln) for ln in header), (
        "header comment must show the command that runs it"
    )
    cfg = compose([f"experiment={name}"])
    assert cfg.title and "single live migration" not in cfg.title
    axes = cfg.sweep.axes
    assert len(axes) >= 1
    for dim, spec in axes.items():
        assert set(spec) <= {"key", "values", "long_name"} and "key" in spec, dim
    assert isinstance(cfg.sweep.replicates, int) and cfg.sweep.replicates >= 1


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_plans_under_debug(name):
    import numpy as np

    from lmtoolkit.sweep import make_plan

    dbg = make_plan([f"experiment={name}", "debug=default"])
    full_axes = compose([f"experiment={name}"]).sweep.axes
    assert [a.dim for a in dbg.axes] == list(full_axes)
    assert dbg.dims == [*(a.dim for a in dbg.axes), "replicate"]
    assert dbg.n_points == len(dbg.seeds) == int(np.prod(dbg.shape))
    assert dbg.n_points <= 16 and dbg.replicates == 1
    assert all(len(a.values) <= 2 for a in dbg.axes)
    assert dbg.out_path.parent.parent.name == "debug"  # debug runs never overwrite real results
    assert dbg.out_path.name == f"{name}.nc"


def test_large_fluid_axes_are_vectorised():
    from lmtoolkit.sweep import make_plan

    p = make_plan(["experiment=bandwidth_vs_dirty_rate"])
    assert all(a.column for a in p.axes) and len(p.cells) == 1
    p = make_plan(["experiment=memory_scaling"])
    assert {a.dim: a.column for a in p.axes} == {"memory": True, "policy": False, "network": False}
    assert len(p.cells) == 4  # one batch per group swap combination


def test_seeds_are_deterministic_and_distinct():
    from lmtoolkit.sweep import make_plan

    a = make_plan(["experiment=quickstart"])
    b = make_plan(["experiment=quickstart", "sweep.executor=processes", "sweep.chunk_size=1"])
    assert (a.seeds == b.seeds).all() and len(set(a.seeds.tolist())) == a.n_points
    assert a.config_hash == b.config_hash  # run-time settings do not change the hash
    c = make_plan(["experiment=quickstart", "seed=1"])
    assert not (a.seeds == c.seeds).any() and c.config_hash != a.config_hash
    crn = make_plan(["experiment=quickstart", "sweep.common_random_numbers=true"])
    s = crn.seeds.reshape(crn.shape)
    assert (s == s[:1, :1, :1, :]).all() and len(set(s[0, 0, 0].tolist())) == crn.replicates


def test_generated_axis_values():
    from lmtoolkit.sweep import make_plan

    p = make_plan(["experiment=fluid_map_100k"])
    rate = [a for a in p.axes if a.dim == "dirty_rate"][0]
    assert len(rate.values) == 10000 and rate.values[0] == pytest.approx(1000)
    assert rate.values[-1] == pytest.approx(2e6) and p.n_points == 100000 and p.round_detail == 0


# ---- bad input: one clear line ------------------------------------------------------------
def test_unknown_experiment_lists_available():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError) as e:
        make_plan(["experiment=quickstrt"])
    msg = str(e.value)
    assert "quickstrt" in msg and "did you mean quickstart" in msg and "memory_scaling" in msg
    assert "\n" not in msg


def test_axis_with_missing_key_suggests_close_ones():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError) as e:
        make_plan(["experiment=quickstart", "sweep.axes.dirty_rate.key=workload.dirty_rate_page_s"])
    msg = str(e.value)
    assert "sweep.axes.dirty_rate" in msg and "workload.dirty_rate_page_s" in msg
    assert "did you mean workload.dirty_rate_pages_s" in msg and "\n" not in msg


def test_axis_with_unknown_group_option():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError, match=r"unknown policy 'vmwre'; did you mean vmware"):
        make_plan(["experiment=quickstart", "sweep.axes.policy.values=[vmwre,hyperv]"])


def test_axis_key_missing_in_one_group_option():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError, match=r"policy.downtime_limit_ms' does not exist with policy=postcopy"):
        make_plan(
            [
                "experiment=postcopy_vs_precopy",
                "+sweep.axes.limit={key: policy.downtime_limit_ms, values: [100, 300]}",
            ]
        )


def test_bad_axis_value_names_the_point():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError, match=r"vm.zero_fraction"):
        make_plan(["experiment=quickstart", "+sweep.axes.zero={key: vm.zero_fraction, values: [0.5, 2]}"])


def test_no_experiment():
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError, match="no experiment given.*quickstart"):
        make_plan([])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["sweep", "experiment=nope"], "unknown experiment 'nope'"),
        (
            ["sweep", "experiment=quickstart", "sweep.axes.network.key=netwrk.bandwidth_gbit_s"],
            "did you mean network.bandwidth_gbit_s",
        ),
        (["sweep", "experiment=quickstart", "sweep.executor=mpi"], "sweep.executor"),
        (["sweep", "-m", "experiment=quickstart,nope"], None),
        (["collect", "/nonexistent/dir"], "no such directory"),
    ],
)
def test_cli_bad_input_one_line_exit_2(argv, needle, capsys):
    from lmtoolkit.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmtk: error: ") and "\n" not in err
    if needle:
        assert needle in err


def test_the_checked_sweep_and_paths_keys_are_their_files_keys():
    """compose.FIXED_KEYS (what +sweep.X / +paths.X is checked against) lists exactly the keys
    of configs/sweep/default.yaml and configs/paths/default.yaml (plus the sweep's name)."""
    import yaml

    from lmtoolkit.compose import FIXED_KEYS
    from lmtoolkit.paths import config_dir

    for group, extra in (("sweep", {"name"}), ("paths", set())):
        keys = set(yaml.safe_load((config_dir() / group / "default.yaml").read_text()))
        assert set(FIXED_KEYS[group]) == keys | extra, group


def test_a_sweep_without_an_experiment_title_is_not_titled_as_one_migration(tmp_path):
    """An evacuation without an experiment carried the root config's 'single live migration'."""
    import yaml

    import lmtoolkit as lmt
    from lmtoolkit.sweep.run import ROOT_TITLE

    assert yaml.safe_load((CONFIGS / "config.yaml").read_text())["title"] == ROOT_TITLE
    ds = lmt.evacuate([f"paths.results_dir={tmp_path}"])
    assert ds.attrs["title"] == "lmtoolkit host evacuation"
