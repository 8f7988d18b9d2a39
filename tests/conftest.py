"""Shared fixtures: small scenarios built from objects (no Hydra) for fast engine tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path, monkeypatch):
    """Every test writes results under its own tmp dir (paths.results_dir reads this)."""
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    yield


def scenario(memory_gib=1.0, workload=None, policy=None, gbit=1.0, engine="page", seed=0, **vm):
    from lmtoolkit.model import VM, IdleWorkload, Network
    from lmtoolkit.policies import QemuPolicy
    from lmtoolkit.scenario import Scenario

    return Scenario(
        vm=VM(memory_gib=memory_gib, **vm),
        workload=workload or IdleWorkload(),
        network=Network(bandwidth_gbit_s=gbit),
        policy=policy or QemuPolicy(),
        engine=engine,
        seed=seed,
    )


def run(scn):
    """One record from either engine."""
    from lmtoolkit.engine import simulate_fluid, simulate_page

    if scn.engine == "page":
        return simulate_page(scn)
    return simulate_fluid([scn]).records()[0]


os.environ.setdefault("HYDRA_FULL_ERROR", "0")
