"""Sweeps swap config groups without a new Hydra composition where that is exact: checked
against Hydra itself for every option of every group and every experiment."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lmtoolkit.compose import compose_raw
from lmtoolkit.paths import config_dir, group_options
from lmtoolkit.sweep.swap import group_is_untouched, swap_group

GROUPS = ("vm", "workload", "network", "host", "policy", "storage", "evacuation")
OPTIONS = [(g, o) for g in GROUPS for o in group_options(g) if (g, o) != ("policy", "custom")]
EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("group, option", OPTIONS)
def test_swap_equals_hydra(group, option):
    base = compose_raw(["+evacuation=default"] if group == "evacuation" else [])
    fast = swap_group(base, group, option)
    assert fast is not None
    ref = compose_raw([f"+evacuation={option}"] if group == "evacuation" else [f"{group}={option}"])
    assert OmegaConf.to_container(fast, resolve=True) == OmegaConf.to_container(ref, resolve=True)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_cells_equal_hydra_cells(name, monkeypatch):
    from lmtoolkit.sweep import make_plan
    from lmtoolkit.sweep import plan as plan_mod

    # debug=default (both ends of every axis) keeps it quick; the plain quickstart as well
    for extra in (["debug=default"], []) if name == "quickstart" else (["debug=default"],):
        ov = [f"experiment={name}", *extra]
        fast = make_plan(ov)
        with monkeypatch.context() as m:
            m.setattr(plan_mod, "group_is_untouched", lambda g, o: False)
            slow = make_plan(ov)
        assert fast.cells == slow.cells and fast.config_hash == slow.config_hash


def test_a_group_set_elsewhere_is_not_swapped_in_place():
    assert group_is_untouched("policy", ["experiment=quickstart"])
    assert not group_is_untouched("policy", ["experiment=quickstart", "policy.timeout_s=5"])
    assert not group_is_untouched(
        "policy", ["experiment=quickstart", "debug=default"]
    )  # debug sets policy.timeout_s


def test_a_group_option_an_experiment_overrides_is_refused():
    """``experiment=auto_converge vm=large`` ran a 4 GiB VM (the experiment's ``vm.memory_gib``,
    merged after the option), as did a ``vm`` axis over it (small and large both 4 GiB, under
    their names): refused, naming the key and the file; a key given as well is the user's, and
    ``debug=default`` shrinks any run on purpose."""
    from lmtoolkit.compose import compose
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.sweep import make_plan

    with pytest.raises(ConfigError) as e:
        compose(["experiment=auto_converge", "vm=large"])
    assert e.value.key == "vm" and "vm.memory_gib=4.0" in str(e.value) and "auto_converge" in str(e.value)
    assert compose(["experiment=auto_converge", "vm=large", "vm.memory_gib=64"]).vm.memory_gib == 64
    assert compose(["experiment=vmware_vs_hyperv", "host=large"]).vm.memory_gib == 4.0  # another group
    assert compose(["vm=large", "debug=default"]).vm.memory_gib == 1.0
    with pytest.raises(ConfigError) as e:
        make_plan(["experiment=auto_converge", "+sweep.axes.size={key: vm, values: [small, large]}"])
    assert "sweep.axes.size: vm=small" in str(e.value)
