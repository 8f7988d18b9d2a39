"""Workload pacing (issue 12, rule 5): a writer paced by guest progress slows with the
guest's throttle; one paced by the wall clock catches up and slows only when its peak rate,
scaled by the throttle, falls below its target (lmtoolkit/model/workload.py)."""

from __future__ import annotations

import pytest

from lmtoolkit.errors import ConfigError
from lmtoolkit.model import HotColdWorkload, UniformWorkload
from lmtoolkit.policies import QemuPolicy
from tests.conftest import run, scenario

ENGINES = ("page", "fluid")


def test_write_speed_by_pacing():
    guest = UniformWorkload(dirty_rate_pages_s=10_000)
    wall = UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall")
    capped = UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall", max_rate_pages_s=25_000)
    assert float(guest.write_speed(0.3)) == pytest.approx(0.3)
    assert float(wall.write_speed(0.3)) == 1.0  # catches up: no slowdown
    assert float(capped.write_speed(0.5)) == 1.0  # 0.5 x 25k >= 10k
    assert float(capped.write_speed(0.2)) == pytest.approx(0.5)  # 0.2 x 25k = 5k of 10k


@pytest.fixture(scope="module")
def paced():
    out = {}
    for name, kw in (
        ("guest", {}),
        ("wall", dict(pacing="wall")),
        ("wall2x", dict(pacing="wall", max_rate_pages_s=120_000)),
    ):
        hot = HotColdWorkload(dirty_rate_pages_s=60_000, hot_mib=256, **kw)
        for e in ENGINES:
            out[name, e] = run(
                scenario(workload=hot, engine=e, policy=QemuPolicy(timeout_s=120, auto_converge=True))
            )
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_auto_converge_against_both_pacings(paced, engine):
    guest, wall, wall2x = (paced[n, engine] for n in ("guest", "wall", "wall2x"))
    # guest pacing: the throttle cuts the write rate, 60 % suffices
    assert guest.converged and guest.total_time_s == pytest.approx(31.0, rel=0.01)
    assert guest.throttle_max == pytest.approx(0.6)
    # a clock-paced writer with unbounded headroom is not slowed at all: no convergence
    assert not wall.converged and wall.stop_reason == "timeout" and wall.throttle_max == pytest.approx(0.99)
    # with twice the target rate in reserve it slows only past 50 %: 90 % needed, 41 % longer
    assert wall2x.converged and wall2x.throttle_max == pytest.approx(0.9)
    assert wall2x.total_time_s == pytest.approx(43.8, rel=0.01)


def test_pacing_engines_agree(paced):
    for n in ("guest", "wall", "wall2x"):
        p, f = paced[n, "page"], paced[n, "fluid"]
        assert f.total_time_s == pytest.approx(p.total_time_s, rel=0.01), n
        assert f.converged == p.converged


def test_pacing_keys_are_checked():
    with pytest.raises(ConfigError) as e:
        UniformWorkload(pacing="clock")
    assert e.value.key == "pacing"
    with pytest.raises(ConfigError) as e:
        UniformWorkload(dirty_rate_pages_s=10_000, pacing="wall", max_rate_pages_s=5_000)
    assert e.value.key == "max_rate_pages_s"
