"""What a sweep's chunks simulate, on any executor: the input files and plug-in code the config
hash certified, never what a worker finds on its own disk; and what ``sweep.cache=false`` reuses
(nothing).

A Dask worker on another machine resolved ``workload.file`` against its own working directory
(else the project root) and replayed that trace under the driver's config hash: same hash,
other numbers (total time 9.71 s instead of 9.20 s in the report).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lmtoolkit.errors import ConfigError
from lmtoolkit.paths import config_dir
from lmtoolkit.trace import load_trace, save_trace
from tests.conftest import lmtk, package_copy, slower_switchover

pytestmark = pytest.mark.integration
ROOT = config_dir().parent
TRACE = "data/raw/traces/example.npz"  # the project's trace, by the name a user would write
SWEEP = [
    "workload=trace",
    f"workload.file={TRACE}",
    "vm.memory_gib=1",
    "+sweep.axes.net={key: network, values: [1gbe, 10gbe]}",
]


def _trace_like_the_projects(path: Path, seed: int) -> Path:
    """A trace under the project trace's name, with twice its writes (other numbers)."""
    orig = load_trace(ROOT / TRACE)
    rng = np.random.default_rng(seed)
    n, size = orig["counts"].size, int(orig["counts"][0]) * 2
    pages = np.concatenate([np.sort(rng.choice(1 << 18, size, replace=False)) for _ in range(n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_trace(path, orig["interval_s"], np.full(n, size), pages, source=f"test seed {seed}")


def _plugin(folder: Path, module: str, shrink: float) -> Path:
    """examples/my_policy.py as ``module`` with its own min_shrink_pct default."""
    folder.mkdir(parents=True, exist_ok=True)
    src = (ROOT / "examples" / "my_policy.py").read_text()
    assert "min_shrink_pct: float = 10.0" in src
    f = folder / f"{module}.py"
    f.write_text(src.replace("min_shrink_pct: float = 10.0", f"min_shrink_pct: float = {shrink}"))
    return f


def test_a_chunk_simulates_the_trace_the_driver_hashed(tmp_path, monkeypatch):
    """A chunk carries the bytes of its trace: run where the name means another file (a worker's
    working directory), it gives the driver's numbers."""
    from lmtoolkit.sweep.execute import chunk_task, run_chunk
    from lmtoolkit.sweep.plan import make_plan
    from lmtoolkit.tasks import get_task

    drv, wk = tmp_path / "drv", tmp_path / "wk"
    _trace_like_the_projects(drv / TRACE, seed=1)
    _trace_like_the_projects(wk / TRACE, seed=2)  # the worker's own file of that name
    monkeypatch.chdir(drv)
    plan = make_plan(SWEEP, results_dir=tmp_path / "results")
    task = chunk_task(plan, 0, plan.n_points)
    here = get_task(plan.task).to_arrays(run_chunk(task))
    monkeypatch.chdir(wk)
    there = get_task(plan.task).to_arrays(run_chunk(pickle.loads(pickle.dumps(task))))
    assert here.keys() == there.keys()
    for k in here:
        np.testing.assert_array_equal(here[k], there[k], err_msg=k)
    # the test means something: the worker's file (and the project's) give other numbers
    own = make_plan(SWEEP, results_dir=tmp_path / "results")
    assert own.config_hash != plan.config_hash
    theirs = get_task(plan.task).to_arrays(run_chunk(chunk_task(own, 0, own.n_points)))
    assert not np.array_equal(theirs["s_total_time_s"], here["s_total_time_s"])
    # a trace edited between the hash and the chunks: refused, never simulated under the old hash
    monkeypatch.chdir(drv)
    plan = make_plan(SWEEP, results_dir=tmp_path / "results")
    _trace_like_the_projects(drv / TRACE, seed=3)
    with pytest.raises(ConfigError, match="changed after the run's config hash"):
        chunk_task(plan, 0, plan.n_points)


def test_plugin_code_other_than_hashed_is_refused(tmp_path, monkeypatch):
    """A process whose plug-in module is not the one the driver hashed refuses the chunk, and
    so does one that imported the module before it was edited (it runs the old code)."""
    from lmtoolkit.sweep.execute import chunk_task, run_chunk
    from lmtoolkit.sweep.plan import make_plan

    module = f"lmt_test_plug_{os.getpid()}_{time.monotonic_ns()}"
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # (an edit of the same size, same second)
    f = _plugin(tmp_path / "plug", module, 10.0)
    monkeypatch.syspath_prepend(str(f.parent))
    monkeypatch.delitem(sys.modules, module, raising=False)
    ov = [
        "experiment=quickstart",
        "debug=default",
        "sweep.axes.policy.values=[custom]",
        f"policy._target_={module}.ShrinkOrStopPolicy",
        f"paths.results_dir={tmp_path / 'results'}",
    ]
    plan = make_plan(ov)
    task = chunk_task(plan, 0, 1)
    assert [m for m, _, _ in task.plugins[f"{module}.ShrinkOrStopPolicy"]] == [module]
    run_chunk(task)  # the same code: runs
    other = pickle.loads(pickle.dumps(task))
    (mod, path, digest), *_ = other.plugins[f"{module}.ShrinkOrStopPolicy"]
    other.plugins[f"{module}.ShrinkOrStopPolicy"] = ((mod, "/elsewhere/p.py", "0" * 64),)
    with pytest.raises(ConfigError, match=rf"policy._target_=.*other plug-in code.*module {module}"):
        run_chunk(other)
    # edited after this process imported it: the hash of the new file would certify old code
    f.write_text(f.read_text().replace("min_shrink_pct: float = 10.0", "min_shrink_pct: float = 50.0"))
    with pytest.raises(ConfigError, match=rf"module {module} changed on disk after process"):
        make_plan(ov)
    monkeypatch.delitem(sys.modules, module)  # imported anew: its new code is what runs
    make_plan(ov)


def test_lmtoolkit_code_other_than_hashed_is_refused(tmp_path):
    """A chunk carries the driver's code hash; a process whose lmtoolkit is other code (another
    install or version on a worker's machine) refuses it before it simulates."""
    import dataclasses

    from lmtoolkit import provenance
    from lmtoolkit.sweep.execute import chunk_task, run_chunk
    from lmtoolkit.sweep.plan import make_plan

    plan = make_plan(["experiment=quickstart", "debug=default", f"paths.results_dir={tmp_path}"])
    task = chunk_task(plan, 0, 1)
    assert task.code == provenance.code_hash() and plan.config_hash
    run_chunk(pickle.loads(pickle.dumps(task)))  # the same code: runs
    other = pickle.loads(pickle.dumps(dataclasses.replace(task, code="0123456789abcdef")))
    here = provenance.code_hash()[:12]
    with pytest.raises(
        ConfigError, match=rf"runs other lmtoolkit code than the driver hashed: code {here} here"
    ):
        run_chunk(other)


def test_cache_false_recomputes_partial_chunks_of_an_earlier_run(tmp_path, monkeypatch):
    """``sweep.cache=false`` always recomputes: it resumed an interrupted run's .partial chunks
    (23 of 60 in the report), which after a library upgrade hold the old library's numbers."""
    import importlib

    from lmtoolkit.sweep.execute import run_inline

    sweep_run = importlib.import_module("lmtoolkit.sweep.run")  # (lmtoolkit.sweep.run: the function)

    ov = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1", f"paths.results_dir={tmp_path}"]

    def dies_after_3(chunks, done, settings):
        run_inline(chunks[:3], done, settings)
        raise KeyboardInterrupt

    monkeypatch.setitem(sweep_run.EXECUTORS, "inline", dies_after_3)
    with pytest.raises(KeyboardInterrupt):
        sweep_run.run(ov)
    monkeypatch.undo()
    kept = sorted(tmp_path.rglob(".partial/*/chunk-*.npz"))
    assert len(kept) == 3
    for f in kept:  # another library's numbers
        with np.load(f) as z:
            arrays = {k: (z[k] * 3 if z[k].dtype.kind == "f" else z[k]) for k in z.files}
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)
    lines = []
    ds, info = sweep_run.run([*ov, "sweep.cache=false"], log=lines.append)
    assert info["chunks_reused"] == 0 and info["chunks_computed"] == info["chunks"] == 8
    assert any("sweep.cache=false: discarded 3 partial chunk(s)" in m for m in lines), lines
    assert not any(m.startswith("resuming") for m in lines), lines
    assert not list(tmp_path.rglob(".partial/*"))
    clean, _ = sweep_run.run([*ov[:-1], f"paths.results_dir={tmp_path / 'clean'}"])
    xr.testing.assert_identical(ds.drop_attrs(), clean.drop_attrs())


# -- a real scheduler and worker, in another working directory, with their own files ------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(run):
    from lmtoolkit.sweep import read_result

    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith(("wrote ", "dataset ")))
    return read_result(line.split(" ", 1)[1].strip())


@pytest.mark.slow
def test_a_remote_dask_worker_simulates_the_drivers_files(tmp_path):
    """``dask scheduler`` and ``dask worker`` run in an empty directory of their own, the driver
    (lmtk sweep) in another that holds its own trace under the project trace's name: the Dask
    run gives the inline run's numbers under the same hash.  A plug-in module of the worker's
    that is not the driver's is refused in one line."""
    drv, wk = tmp_path / "drv", tmp_path / "wk"
    wk.mkdir()
    _trace_like_the_projects(drv / TRACE, seed=1)
    _plugin(drv / "plug", "lmt_remote_same", 10.0)
    _plugin(wk / "plug", "lmt_remote_same", 10.0)  # the same file content at another path
    _plugin(drv / "plug", "lmt_remote_other", 10.0)
    _plugin(wk / "plug", "lmt_remote_other", 60.0)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    wenv = dict(os.environ, PYTHONPATH=f"{ROOT}:{wk / 'plug'}")
    cmds = [
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(port), "--no-dashboard"],
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"],
    ]
    procs = []
    try:
        for cmd in cmds:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=wk,
                    env=wenv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            time.sleep(1)
        from distributed import Client

        with Client(address, timeout="60s") as c:
            c.wait_for_workers(1, timeout=120)
        env = dict(os.environ, PYTHONPATH=f"{ROOT}:{drv / 'plug'}", LMT_RESULTS_DIR=str(tmp_path / "r"))
        dask = ["sweep.executor=dask", f"sweep.dask_address={address}"]
        args = ["sweep", *SWEEP, "sweep.cache=false", "--no-plot", "-q"]
        inline, remote = _result(lmtk(args, env, drv)), _result(lmtk(args + dask, env, drv))
        assert remote.attrs["lmt_config_hash"] == inline.attrs["lmt_config_hash"]
        xr.testing.assert_identical(remote.drop_attrs(), inline.drop_attrs())
        # plug-ins: the same content at another path runs; other content is refused
        plug = ["sweep", "experiment=quickstart", "debug=default", "sweep.axes.policy.values=[custom]"]
        plug += ["sweep.cache=false", "--no-plot", "-q", *dask]
        same = lmtk([*plug, "policy._target_=lmt_remote_same.ShrinkOrStopPolicy"], env, drv)
        assert same.returncode == 0, same.stderr
        bad = lmtk([*plug, "policy._target_=lmt_remote_other.ShrinkOrStopPolicy"], env, drv)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        err = bad.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("lmtk: error: policy._target_="), err
        assert "other plug-in code than the driver hashed" in err and str(wk / "plug") in err, err
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# -- a worker that imported lmtoolkit before it was edited ------------------------------------
def _local_cluster(src: Path):
    """A LocalCluster of one worker process that imports lmtoolkit from ``src`` (a spawned
    worker starts with this process's ``sys.path``)."""
    from distributed import LocalCluster

    sys.path.insert(0, str(src))
    try:
        return LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
    finally:
        sys.path.remove(str(src))


