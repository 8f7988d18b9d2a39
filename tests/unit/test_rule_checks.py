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
class FreeWire(PrecopyPolicy):
    """Pages that cost no time on the wire: every later rate is a division by zero."""

    def link(self, st, ctx, stop=False):
        lk = super().link(st, ctx, stop)
        return dataclasses.replace(lk, t_nz=0.0 * lk.t_nz)


@dataclass(frozen=True)
class NegativeStopRate(PrecopyPolicy):
    """A pause rate below zero: its pages' time in the pause (link(stop=True)) is refused."""

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


BAD = [
    (NanPages, "phase_pages", "nan"),
    (NegativePages, "phase_pages", "-"),
    (ThrottleAboveOne, "after_sync", "st.throttle = 1.5"),
    (NanThrottle, "after_sync", "st.throttle = nan"),
    (UnknownReason, "decide", "999"),
    (FreeWire, "link", "t_nz"),
    (NegativeStopRate, "link(stop=True)", "t_nz"),
    (NoChunk, "clear_chunk_pages", "= 0.0"),
    (NegativeCache, "xbzrle_slots", "= -3.0"),
    (NegativeFaultCost, "fault_overhead_s", "= -1.0"),
    (NanAccesses, "fault_access_factor", "= nan"),
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
