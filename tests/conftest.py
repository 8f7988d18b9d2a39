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


def after_pass(policy, sent, dirtied, pending=0.0, bw=1e8, throttle=0.0):
    """(state, context) after a pass — the second sync — of a 1 GiB guest: the pass sent
    ``sent`` pages while the guest dirtied ``dirtied``, ``pending`` are left, ``bw`` bytes/s
    measured, the guest at ``throttle``; ``policy.after_sync`` has run (a rule's unit test)."""
    import numpy as np

    from lmtoolkit.policies.base import State

    ctx = scenario().context()
    st = State(())
    policy.init_state(st, ctx)
    st.round, st.throttle = np.float64(2), np.float64(throttle)
    st.phase_pages, st.dirty_new, st.pending = (np.float64(x) for x in (sent, dirtied, pending))
    st.phase_time, st.phase_bytes = np.float64(1.0), np.float64(bw)
    policy.after_sync(st, ctx)
    return st, ctx


def stop_reason(policy, st, ctx) -> str:
    """The name of what ``policy.decide`` answers (``running``: go on)."""
    from lmtoolkit.records import STOP_REASONS

    return STOP_REASONS[int(policy.decide(st, ctx))]


def lmtk(args, env, cwd, **kw):
    """``lmtk ARGS`` in a fresh process with ``env`` (a subprocess.CompletedProcess, text)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "lmtoolkit.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, **kw
    )


#: a line of the engines' switchover rule (lmtoolkit/engine/common.py: ``switchover``) that the
#: trust tests edit in a package copy; :func:`slower_switchover` makes every pause 2 s longer
RULE_LINE = "down = page_t + disc_t + dev_t"
SLOWER_RULE_LINE = "down = 2.0 + page_t + disc_t + dev_t"


def slower_switchover(src) -> None:
    """Edit the package copy ``src`` (:func:`package_copy`): every switchover 2 s longer."""
    common = src / "lmtoolkit" / "engine" / "common.py"
    text = common.read_text()
    assert RULE_LINE in text, "the switchover rule line moved: update tests.conftest.RULE_LINE"
    common.write_text(text.replace(RULE_LINE, SLOWER_RULE_LINE))


def package_copy(tmp_path, results: str = "results"):
    """A copy of the lmtoolkit package under ``tmp_path/src`` (to edit its rules) and the
    environment that runs it: ``(src, env)``; its configs stay the checkout's."""
    import shutil

    from lmtoolkit.paths import config_dir

    src = tmp_path / "src"
    shutil.copytree(ROOT / "lmtoolkit", src / "lmtoolkit", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(
        os.environ,
        PYTHONPATH=str(src),
        LMT_CONFIG_DIR=str(config_dir()),
        LMT_RESULTS_DIR=str(tmp_path / results),
    )
    return src, env


def cli_error(argv, capsys, words=()) -> str:
    """``lmtk ARGV`` from :func:`lmtoolkit.cli.main` is refused: exit 2, one line
    ``lmtk: error: …`` holding each of ``words``, no traceback; returns the line."""
    from lmtoolkit.cli import main

    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lmtk: error: "), err
    assert "Traceback" not in captured.err + captured.out
    for w in words:
        assert w in err, (w, err)
    return err


os.environ.setdefault("HYDRA_FULL_ERROR", "0")