@pytest.mark.slow
def test_a_dask_worker_running_lmtoolkit_older_than_its_files_refuses(tmp_path, monkeypatch):
    """A copy of the package on the driver's and the worker's path; the worker of a LocalCluster
    imports it, then a rule of the copy is edited (every switchover 2 s longer).  The next sweep
    through the same cluster is refused in one line and writes nothing: the worker used to
    compute the old rule's numbers and the driver stored them under the new code's hash (total
    time 9.43 s where that code gives 11.43 s).  So is a worker whose install is other code.  A
    fresh cluster computes the new rule's numbers."""
    import hashlib

    monkeypatch.setenv("LMT_CONFIG_DIR", str(config_dir()))  # (the copy has no configs/ beside it)
    src, env = package_copy(tmp_path, results="r")
    args = ["sweep", "experiment=quickstart", "debug=default", "engine=fluid", "sweep.chunk_size=1"]
    args += ["sweep.cache=false", "--no-plot", "-q"]

    def sweep(cluster):
        return lmtk(
            [*args, "sweep.executor=dask", f"sweep.dask_address={cluster.scheduler_address}"], env, tmp_path
        )

    with _local_cluster(src) as cluster:
        run = sweep(cluster)
        first = _result(run)
        out = Path(next(x for x in run.stdout.splitlines() if x.startswith("wrote ")).split(" ", 1)[1])
        slower_switchover(src)
        written = hashlib.sha256(out.read_bytes()).hexdigest()
        stale = sweep(cluster)
        assert stale.returncode == 2 and "Traceback" not in stale.stderr, (stale.stdout, stale.stderr)
        err = stale.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("lmtk: error: lmtoolkit: "), err
        assert "engine/common.py changed on disk after process" in err and "Dask worker tcp://" in err, err
        assert "restart the Dask workers" in err, err
        # nothing written: the result is the first run's, no chunk kept for a resume
        assert hashlib.sha256(out.read_bytes()).hexdigest() == written
        assert not list((tmp_path / "r").rglob(".partial/*/chunk-*.npz"))
    # a worker whose own install is other code (the checkout: the copy before its edit)
    with _local_cluster(ROOT) as cluster:
        other = sweep(cluster)
    assert other.returncode == 2 and "Traceback" not in other.stderr, (other.stdout, other.stderr)
    with _local_cluster(src) as cluster:
        fresh = _result(sweep(cluster))
    inline = _result(lmtk(args, env, tmp_path))
    h1, h2 = first.attrs["lmt_code_hash"], fresh.attrs["lmt_code_hash"]
    assert h2 == inline.attrs["lmt_code_hash"] != h1
    assert f"(code {h1[:12]}; the driver hashed {h2[:12]})" in err, err
    mixed = other.stderr.strip()
    assert len(mixed.splitlines()) == 1 and "runs other lmtoolkit code than the driver hashed" in mixed
    assert f"code {h1[:12]} here ({ROOT / 'lmtoolkit'}), {h2[:12]} on the driver" in mixed, mixed
    xr.testing.assert_identical(fresh.drop_attrs(), inline.drop_attrs())
    ok = first.completed.values
    assert ok.any() and (fresh.total_time.values[ok] > first.total_time.values[ok] + 1.9).all()
