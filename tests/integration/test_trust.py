"""Results you can trust: the cache keys on the code, experiments run what they declare,
one runner for every task, and every executor resumes after SIGKILL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from lmtoolkit.paths import config_dir
from tests.conftest import RULE_LINE, SLOWER_RULE_LINE, lmtk, package_copy, slower_switchover

pytestmark = pytest.mark.integration
ROOT = config_dir().parent
PKG = ROOT / "lmtoolkit"


def test_cache_recomputes_when_a_rule_changes(tmp_path):
    """A copy of the package; its rule edited (uncommitted, no git): never served from cache."""
    work, env = package_copy(tmp_path)
    args = ["sweep", "experiment=quickstart", "debug=default", "engine=fluid", "--no-plot", "-q"]
    probe = "import lmtoolkit, lmtoolkit.provenance as p; print(lmtoolkit.__file__, p.code_hash())"

    def code_hash():
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        path, h = out.stdout.split()
        assert Path(path).is_relative_to(work)  # the copy runs, not the checkout
        return h

    def result(run):
        from lmtoolkit.sweep import read_result

        line = next(x for x in run.stdout.splitlines() if x.startswith(("wrote ", "dataset ")))
        return read_result(line.split(" ", 1)[1].strip())

    h1 = code_hash()
    first = lmtk(args, env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "computed" in first.stdout
    again = lmtk(args, env, tmp_path)
    assert "served from cache" in again.stdout
    before = result(first).total_time.values
    # edit a rule in the copy: every switchover costs 2 s more
    slower_switchover(work)
    h2 = code_hash()
    assert h2 != h1
    rerun = lmtk(args, env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "served from cache" not in rerun.stdout and "computed" in rerun.stdout
    ds = result(rerun)
    assert (ds.total_time.values > before + 1.9).all()  # the new rule's numbers, not the old ones
    assert ds.attrs["lmt_code_hash"] == h2


#: one migration in a process that imports the package (a copy, on PYTHONPATH), then does what
#: ``sys.argv`` says between runs; prints each run's [total_time, lmt_code_hash] or error
_SESSION = """
import json, os, sys
from pathlib import Path
import lmtoolkit as lmt

pkg = Path(lmt.__file__).parent
common = pkg / "engine" / "common.py"

def run():
    try:
        ds = lmt.simulate(["engine=fluid", "vm.memory_gib=1"])
        return [float(ds.total_time), ds.attrs["lmt_code_hash"]]
    except lmt.ConfigError as e:
        return str(e)

out = []
for step in sys.argv[1:]:
    if step == "run":
        out.append(run())
    elif step == "touch":  # new mtime and ctime, same content
        common.write_text(common.read_text())
    elif step == "edit-unimported":
        assert "lmtoolkit.analytic" not in sys.modules
        (pkg / "analytic.py").write_text((pkg / "analytic.py").read_text() + "# edited\\n")
    elif step == "edit-rule":  # every switchover 2 s longer
        text = common.read_text()
        assert RULE_LINE in text
        common.write_text(text.replace(RULE_LINE, SLOWER_RULE_LINE))
