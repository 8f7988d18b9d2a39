"""Both engines check a policy's answers (lmtoolkit/engine/rule_checks.py): a plug-in rule that
answers NaN, a negative page count or wire cost, a throttle outside [0, 1] or an unknown stop
reason stops the run with one PolicyRuleError naming the class, the rule and the value.
Before, these gave a negative ``transferred``, a NaN ``total_time``, a throttle of 150 %
reported as is, or a traceback (IndexError, ValueError) far from the rule."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.engine.rule_checks import PolicyRuleError
from lmtoolkit.errors import ConfigError
from lmtoolkit.model import UniformWorkload
from lmtoolkit.policies import PostcopyPolicy, PrecopyPolicy
from tests.conftest import run, scenario

ENGINES = ("page", "fluid")


@dataclass(frozen=True)
class NanPages(PrecopyPolicy):
    def phase_pages(self, st, ctx):
        return super().phase_pages(st, ctx) * np.nan


@dataclass(frozen=True)
class NegativePages(PrecopyPolicy):
    def phase_pages(self, st, ctx):
        return -super().phase_pages(st, ctx)


@dataclass(frozen=True)
class ThrottleAboveOne(PrecopyPolicy):
    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        st.throttle = st.throttle + 1.5


@dataclass(frozen=True)
class NanThrottle(PrecopyPolicy):
    def after_sync(self, st, ctx):
        super().after_sync(st, ctx)
        st.throttle = st.throttle * np.nan


@dataclass(frozen=True)
class UnknownReason(PrecopyPolicy):
    def forced(self, st, ctx):
        return super().forced(st, ctx) + 999


@dataclass(frozen=True)
class UnknownDecision(PrecopyPolicy):
    def decide(self, st, ctx):
        return super().decide(st, ctx) + 999


@dataclass(frozen=True)
class FreeWire(PrecopyPolicy):
    """Pages that cost no time on the wire: every later rate is a division by zero."""

    def link(self, st, ctx, stop=False):
        lk = super().link(st, ctx, stop)
        return dataclasses.replace(lk, t_nz=0.0 * lk.t_nz)


@dataclass(frozen=True)
class NegativeStopRate(PrecopyPolicy):
    """A pause rate below zero: refused as itself, before link(stop=True) divides by it."""

    def stop_rate_bytes_s(self, st, ctx):
        return -super().stop_rate_bytes_s(st, ctx)


@dataclass(frozen=True)
class NoChunk(PrecopyPolicy):
    """A dirty-log clear over 0 pages: a ZeroDivisionError in both engines."""

    dirty_clear = "chunk"

    def clear_chunk_pages(self, ctx):
        return 0


@dataclass(frozen=True)
class NegativeCache(PrecopyPolicy):
    def xbzrle_slots(self, ctx):
        return -3


@dataclass(frozen=True)
class NegativeFaultCost(PostcopyPolicy):
    def fault_overhead_s(self):
        return -1.0


@dataclass(frozen=True)
class NanAccesses(PostcopyPolicy):
    def fault_access_factor(self):
        return float("nan")


@dataclass(frozen=True)
class NegativeDiscard(PostcopyPolicy):
    def discard_bytes(self, runs):
        return -16.0 * runs


@dataclass(frozen=True)
class NoPostcopyRate(PostcopyPolicy):
    def postcopy_rate_bytes_s(self, st, ctx):
        return 0.0 * super().postcopy_rate_bytes_s(st, ctx)


BAD = [
    (NanPages, "phase_pages", "nan"),
    (NegativePages, "phase_pages", "-"),
    (ThrottleAboveOne, "after_sync", "st.throttle = 1.5"),
    (NanThrottle, "after_sync", "st.throttle = nan"),
    (UnknownReason, "forced", "999"),  # asked by decide: named itself (was "rule decide")
    (UnknownDecision, "decide", "999"),
    (FreeWire, "link", "t_nz"),
    (NegativeStopRate, "stop_rate_bytes_s", "bytes/s = -"),  # asked by link(stop=True): named itself
    (NoChunk, "clear_chunk_pages", "= 0.0"),
    (NegativeCache, "xbzrle_slots", "= -3.0"),
    (NegativeFaultCost, "fault_overhead_s", "= -1.0"),
    (NanAccesses, "fault_access_factor", "= nan"),
    (NegativeDiscard, "discard_bytes", "= -16.0"),
    (NoPostcopyRate, "postcopy_rate_bytes_s", "bytes/s = 0.0"),  # asked by postcopy_link: named itself
]


def _busy(policy, engine):
    return scenario(
        memory_gib=0.25,
        workload=UniformWorkload(dirty_rate_pages_s=20_000.0),
        policy=policy,
        engine=engine,
        gbit=1.0,
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cls, rule, value", BAD, ids=[b[0].__name__ for b in BAD])
def test_a_bad_rule_answer_is_one_error_naming_the_rule(cls, rule, value, engine):
    with pytest.raises(PolicyRuleError) as e:
        run(_busy(cls(), engine))
    text = str(e.value)
    assert f"{__name__}.{cls.__qualname__}" in text and f"rule {rule}" in text and value in text, text
    assert "allowed: finite, in" in text
    assert isinstance(e.value, ConfigError)  # the CLI's one line, exit 2


def _bad_plugin(tmp_path):
    (tmp_path / "bad_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "import numpy as np\n"
        "from lmtoolkit.policies import PrecopyPolicy\n"
        "@dataclass(frozen=True)\n"
        "class NanPages(PrecopyPolicy):\n"
        "    def phase_pages(self, st, ctx):\n"
        "        return super().phase_pages(st, ctx) * np.nan\n"
    )


def _lmtk(tmp_path, *args):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{root}", "LMT_RESULTS_DIR": str(tmp_path / "results")}
    cmd = [
        sys.executable,
        "-m",
        "lmtoolkit.cli",
        *args,
        "policy=custom",
        "policy._target_=bad_plugin.NanPages",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=300)


def test_the_cli_prints_one_line(tmp_path):
    """``lmtk run`` with a plug-in whose rule answers NaN: one line, exit 2 (was a traceback)."""
    _bad_plugin(tmp_path)
    p = _lmtk(
        tmp_path,
        "run",
        "workload=uniform",
        "network=1gbe",
        "vm.memory_gib=0.25",
        "-o",
        str(tmp_path / "x.nc"),
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "lmtk: error: policy bad_plugin.NanPages: rule phase_pages gave pages = nan; allowed: finite, in [0, inf)"
    ]
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_a_sweep_reports_a_chunks_error_as_one_line(tmp_path, executor):
    """An error inside a chunk reaches the user as itself.  With the process pool it used to
    be hidden behind an AttributeError of the pool's shutdown (a traceback)."""
    _bad_plugin(tmp_path)
    p = _lmtk(
        tmp_path,
        "sweep",
        "experiment=bandwidth_vs_dirty_rate",
        "debug=default",
        f"sweep.executor={executor}",
        "sweep.chunk_size=1",
        "sweep.workers=2",
        "--no-plot",
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert (
        lines[-1].startswith("lmtk: error: policy bad_plugin.NanPages: rule phase_pages")
        and "Traceback" not in p.stderr
    )


@dataclass(frozen=True)
class NoneAtOnce(PrecopyPolicy):
    def concurrent_migrations(self, link_gbit_s):
        return 0


@dataclass(frozen=True)
class HalfAtOnce(PrecopyPolicy):
    def concurrent_migrations(self, link_gbit_s):
        return 1.5


@pytest.mark.parametrize("cls, value", [(NoneAtOnce, "0"), (HalfAtOnce, "1.5")])
def test_an_evacuation_checks_the_policys_concurrency(cls, value):
    """0 migrations at once was a RuntimeError traceback from the scheduler; 1.5 was taken."""
    import lmtoolkit as lmt

    with pytest.raises(
        PolicyRuleError, match=rf"{cls.__qualname__}: rule concurrent_migrations gave {value} "
    ):
        lmt.evacuate(["debug=default", "policy=custom", f"policy._target_={__name__}.{cls.__qualname__}"])


@dataclass(frozen=True)
class PythonIf(PrecopyPolicy):
    def phase_pages(self, st, ctx):
        if st.pending > 1000:  # fine on one migration, ambiguous on an array of them
            return st.pending
        return st.pending * 0 + 1000


def test_a_python_if_in_a_rule_keeps_its_traceback_and_gets_a_note():
    """On a fluid batch ``if array`` raises numpy's ValueError: it still points at the rule's
    line, and now says what to write instead."""
    from lmtoolkit.engine import simulate_fluid

    one = _busy(PythonIf(), "fluid")
    batch = [one, dataclasses.replace(one, network=dataclasses.replace(one.network, bandwidth_gbit_s=2.0))]
    with pytest.raises(ValueError, match="truth value of an array") as e:
        simulate_fluid(batch)
    notes = " ".join(getattr(e.value, "__notes__", []))
    assert "PythonIf, rule phase_pages" in notes and "np.where" in notes
    assert run(_busy(PythonIf(), "page")).total_time_s > 0  # one migration: the rule works


# -- every rule is checked wherever it is asked (the energy model, another rule) ----------------
@dataclass(frozen=True)
class NegativeCpu(PrecopyPolicy):
    """A sender CPU time below zero: ``link`` takes the larger of it and the wire time, so the
    run's times were right and only the energy model saw it (-16,275.5 J for 1 GiB on 1 GbE)."""

    def nonzero_cpu_s(self, st, ctx):
        return -1e-3 + 0.0 * st.t


@dataclass(frozen=True)
class NanConverged(PrecopyPolicy):
    """``decide`` asked ``converged`` unchecked: numpy's TypeError (bitwise_or of floats)."""

    def converged(self, st, ctx):
        return st.t * np.nan


@dataclass(frozen=True)
class ZeroOneConverged(PrecopyPolicy):
    """The generic test answered as 0/1 numbers: allowed, and the same run as booleans."""

    def converged(self, st, ctx):
        return np.asarray(super().converged(st, ctx), dtype=float)


@dataclass(frozen=True)
class ZeroRate(PrecopyPolicy):
    def rate_bytes_s(self, st, ctx):
        return 0.0 * st.t


@dataclass(frozen=True)
class BogusClear(PrecopyPolicy):
    dirty_clear = "bogus"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_negative_sender_cpu_time_is_refused(engine):
    with pytest.raises(PolicyRuleError, match=r"NegativeCpu: rule nonzero_cpu_s gave .* = -0\.001; allowed"):
        run(_busy(NegativeCpu(), engine))


def test_the_energy_model_asks_the_checked_rules():
    """``model/energy.py: scenario_constants`` asked the policy itself: -1 s per page gave
    -16.35 MJ, and a sweep printed -2.45 kJ."""
    from lmtoolkit.model.energy import Power, scenario_constants

    with pytest.raises(PolicyRuleError, match="rule nonzero_cpu_s"):
        scenario_constants(_busy(NegativeCpu(), "page"), Power())
    ok = scenario_constants(_busy(PrecopyPolicy(), "page"), Power())
    assert ok["send_cpu_s_per_page"] == 0.0


def test_the_cli_refuses_a_negative_sender_cpu_time_in_one_line(tmp_path, capsys, monkeypatch):
    from lmtoolkit.cli import main

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    target = f"{__name__}.NegativeCpu"
    args = ["run", f"policy._target_={target}", "workload=uniform", "vm.memory_gib=0.25", "network=1gbe"]
    assert main(args) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1 and "rule nonzero_cpu_s" in err[0] and "energy" not in out.out


@pytest.mark.parametrize("engine", ENGINES)
def test_decide_asks_the_checked_convergence_test(engine):
    with pytest.raises(PolicyRuleError, match=r"NanConverged: rule converged gave .* = nan"):
        run(_busy(NanConverged(), engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_convergence_test_of_zeros_and_ones_is_taken_as_truth_values(engine):
    """It was the same TypeError as NaN (the checked rule allowed it, ``decide`` did not)."""
    a, b = run(_busy(ZeroOneConverged(), engine)), run(_busy(PrecopyPolicy(), engine))
    assert (a.total_time_s, a.rounds, a.stop_reason) == (b.total_time_s, b.rounds, b.stop_reason)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rate_of_zero_is_one_error_and_no_warning(engine):
    """The division by the rate came first: numpy's RuntimeWarning (base.py, ``link``) was
    printed above the one-line error."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(PolicyRuleError, match=r"ZeroRate: rule rate_bytes_s gave bytes/s = 0\.0"):
            run(_busy(ZeroRate(), engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unknown_dirty_clear_mode_is_refused(engine):
    """``dirty_clear = "bogus"`` ran as ``sync`` in both engines (21.18 s against 15.23 s)."""
    with pytest.raises(PolicyRuleError) as e:
        run(_busy(BogusClear(), engine))
    assert str(e.value) == (
        f"policy {__name__}.BogusClear: dirty_clear = 'bogus'; allowed: one of send, sync, chunk, skip"
    )


def test_a_checked_policy_is_the_policy_with_its_rules_checked():
    """The engines' policy is of the policy's class (its rules call each other through the
    checks), names itself as the class, and pickles as the policy."""
    import pickle

    from lmtoolkit.engine.rule_checks import CheckedPolicy, checked

    p = PrecopyPolicy(max_rounds=7)
    c = checked(p)
    assert isinstance(c, PrecopyPolicy) and isinstance(c, CheckedPolicy) and checked(c) is c
    assert c.max_rounds == 7 and type(c).__qualname__ == "PrecopyPolicy" and repr(c) == repr(p)
    assert type(c.unchecked()) is PrecopyPolicy and c.unchecked() == p
    back = pickle.loads(pickle.dumps(c))
    assert isinstance(back, CheckedPolicy) and back.unchecked() == p
    sub = checked(PrecopyPolicy.stack([p, PrecopyPolicy(max_rounds=9)])).subset(np.array([1]))
    assert isinstance(sub, CheckedPolicy) and list(sub.max_rounds) == [9.0]
