"""One source for policy defaults: the dataclass (issue 10).

A ``configs/policy/*.yaml`` file names its class (``name``, or ``_target_`` for a plug-in) and
states only the keys whose value differs from the class's default; every other key keeps the
default and can still be set as ``policy.KEY=value``.
"""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from lmtoolkit.paths import config_dir, group_options
from lmtoolkit.policies import POLICIES, policy_class, policy_fields
from lmtoolkit.runner import build_scenario, compose

POLICY_DIR = config_dir() / "policy"
OPTIONS = sorted(group_options("policy"))
SELECTORS = ("name", "_target_")


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(config_dir().parent / "examples"))  # policy=custom


def _load(option) -> dict:
    return OmegaConf.to_container(OmegaConf.load(POLICY_DIR / f"{option}.yaml"))


def _own_keys(option) -> dict:
    """The keys the file itself sets (not its defaults list, not the class selectors)."""
    return {k: v for k, v in _load(option).items() if k not in ("defaults", *SELECTORS)}


def _merged(option) -> dict:
    """The file merged over the files its defaults list names (as Hydra composes them, before
    the composed config is completed with the class defaults)."""
    raw = _load(option)
    out = {}
    for base in raw.get("defaults", []):
        if base != "_self_":
            out.update(_merged(base))
    out.update({k: v for k, v in raw.items() if k != "defaults"})
    return out


def test_every_option_is_covered():
    assert {
        "qemu",
        "xen",
        "vmware",
        "hyperv",
        "postcopy",
        "hybrid",
        "stopcopy",
        "custom",
        "vmware_vsphere5",
        "vmware_vsphere7",
        "hyperv_2008r2",
        "hyperv_2012r2",
    } <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_yaml_states_only_fields_that_differ_from_the_dataclass(option):
    merged = _merged(option)
    assert set(merged) & set(SELECTORS), f"{option}.yaml names no class (name or _target_)"
    fields = policy_fields(merged)
    for where, keys in (
        ("file", _own_keys(option)),
        ("with its defaults list", {k: v for k, v in merged.items() if k not in SELECTORS}),
    ):
        for key, value in keys.items():
            assert key in fields, (
                f"{option}.yaml ({where}): '{key}' is not a field of {policy_class(merged).__name__}"
            )
            assert value != fields[key], (
                f"{option}.yaml ({where}): {key}: {value!r} is the dataclass default; leave it out"
            )


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_selects_a_class_and_builds(option):
    cfg = compose([f"policy={option}"])
    pol = build_scenario(cfg).policy
    assert type(pol) is policy_class(_merged(option))
    # the composed config states every parameter the policy runs with
    for key, value in OmegaConf.to_container(cfg.policy).items():
        if key not in SELECTORS:
            assert getattr(pol, key) == value or getattr(pol, key) is not None and value is None, key


@pytest.mark.parametrize("option", [o for o in OPTIONS if o != "custom"])
def test_built_in_options_name_a_registered_policy(option):
    assert compose([f"policy={option}"]).policy.name in POLICIES


def test_the_defaults_users_had_are_kept():
    """Spot checks of the effective values once written in the YAML files."""

    def pol(option):
        return build_scenario(compose([f"policy={option}"])).policy

    q = pol("qemu")
    assert (q.max_rounds, q.downtime_limit_ms, q.max_bandwidth_mib_s, q.timeout_s) == (
        10**9,
        300.0,
        None,
        600.0,
    )
    assert pol("hybrid").max_rounds == 10**9 and pol("hybrid").precopy_passes == 1
    # issue 12 rule 2: DEF_MAX_ITERS 29 = 29 live passes (was 30)
    assert (pol("xen").max_rounds, pol("xen").max_factor) == (29, 3.0)
    assert (pol("hyperv_2008r2").max_passes, pol("hyperv_2008r2").transport) == (10, "tcp")
    assert (pol("hyperv_2012r2").max_passes, pol("hyperv_2012r2").transport) == (5, "compression")
    # issue 12 rule 8: encrypted vMotion is Opportunistic by default (the generic profile too)
    assert pol("vmware_vsphere7").encryption is True and pol("vmware").encryption is True
    assert type(pol("custom")).__name__ == "ShrinkOrStopPolicy" and pol("custom").max_rounds == 30


def test_every_field_keeps_a_documented_default():
    for cls in POLICIES.values():
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING, f"{cls.__name__}.{f.name} has no default"