print(json.dumps(out))
""".replace("SLOWER_RULE_LINE", repr(SLOWER_RULE_LINE)).replace("RULE_LINE", repr(RULE_LINE))


def test_a_process_refuses_to_run_lmtoolkit_older_than_its_files(tmp_path):
    """A process (a notebook's kernel) that imported lmtoolkit and then saw its files change
    runs the code it imported: every result it makes now is refused — it used to hash the new
    files and store the old rule's numbers under that hash (the first run after the edit:
    0.92 s under the hash whose code gives 2.92 s).  A touch, or an identical rewrite, of a
    file it has read is no change; an edit of a module it has not imported yet is (it cannot
    tell which version a later import gets)."""
    import json

    _, env = package_copy(tmp_path)

    def session(*steps):
        out = subprocess.run(
            [sys.executable, "-c", _SESSION, *steps], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    (old, h1), touched, unimported = session("run", "touch", "run", "edit-unimported", "run")
    assert touched == [old, h1]
    assert unimported.startswith("lmtoolkit: file analytic.py changed on disk after process "), unimported
    assert f"(code {h1[:12]}; its files now hash " in unimported, unimported
    assert "restart it (the Python session, the notebook's kernel)" in unimported, unimported
    # imported, then the rule edited, then the first run: refused (the imported code is unknown)
    [stale] = session("edit-rule", "run")
    assert stale.startswith("lmtoolkit: file engine/common.py changed on disk after process "), stale
    assert "(code unknown; its files now hash " in stale, stale
    # a fresh process runs the edited rule under the edited files' hash
    [[new, h2]] = session("run")
    assert h2 != h1 and f"its files now hash {h2[:12]})" in stale, stale
    assert new > old + 1.9


def test_cache_recomputes_when_a_plugin_policy_changes(tmp_path):
    """A plug-in policy (policy._target_, outside the package) edited between two sweeps: the
    second computes anew.  The cache key used to cover the package's code only, and served
    the old plug-in's numbers."""
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "base_rules.py").write_text(
        "from lmtoolkit.policies import PrecopyPolicy\n"
        "class Base(PrecopyPolicy, register=False):\n"
        "    EXTRA_S = 0.0\n"
    )
    mod = plug / "slow_switch.py"
    mod.write_text(
        "from dataclasses import dataclass\n"
        "from base_rules import Base\n"
        "@dataclass(frozen=True)\n"
        "class Slow(Base):\n"
        "    stop_overhead_ms: float = 0.0\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{plug}:{ROOT}", LMT_RESULTS_DIR=str(tmp_path / "results"))
    args = ["sweep", "experiment=bandwidth_vs_dirty_rate", "debug=default", "policy=custom"]
    args += ["policy._target_=slow_switch.Slow", "engine=fluid", "--no-plot"]

    def sweep():
        from lmtoolkit.sweep import read_result

        run = lmtk(args, env, tmp_path)
        assert run.returncode == 0, run.stderr
        line = next(x for x in run.stdout.splitlines() if x.startswith(("wrote ", "dataset ")))
        return line.startswith("dataset "), read_result(line.split(" ", 1)[1].strip())

    cached, first = sweep()
    assert not cached and "slow_switch.Slow" in first.attrs["lmt_config"]
    assert sweep()[0]
    mod.write_text(
        mod.read_text().replace("stop_overhead_ms: float = 0.0", "stop_overhead_ms: float = 2000.0")
    )
    cached, edited = sweep()
    assert not cached  # the plug-in's module changed
    ok = first.completed.values
    assert ok.any() and (edited.downtime.values[ok] > first.downtime.values[ok] + 1.9).all()  # its numbers
    assert sweep()[0]
    (plug / "base_rules.py").write_text((plug / "base_rules.py").read_text() + "    MORE = 1\n")
    assert not sweep()[0]  # a base class of its own, in another module


def test_cache_recomputes_what_an_axis_brings_in(tmp_path):
    """What an axis swaps in is hashed too, not only the base config: the plug-in policy of a
    group option an axis names (``sweep.axes.policy.values=[custom,hyperv]``) and the trace
    files a ``workload.file`` axis names.  Edited between two sweeps, both were served from
    the cache with the old numbers (README walk-through, session 15)."""
    from lmtoolkit.sweep import read_result

    plug = tmp_path / "plug"
    plug.mkdir()
    mod = plug / "my_policy.py"
    mod.write_text((ROOT / "examples" / "my_policy.py").read_text())
    tr = tmp_path / "t.npz"
    shutil.copy(ROOT / "data" / "raw" / "traces" / "example.npz", tr)
    env = dict(os.environ, PYTHONPATH=f"{plug}:{ROOT}", LMT_RESULTS_DIR=str(tmp_path / "results"))
    base = [
        "sweep",
        "experiment=quickstart",
        "debug=default",
        "engine=fluid",
        "--no-plot",
        "~sweep.axes.network",
    ]
    cases = {
        "plug-in": [
            *base,
            "sweep.axes.policy.values=[custom,hyperv]",
            "sweep.axes.dirty_rate.values=[60000]",
        ],
        "trace": [
            *base,
            "engine=page",
            "workload=trace",
            "~sweep.axes.dirty_rate",
            "sweep.axes.policy.values=[vmware]",
            f"+sweep.axes.tr={{key: workload.file, values: [{ROOT / 'data/raw/traces/example.npz'}, {tr}]}}",
        ],
    }

    def sweep(args):
        run = lmtk(args, env, tmp_path)
        assert run.returncode == 0, run.stderr
        line = next(x for x in run.stdout.splitlines() if x.startswith(("wrote ", "dataset ")))
        return line.startswith("dataset "), read_result(line.split(" ", 1)[1].strip())

    for name, args in cases.items():
        cached, first = sweep(args)
        assert not cached and sweep(args)[0], name  # computed, then served
    mod.write_text(mod.read_text().replace("min_shrink_pct: float = 10.0", "min_shrink_pct: float = 90.0"))
    import numpy as np

    with np.load(tr) as z:
        arrays = dict(z)
    arrays["pages"] = arrays["pages"] % 300  # the same writes on fewer pages
    np.savez(tr, **arrays)
    for name, args in cases.items():
        assert not sweep(args)[0], name  # what the axis brings in changed: computed anew


