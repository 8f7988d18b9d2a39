"""Regression values: fixed scenarios must keep their results (both engines).

If a change is meant to alter results, regenerate ``golden.json`` deliberately
(``python tests/regression/test_golden.py --update``) and say why in the commit message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lmtoolkit.model import HotColdWorkload, UniformWorkload, ZipfWorkload
from lmtoolkit.policies import QemuPolicy, XenPolicy
from tests.conftest import run, scenario

GOLDEN = Path(__file__).with_name("golden.json")
CASES = {
    "qemu_uniform_1g": dict(workload=UniformWorkload(dirty_rate_pages_s=5000), policy=QemuPolicy()),
    "qemu_hotcold_ac_1g": dict(
        workload=HotColdWorkload(dirty_rate_pages_s=60000, hot_mib=256),
        policy=QemuPolicy(auto_converge=True, timeout_s=120),
    ),
    "xen_hotcold_1g": dict(
        workload=HotColdWorkload(dirty_rate_pages_s=30000, hot_mib=64), policy=XenPolicy()
    ),
    "qemu_zipf_10g": dict(workload=ZipfWorkload(dirty_rate_pages_s=100000), policy=QemuPolicy(), gbit=10),
}


def compute(name, engine):
    r = run(scenario(memory_gib=1.0, engine=engine, seed=3, zero_fraction=0.1, **CASES[name]))
    return dict(
        total_time_s=r.total_time_s,
        downtime_s=r.downtime_s,
        transferred_bytes=r.transferred_bytes,
        rounds=r.rounds,
        converged=r.converged,
    )


@pytest.mark.parametrize("engine", ["page", "fluid"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name, engine):
    want = json.loads(GOLDEN.read_text())[f"{name}/{engine}"]
    got = compute(name, engine)
    assert got["rounds"] == want["rounds"] and got["converged"] == want["converged"]
    for k in ("total_time_s", "downtime_s", "transferred_bytes"):
        assert got[k] == pytest.approx(want[k], rel=1e-9), k


if __name__ == "__main__" and "--update" in sys.argv:
    GOLDEN.write_text(
        json.dumps(
            {f"{n}/{e}": compute(n, e) for n in CASES for e in ("page", "fluid")}, indent=1, sort_keys=True
        )
    )