def test_code_hash_covers_every_source_and_c_file():
    from lmtoolkit import provenance

    files = {p.relative_to(PKG).as_posix() for p in provenance.code_files()}
    assert "policies/qemu.py" in files and "sweep/plan.py" in files
    assert any(f.endswith(".c") for f in files)
    assert not any("__pycache__" in f for f in files)


def test_the_dirty_flag_covers_what_the_code_hash_covers(tmp_path):
    """An untracked lmtoolkit/policies/x.py changed lmt_code_hash while lmt_git_dirty stayed
    false (git status --untracked-files=no): every source file the code hash reads (an ignored
    one too) and every config file git would add now make the checkout dirty; the ignored
    configs/local/*.yaml does not (results record it in lmt_local_file)."""
    repo = tmp_path / "repo"
    shutil.copytree(PKG, repo / "lmtoolkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", repo / "configs", ignore=shutil.ignore_patterns("local", "walk*"))
    (repo / ".gitignore").write_text("__pycache__/\nconfigs/local/*.yaml\nlmtoolkit/gen_*.c\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    env = {k: v for k, v in os.environ.items() if k != "LMT_CONFIG_DIR"}
    env["PYTHONPATH"] = str(repo)
    out = subprocess.run(
        [sys.executable, "-c", _DIRTY_STEPS], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    steps = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    clean = steps.pop("clean")
    assert clean.startswith("False ")
    assert steps == {
        "untracked-py": f"True {steps['untracked-py'].split()[1]}",  # dirty, under another code hash
        "ignored-c": f"True {steps['ignored-c'].split()[1]}",
        "local-yaml": clean,  # ignored by git, not code: the clean state
        "untracked-config": f"True {clean.split()[1]}",
    }
    assert len({v.split()[1] for v in (clean, steps["untracked-py"], steps["ignored-c"])}) == 3


#: in one process (git_state asks git again when the files changed): the dirty flag and the
#: code hash of the files as they are, after each step
_DIRTY_STEPS = """
import lmtoolkit.provenance as p

pkg = p.package_dir()
conf = pkg.parent / "configs"
show = lambda step: print(step, p.git_state()[1], p.code_hash(str(pkg)))
show("clean")
(pkg / "policies" / "x.py").write_text("X = 1\\n")
show("untracked-py")
(pkg / "policies" / "x.py").unlink()
(pkg / "gen_rules.c").write_text("int x;\\n")  # ignored by git, hashed
show("ignored-c")
(pkg / "gen_rules.c").unlink()
(conf / "local").mkdir()
(conf / "local" / "default.yaml").write_text("sweep: {workers: 2}\\n")
show("local-yaml")
(conf / "experiment" / "walk.yaml").write_text("title: walk\\n")
show("untracked-config")
"""


def test_evacuation_experiment_runs_as_declared(tmp_path):
    """lmtk sweep runs the evacuation the experiment declares; lmtk evacuate gives the same."""
    import lmtoolkit as lmt

    ov = ["experiment=evacuation_order", "debug=default", f"paths.results_dir={tmp_path}"]
    a = lmt.sweep(ov)
    b = lmt.evacuate(ov)
    assert a.attrs["lmt_task"] == "evacuation" and "vm" in a.dims and "makespan" in a
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert (a.end.max("vm") == a.makespan).all()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["evacuate", "experiment=quickstart"], ["task=migration", "lmtk sweep"]),
        (["run", "experiment=quickstart"], ["sweep axes", "lmtk sweep"]),
        (["run", "experiment=evacuation_order"], ["task=evacuation"]),
        (["run", "task=evacuation"], ["task=evacuation"]),
    ],
)
def test_a_command_never_substitutes_another_task(argv, words, capsys):
    from lmtoolkit.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_lmtk_run_composes_once(monkeypatch, tmp_path):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from lmtoolkit.cli import main

    calls = []
    real = ConfigLoaderImpl.load_configuration
    monkeypatch.setattr(
        ConfigLoaderImpl, "load_configuration", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    assert main(["run", "vm.memory_gib=0.25", "policy.xbzrle=true", "-o", str(tmp_path / "r.nc")]) == 0
    assert len(calls) == 1
    calls.clear()
    assert main(["evacuate", "policy=hyperv", "-o", str(tmp_path / "e.nc")]) == 0
    assert len(calls) == 1
    calls.clear()
    assert main(["sweep", "experiment=bandwidth_vs_dirty_rate", "debug=default", "--no-plot", "-q"]) == 0
    assert len(calls) == 1  # no group swap: one composition
    calls.clear()
    assert main(["sweep", "experiment=memory_scaling", "--no-plot", "-q"]) == 0
    assert len(calls) == 1  # policy x network swaps reuse the one composition


def test_api_imports_no_plotting():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lmtoolkit.api; print(sorted(m for m in "
            "sys.modules if m.startswith(('lmtoolkit.plotting', 'lmtoolkit.notebooks', "
            "'matplotlib', 'seaborn', 'papermill'))))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# -- resume after SIGKILL, every executor -----------------------------------------------------
def _kill_and_resume(tmp_path, args, folder, n_chunks, kill_after):
    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path / "run"))
    cmd = [sys.executable, "-m", "lmtoolkit.cli", "sweep", *args, "sweep.chunk_size=1", "--no-plot", "-q"]
    tree = tmp_path / "run" / "debug" / folder  # the canonical dir or a variant's
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tree.rglob(".partial/*/chunk-*.npz"))) < kill_after:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and every worker it started
    proc.wait()
    kept = {p.name for p in tree.rglob(".partial/*/chunk-*.npz")}
    assert kill_after <= len(kept) < n_chunks
    assert not list(tree.rglob(f"{folder}.nc"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert f"computed {n_chunks - len(kept)} of {n_chunks} chunks, {len(kept)} resumed" in out.stdout
    return len(kept)


@pytest.mark.parametrize("executor", ["inline", "processes", "dask"])
def test_every_executor_resumes_after_sigkill(tmp_path, executor):
    extra = [] if executor == "inline" else [f"sweep.executor={executor}", "sweep.workers=2"]
    args = ["experiment=quickstart", "debug=default", "sweep.max_values=4", "vm.memory_gib=2", *extra]
    _kill_and_resume(tmp_path, args, "quickstart", 16, 2)


def test_process_pool_workers_exit_when_the_driver_is_killed(tmp_path):
    """kill -9 of the driver alone (the OOM killer's choice: it holds the results) left its
    two pool workers sleeping for good (still there 45 s later, the driver's memory each)."""
    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path / "run"))
    args = ["experiment=quickstart", "debug=default", "sweep.max_values=4", "sweep.replicates=32"]
    cmd = [sys.executable, "-m", "lmtoolkit.cli", "sweep", *args, "sweep.chunk_size=1", "--no-plot", "-q"]
    cmd += ["sweep.executor=processes", "sweep.workers=2"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True
    )

    def group():
        out = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((tmp_path / "run").rglob(".partial/*/chunk-*.npz")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        workers = [p for p in group() if p != proc.pid]
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)  # the driver only
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and group():
            time.sleep(0.1)
        assert group() == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_evacuation_sweep_resumes_after_sigkill(tmp_path):
    """A sweep over evacuation.order, killed: 0 finished points recomputed."""
    args = ["experiment=evacuation_order", "debug=default", "sweep.max_values=5"]
    _kill_and_resume(tmp_path, args, "evacuation_order", 10, 2)


def test_the_site_keeps_no_page_of_an_earlier_build(tmp_path, monkeypatch):
    """A rebuilt site holds what its index links to: pages of a lesson, an experiment notebook
    or an edition no longer built, and figures no longer made, are removed (they stayed, and
    a published site kept serving a renamed notebook's old page); files of the user's own,
    outside the pages and images a build writes, are kept."""
    from lmtoolkit.site import build

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    site = tmp_path / "site"
    stale = [site / "student" / "99_gone.html", site / "teacher" / "99_gone.html",
             site / "notebooks" / "old_run.html", site / "figures" / "fig99_gone.png"]  # fmt: skip
    own = [site / "notes.txt", site / "student" / "style.css"]
    for f in stale + own:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    info = build(site, smoke=True, teaching=[], progress=False)  # no lesson: the build is quick
    assert sorted(info["removed"]) == sorted(stale)
    assert not any(f.exists() for f in stale) and all(f.exists() for f in own)
    assert (site / "index.html").exists() and (site / "figures.html").exists()
    assert "99_gone" not in (site / "index.html").read_text()
    assert build(site, smoke=True, teaching=[], progress=False)["removed"] == []  # nothing left over
