"""Sweeps end to end: every experiment under debug, schema, cache, resume, executors, multirun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from lmtoolkit.dataset import validate
from lmtoolkit.paths import config_dir

pytestmark = pytest.mark.integration
EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
ROOT = config_dir().parent


def _run(overrides, tmp_path=None):
    from lmtoolkit.sweep import run

    ov = list(overrides)
    if tmp_path is not None:
        ov.append(f"paths.results_dir={tmp_path}")
    return run(ov)


def _data(ds):
    """The Dataset without attributes that legitimately differ between runs (time, command)."""
    return ds.drop_attrs()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_under_debug(name, tmp_path):
    ds, info = _run([f"experiment={name}", "debug=default", "sweep.progress=false"], tmp_path)
    validate(ds)
    plan = info["plan"]
    dims = [a.dim for a in plan.axes]
    assert ds.attrs["lmt_task"] == plan.task
    if plan.task == "evacuation":  # one evacuation per point: dim vm
        assert list(ds["makespan"].dims) == dims + ["replicate"]
        assert ds["end"].dims == tuple(dims + ["replicate", "vm"]) and ds.sizes["vm"] > 1
    else:
        assert list(ds["total_time"].dims) == dims + ["replicate"]
        assert "round" in ds.dims and ds["round_bytes"].dims[-1] == "round"
    for d in dims + ["replicate"]:
        assert "long_name" in ds[d].attrs
        if ds[d].dtype.kind in "fiub":
            assert "units" in ds[d].attrs, d
    for a in plan.axes:
        assert ds[a.dim].attrs["lmt_key"] == a.key
        if a.group:
            assert list(ds[a.dim].values) == a.values
    done = ds.end if plan.task == "evacuation" else ds.total_time
    assert np.isfinite(done.values[ds.completed.values]).all()
    # provenance: string attrs + provenance.yaml beside the file
    for k in (
        "lmt_config",
        "lmt_overrides",
        "lmt_config_hash",
        "lmt_git_commit",
        "lmt_versions",
        "lmt_created_at",
        "title",
        "source",
        "history",
    ):
        assert isinstance(ds.attrs[k], str) and ds.attrs[k], k
    assert ds.attrs["lmt_experiment"] == name
    out = info["path"]
    assert out == tmp_path / name / f"{name}.nc" and out.exists()
    prov = yaml.safe_load((out.parent / "provenance.yaml").read_text())
    assert prov["config_hash"] == ds.attrs["lmt_config_hash"] == info["config_hash"]
    assert prov["experiment"] == name and prov["config"]["sweep"]["axes"]
    assert not (out.parent / ".partial").exists()
    from lmtoolkit.sweep import read_result

    xr.testing.assert_identical(read_result(out), ds)


def test_quickstart_page_engine_differs_by_seed(tmp_path):
    ds, _ = _run(["experiment=quickstart", "debug=default", "sweep.replicates=2"], tmp_path)
    assert ds.sizes["replicate"] == 2 and len(np.unique(ds.seed.values)) == ds.seed.size
    assert ds.attrs["lmt_engine"] == "page"


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    from lmtoolkit.sweep import execute as mod

    calls = []
    real = mod.run_chunk
    monkeypatch.setattr(mod, "run_chunk", lambda t: calls.append(t.start) or real(t))
    base = ["experiment=quickstart", "debug=default"]
    ds1, i1 = _run(base, tmp_path)
    n = len(calls)
    assert not i1["cached"] and n == i1["chunks"] > 0
    # same config (run-time settings may differ): served from disk, nothing simulated
    ds2, i2 = _run(base + ["sweep.chunk_size=1", "sweep.progress=false"], tmp_path)
    assert i2["cached"] and len(calls) == n
    xr.testing.assert_identical(ds1, ds2)
    mtime = i1["path"].stat().st_mtime_ns
    # a different config: recomputed into a variant; the canonical result stays as it was
    ds3, i3 = _run(base + ["sweep.axes.dirty_rate.values=[2000,5000]"], tmp_path)
    assert not i3["cached"] and len(calls) > n and i3["config_hash"] != i1["config_hash"]
    assert i3["path"] != i1["path"] and i3["path"].parent.parent.name == "variants"
    assert i1["path"].stat().st_mtime_ns == mtime
    _, i1b = _run(base, tmp_path)
    assert i1b["cached"]
    # and the cache can be bypassed
    _, i4 = _run(base + ["sweep.axes.dirty_rate.values=[2000,5000]", "sweep.cache=false"], tmp_path)
    assert not i4["cached"]


def test_an_override_that_changes_nothing_is_the_canonical_result(tmp_path):
    """Canonical or variant is decided by the composed config, not by the presence of
    overrides: ``engine=fluid`` on a fluid experiment, ``seed=0`` or an axis's own values were
    recomputed into a variant of the same config hash ("overrides change its points")."""
    base = ["experiment=bandwidth_vs_dirty_rate", "debug=default"]
    same = ["engine=fluid", "seed=0", "sweep.axes.bandwidth.values=[1,2.5,5,10,25,40,100]"]
    # computed afresh with such an override: written as the canonical result
    ds, first = _run(base + [same[0]], tmp_path)
    canonical = tmp_path / "bandwidth_vs_dirty_rate" / "bandwidth_vs_dirty_rate.nc"
    assert first["path"] == canonical and not first["cached"] and ds.attrs["lmt_variant"] == ""
    for o in [[]] + [[x] for x in same]:
        _, info = _run(base + o, tmp_path)
        assert info["cached"] and info["path"] == canonical and info["plan"].variant is None, o
        assert info["config_hash"] == first["config_hash"], o
    assert not (canonical.parent / "variants").exists()
    _, other = _run(base + ["seed=1", "engine=page"], tmp_path)  # (fluid: seeds change nothing)
    assert other["plan"].variant and other["path"].parent.parent.name == "variants"


def test_a_local_file_that_changes_the_points_writes_a_variant(tmp_path, monkeypatch):
    """configs/local/default.yaml with ``network: {latency_ms: 50}`` replaced the canonical
    result unnoticed (downtimes 348 vs 299 ms, lmt_variant '', lmt_overrides
    ["experiment=walk"]): what it changes is a variant, and its provenance names the file."""
    import shutil

    cfgs = tmp_path / "configs"
    shutil.copytree(config_dir(), cfgs)
    (cfgs / "local" / "default.yaml").unlink(missing_ok=True)
    monkeypatch.setenv("LMT_CONFIG_DIR", str(cfgs))
    base = ["experiment=bandwidth_vs_dirty_rate", "debug=default"]
    canonical, first = _run(base, tmp_path / "r")
    mtime = first["path"].stat().st_mtime_ns
    local = cfgs / "local" / "default.yaml"
    local.write_text("# @package _global_\nnetwork: {latency_ms: 50.0}\n")
    ds, info = _run(base, tmp_path / "r")
    plan = info["plan"]
    assert not info["cached"] and plan.variant and info["path"].parent.parent.name == "variants"
    assert plan.variant_reason == "configs/local/default.yaml changes its points"
    assert first["path"].stat().st_mtime_ns == mtime  # the canonical result stays as it was
    ok = canonical.completed.values
    assert (ds.downtime.values[ok] > canonical.downtime.values[ok] + 0.04).all()  # 50 ms more
    assert ds.attrs["lmt_local_file"] == "configs/local/default.yaml"
    assert "latency_ms: 50.0" in ds.attrs["lmt_local_config"]
    prov = yaml.safe_load((info["path"].parent / "provenance.yaml").read_text())
    assert prov["local_file"] == "configs/local/default.yaml" and prov["variant"] == plan.variant
    assert prov["variant_reason"] == plan.variant_reason
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.plotting.make import make_figure

    with pytest.raises(ConfigError, match="experiment bandwidth_vs_dirty_rate's is a variant .*local"):
        make_figure("fig02", base + [f"paths.results_dir={tmp_path / 'r'}"], thumbnails=tmp_path / "img")
    # with an override too: each named only if it changes the points
    _, both = _run(base + ["engine=page"], tmp_path / "r")
    assert both["plan"].variant_reason == "overrides and configs/local/default.yaml change its points"
    _, undone = _run(base + ["network.latency_ms=0.1"], tmp_path / "r")  # (10gbe's own latency)
    from lmtoolkit.sweep import make_plan

    adhoc = make_plan(["+sweep.axes.bw={key: network.bandwidth_gbit_s, values: [1, 10]}"], expand=False)
    assert adhoc.variant_reason == (  # no experiment: no canonical config composed
        "overrides change its points; configs/local/default.yaml sets more than how it runs"
    )
    assert undone["cached"] and undone["path"] == first["path"]
    # a local file of run-time settings only: the canonical result
    local.write_text("# @package _global_\nsweep: {executor: inline, chunk_size: 7}\n")
    _, same = _run(base, tmp_path / "r")
    assert same["cached"] and same["path"] == first["path"] and same["plan"].variant is None


def test_resume_computes_only_missing_chunks(tmp_path, monkeypatch):
    """An interrupted sweep (exception after 3 chunks) resumes from its partial files."""
    from lmtoolkit.sweep import execute as mod

    base = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1"]
    ref, _ = _run(base, tmp_path / "ref")
    real = mod.run_chunk
    done = []

    def dying(task):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(task.start)
        return real(task)

    monkeypatch.setattr(mod, "run_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(base, tmp_path / "run")
    partial = list((tmp_path / "run" / "quickstart").glob(".partial/*/chunk-*.npz"))
    assert len(partial) == 3
    assert not (tmp_path / "run" / "quickstart" / "quickstart.nc").exists()
    computed = []
    monkeypatch.setattr(mod, "run_chunk", lambda t: computed.append(t.start) or real(t))
    ds, info = _run(base, tmp_path / "run")
    assert info["chunks_reused"] == 3 and info["chunks_computed"] == info["chunks"] - 3
    assert sorted(computed) == sorted(set(range(info["points"])) - set(done))
    xr.testing.assert_identical(_data(ds), _data(ref))


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, monkeypatch):
    """`lmtk sweep` killed with SIGKILL mid-way; the rerun computes only the missing chunks."""
    from lmtoolkit.sweep import make_plan

    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path / "run"))
    ov = ["experiment=quickstart", "sweep.chunk_size=1", "sweep.replicates=2"]
    cmd = [sys.executable, "-m", "lmtoolkit.cli", "sweep", *ov, "--no-plot", "-q"]
    # where the CLI writes (an experiment run with other settings goes to variants/<hash>/)
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "run"))
    out_dir = make_plan(ov).out_path.parent
    part = out_dir / ".partial"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("*/chunk-*.npz"))) < 4:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(part.glob("*/chunk-*.npz")))
    assert not (out_dir / "quickstart.nc").exists()
    assert 4 <= kept < 32
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert f"computed {32 - kept} of 32 chunks, {kept} resumed from .partial" in out.stdout
    prov = yaml.safe_load((out_dir / "provenance.yaml").read_text())
    assert prov["run"]["chunks_reused"] == kept and prov["run"]["chunks_computed"] == 32 - kept
    from lmtoolkit.sweep import read_result

    resumed = read_result(out_dir / "quickstart.nc")
    ref, _ = _run(["experiment=quickstart", "sweep.replicates=2"], tmp_path / "ref")
    xr.testing.assert_identical(_data(resumed), _data(ref))


def test_partial_files_are_atomic(tmp_path):
    """A half-written chunk (a stray temp file) is never taken as a result."""
    from lmtoolkit.sweep import make_plan

    base = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1", f"paths.results_dir={tmp_path}"]
    plan = make_plan(base)
    d = plan.out_path.parent / ".partial" / plan.config_hash
    d.mkdir(parents=True)
    (d / ".chunk-0000000000-0000000001.npz.abc.tmp").write_bytes(b"garbage")
    (d / "chunk-0000000001-0000000002.npz").write_bytes(b"truncated")  # damaged: recomputed
    ds, info = _run(base)
    assert info["chunks_reused"] == 0 and info["chunks_computed"] == info["chunks"]
    validate(ds)


def test_partial_chunks_are_removed_once_the_result_is_in_place(tmp_path):
    """``.partial/<hash>/`` stayed for good when the result was then served from the cache (14 MB
    beside a stored fluid_map_100k), and when the code changed since an interrupted run.  Now
    the result's own partials go once it is in place (served or written), those of older code
    too unless a live process writes them; those written before code hashes were recorded
    stay, named with their size in one note."""
    from lmtoolkit.sweep import run

    base = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1", "sweep.progress=false"]
    base.append(f"paths.results_dir={tmp_path}")
    _, info = run(base)
    plan = info["plan"]
    root = plan.out_path.parent / ".partial"
    assert info["chunks"] > 1 and not root.exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    host = socket.gethostname()

    def leftover(name, code=None, pid=None):
        d = root / name
        d.mkdir(parents=True)
        (d / "chunk-0000000000-0000000001.npz").write_bytes(b"x" * 2**20)
        if code:
            (d / "code_hash").write_text(code)
        if pid:
            (d / f".run.{pid}@{host}").touch()

    def leftovers():
        leftover(plan.config_hash, plan.code_hash)  # this result's: served from the cache
        leftover("a" * 16, "older")  # an interrupted run of older code
        leftover("b" * 16, "older", pid=int(gone.stdout))  # ... killed (its process is gone)
        leftover("c" * 16, "older", pid=os.getppid())  # ... still writing (a live process)
        leftover("d" * 16)  # written before code hashes were recorded: cannot tell

    leftovers()
    _, again = run(base)
    assert again["cached"]
    assert sorted(p.name for p in root.iterdir()) == ["c" * 16, "d" * 16]
    assert again["partials_note"] == (
        f"note: 2 partial result(s) of other runs left in {root} (2.0 MiB: {'c' * 16}, {'d' * 16}): "
        "written by older code or by a run that may still be going on; remove them by hand if none is"
    )
    for d in root.iterdir():
        shutil.rmtree(d)
    leftovers()
    _, fresh = run([*base, "sweep.cache=false"])  # computed and written
    assert fresh["chunks_computed"] == fresh["chunks"] and not fresh["cached"]
    assert sorted(p.name for p in root.iterdir()) == ["c" * 16, "d" * 16]


#: a sweep that hangs just before renaming its result into place (then is killed there)
_KILLED_MID_WRITE = """
import os, sys, time
from pathlib import Path
import lmtoolkit as lmt

real = os.replace
def hang(src, dst):
    if Path(dst).name == "quickstart.nc":
        Path(sys.argv[1]).write_text("writing")
        time.sleep(120)
    return real(src, dst)
os.replace = hang
lmt.sweep(["experiment=quickstart", "debug=default", "paths.results_dir=" + sys.argv[2]])
"""


def test_a_writer_killed_mid_write_leaves_no_temp_file_for_good(tmp_path):
    """SIGKILL while the result was being written left its temporary file (as large as the
    result: 6 MB for fluid_map_100k's netCDF) beside it for good; every later run added none
    but removed none.  The next write of that file removes what a dead writer left."""
    from lmtoolkit.sweep import make_plan

    marker = tmp_path / "writing"
    base = ["experiment=quickstart", "debug=default", f"paths.results_dir={tmp_path / 'r'}"]
    out = make_plan(base, expand=False).out_path
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_MID_WRITE, str(marker), str(tmp_path / "r")])
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
        left = list(out.parent.glob(".quickstart.nc.*.tmp"))
        assert len(left) == 1 and left[0].stat().st_size > 0  # the half-written result
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    ds, info = _run(base)
    assert info["chunks_reused"] == info["chunks"]  # (its chunks were kept: resumed)
    assert sorted(p.name for p in out.parent.iterdir()) == ["provenance.yaml", "quickstart.nc"]
    live = out.parent / f".quickstart.nc.{os.getpid()}@{socket.gethostname()}~x.tmp"
    live.write_text("a live writer's")  # this process's: kept
    assert _run([*base, "sweep.cache=false"])[1]["chunks_computed"] > 0 and live.exists()


@pytest.mark.parametrize("engine", ["netcdf4", "h5netcdf"])
def test_both_netcdf_writers_read_back_identical(engine, tmp_path, monkeypatch):
    """netCDF4-python (the default writer) and h5netcdf (the fallback where it is missing)
    write files that read back as the sweep's Dataset, every variable, dtype, unit and
    attribute included (strings, flags, booleans, provenance)."""
    from lmtoolkit import io

    ds, info = _run(["experiment=quickstart", "debug=default", "sweep.cache=false"], tmp_path)
    assert io.netcdf_write_engine() == "netcdf4"  # installed with the package
    monkeypatch.setattr(io, "netcdf_write_engine", lambda: engine)
    path = io.write_dataset(ds, tmp_path / f"copy-{engine}.nc")
    back = io.read_dataset(path)
    xr.testing.assert_identical(back, ds)
    for k in ds.variables:
        assert back[k].dtype == ds[k].dtype, k
    validate(back)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_kind_stays_integer_under_a_plain_open_dataset(suffix, tmp_path):
    """``round_kind``'s -1 (after a point's last round) is a flag of its own, not a _FillValue:
    a plain ``xr.open_dataset`` (no lmtoolkit reader) keeps the int8 codes, -1 included,
    instead of decoding them to floats with NaN; ``flag_values``/``flag_meanings`` name all."""
    from lmtoolkit import io

    ds, _ = _run(["experiment=quickstart", "debug=default", "sweep.cache=false"], tmp_path)
    assert (ds.round_kind.values == -1).any()  # padded rounds exist in this sweep
    path = io.write_dataset(ds, tmp_path / f"plain{suffix}")
    with xr.open_dataset(path, engine="zarr" if suffix == ".zarr" else None) as plain:
        kind = plain.round_kind.load()
    assert kind.dtype == np.int8
    np.testing.assert_array_equal(kind.values, ds.round_kind.values)
    meanings = dict(zip(np.asarray(kind.attrs["flag_values"]).tolist(), kind.attrs["flag_meanings"].split()))
    assert meanings == {0: "precopy", 1: "stop", 2: "postcopy", -1: "none"}


def test_executor_equivalence_inline_processes_dask_address(tmp_path):
    """Same Dataset from inline, a process pool and a Dask cluster given by address."""
    from distributed import LocalCluster

    base = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1", "sweep.cache=false"]
    inline, _ = _run(base, tmp_path)
    procs, _ = _run(base + ["sweep.executor=processes", "sweep.workers=2"], tmp_path)
    xr.testing.assert_identical(_data(inline), _data(procs))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dsk, info = _run(
            base + ["sweep.executor=dask", f"sweep.dask_address={cluster.scheduler_address}"], tmp_path
        )
    assert info["chunks_computed"] == info["chunks"] == 8
    xr.testing.assert_identical(_data(inline), _data(dsk))
    # the fluid path too (vectorised columns per chunk, any chunking)
    fb = ["experiment=memory_scaling", "debug=default", "sweep.cache=false"]
    a, _ = _run(fb + ["sweep.chunk_size=3"], tmp_path)
    b, _ = _run(fb + ["sweep.executor=processes", "sweep.workers=2", "sweep.chunk_size=3"], tmp_path)
    xr.testing.assert_identical(_data(a), _data(b))
    # another chunking batches other points together: equal up to float rounding (~1e-16)
    whole, _ = _run(fb, tmp_path)
    xr.testing.assert_allclose(_data(whole), _data(a), rtol=1e-12)


def test_workers_default_to_the_cores_the_process_may_use(monkeypatch):
    """sweep.workers=null took os.cpu_count(), the machine's cores: a SLURM job given 2 CPUs
    on a 128-core node started 128 worker processes on its 2 (and `lmtk figures` chose the
    process pool under `taskset -c 0`)."""
    from lmtoolkit.sweep import execute

    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5}, raising=False)
    assert execute.workers({"workers": None}) == 2
    assert execute.workers({"workers": 8}) == 8
    monkeypatch.delattr(os, "sched_getaffinity")  # (macOS, Windows)
    assert execute.workers({"workers": None}) == 128


@pytest.mark.slow
def test_dask_local_cluster_real_processes(tmp_path):
    """sweep.dask_address=null starts a distributed.LocalCluster (2 worker processes)."""
    base = ["experiment=quickstart", "debug=default", "sweep.chunk_size=1", "sweep.cache=false"]
    inline, _ = _run(base, tmp_path)
    dsk, info = _run(base + ["sweep.executor=dask", "sweep.workers=2"], tmp_path)
    assert info["chunks_computed"] == 8
    xr.testing.assert_identical(_data(inline), _data(dsk))


def test_zarr_format(tmp_path):
    """A zarr result reads back exactly as written, strings and flags included, and writing it
    warns of nothing (zarr format 2: no type whose encoding the format does not define)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds, info = _run(
            ["experiment=bandwidth_vs_dirty_rate", "debug=default", "sweep.format=zarr"], tmp_path
        )
    assert info["path"].suffix == ".zarr" and info["path"].is_dir()
    assert (info["path"] / ".zmetadata").is_file()  # consolidated, format 2
    from lmtoolkit.io import read_dataset

    back = read_dataset(info["path"])
    xr.testing.assert_identical(_data(back), _data(ds))
    assert back["stop_reason"].dtype.kind == "U"
    _, again = _run(["experiment=bandwidth_vs_dirty_rate", "debug=default", "sweep.format=zarr"], tmp_path)
    assert again["cached"]
    from lmtoolkit.sweep import read_result

    xr.testing.assert_allclose(
        read_result(info["path"])[["total_time", "downtime"]], ds[["total_time", "downtime"]]
    )


@pytest.mark.parametrize("first,then", [("netcdf", "zarr"), ("zarr", "netcdf")])
def test_switching_the_format_converts_the_result_and_keeps_one_file(tmp_path, monkeypatch, first, then):
    """sweep.format is a run-time setting (left out of the hash), yet switching it recomputed
    and left walk.zarr beside walk.nc under one provenance.yaml describing only the .nc.  Now
    the stored result is served converted (nothing simulated), written in the new format, and
    the other file removed; provenance.yaml describes the file that is there."""
    from lmtoolkit.io import file_digest, read_dataset
    from lmtoolkit.sweep import execute as mod

    calls = []
    real = mod.run_chunk
    monkeypatch.setattr(mod, "run_chunk", lambda t: calls.append(t.start) or real(t))
    base = ["experiment=bandwidth_vs_dirty_rate", "debug=default"]
    ds, a = _run(base + [f"sweep.format={first}"], tmp_path)
    n = len(calls)
    conv, b = _run(base + [f"sweep.format={then}"], tmp_path)
    assert b["cached"] and b["converted_from"] == a["path"] and len(calls) == n  # nothing simulated
    folder = b["path"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(["provenance.yaml", b["path"].name])
    prov = yaml.safe_load((folder / "provenance.yaml").read_text())
    assert prov["file"] == b["path"].name and prov["file_sha256"] == file_digest(b["path"])
    assert prov["converted_from"]["file"] == a["path"].name and prov["config_hash"] == a["config_hash"]
    fresh, _ = _run(base + [f"sweep.format={then}"], tmp_path / "fresh")
    back = read_dataset(b["path"])
    xr.testing.assert_identical(_data(back), _data(fresh))
    assert {v: back[v].dtype for v in back.variables} == {v: fresh[v].dtype for v in fresh.variables}
    assert "(converted from " in back.attrs["history"].splitlines()[0]
    _, c = _run(base + [f"sweep.format={then}"], tmp_path)
    assert c["cached"] and "converted_from" not in c
    # recomputed in the first format: the other file goes again
    _, d = _run(base + [f"sweep.format={first}", "sweep.cache=false"], tmp_path)
    assert not d["cached"] and sorted(p.name for p in folder.iterdir()) == sorted(
        ["provenance.yaml", a["path"].name]
    )


def test_worker_errors_surface_as_config_errors(tmp_path):
    import pickle

    from lmtoolkit.errors import ConfigError

    e = pickle.loads(pickle.dumps(ConfigError("vm.memory_gib", -1, "must be > 0")))
    assert e.key == "vm.memory_gib" and str(e) == "vm.memory_gib=-1 is not allowed: must be > 0"


def test_cli_sweep_prints_table_and_writes_figure(tmp_path, capsys):
    from lmtoolkit.cli import main

    assert main(["sweep", "experiment=quickstart", "debug=default"]) == 0
    out = capsys.readouterr().out
    assert "experiment quickstart: 8 points" in out and "total time [s]" in out
    res = Path(os.environ["LMT_RESULTS_DIR"]) / "debug" / "quickstart"
    assert (res / "quickstart.nc").exists() and (res / "provenance.yaml").exists()
    assert (res / "quickstart.png").stat().st_size > 10_000
    assert main(["sweep", "experiment=quickstart", "debug=default", "--no-plot"]) == 0
    assert "served from cache" in capsys.readouterr().out


def test_python_api_sweep_is_exported():
    import lmtoolkit as lmt

    ds = lmt.sweep(["experiment=auto_converge", "debug=default"])
    assert set(ds["total_time"].dims) == {"auto_converge", "network", "dirty_rate", "replicate"}
    assert ds.auto_converge.dtype == bool


# ---- Hydra multirun + collect ----------------------------------------------------------------
def _multirun(tmp_path, extra, launcher=None):
    from lmtoolkit.cli import main

    sweep_dir = tmp_path / "mr"
    argv = [
        "sweep",
        "-m",
        "experiment=quickstart",
        "debug=default",
        "sweep.axes.policy.values=[vmware]",
        "sweep.axes.network.values=[10gbe]",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]
    if launcher:
        argv.append(f"hydra/launcher={launcher}")
    assert main(argv) == 0
    return sweep_dir


def _check_collected(d, n_jobs, new_dims):
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    jobs = sorted((p for p in d.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    assert len(jobs) == n_jobs and all(list(j.rglob("quickstart.nc")) for j in jobs)
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "quickstart.nc")
    validate(ds)
    runs = json.loads(ds.attrs["lmt_runs"])
    assert len(runs) == n_jobs and (d / "provenance.yaml").exists()
    assert json.loads(ds.attrs["lmt_collected_dims"]) == new_dims
    assert ds.sizes["policy"] == 1 and ds.sizes["network"] == 1 and ds.sizes["dirty_rate"] == 2
    # each job's numbers are the job's own file's numbers
    last = read_result(next(jobs[-1].rglob("quickstart.nc")))
    ov = dict(o.split("=", 1) for o in runs[-1]["overrides"])
    sel = {new_dims[k]: (int(v) if k == "seed" else v) for k, v in ov.items() if k in new_dims}
    np.testing.assert_array_equal(ds.sel(sel).total_time.values, last.total_time.values)
    return ds


def test_multirun_basic_launcher_and_collect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["seed=1,0"])
    # where a job's result is, as the README says (it said <job>/<slug>/<slug>.nc)
    layout = "<hydra.sweep.dir>/<job num>/<slug>/variants/<hash>/<slug>.nc"
    assert layout in " ".join((ROOT / "README.md").read_text().split())
    for job in ("0", "1"):
        (f,) = (d / job).rglob("quickstart.nc")
        assert f.parent.parent == d / job / "quickstart" / "variants" and len(f.parent.name) == 12
    ds = _check_collected(d, 2, {"seed": "seed_"})  # `seed` is taken by the seed coordinate
    assert list(ds.seed_.values) == [1, 0]  # the order the jobs ran in
    assert not np.array_equal(ds.total_time.isel(seed_=0).values, ds.total_time.isel(seed_=1).values)


def test_multirun_over_a_policy_key(tmp_path, monkeypatch):
    """policy.KEY=a,b in a multirun: Hydra refused it ("not in struct": policy files list only
    what differs from the class's defaults) while every other command takes it."""
    import lmtoolkit as lmt
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["policy.stream_helper_gbit_s=2,15"])
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "quickstart.nc")
    assert ds.stream_helper_gbit_s.values.tolist() == [2, 15]
    assert ds.stream_helper_gbit_s.attrs["units"] == "Gbit/s"  # a numeric dim's units, from the key
    one = lmt.sweep(
        [
            "experiment=quickstart",
            "debug=default",
            "sweep.axes.policy.values=[vmware]",
            "sweep.axes.network.values=[10gbe]",
            "policy.stream_helper_gbit_s=15",
            f"paths.results_dir={tmp_path / 'one'}",
        ]
    )
    np.testing.assert_array_equal(ds.total_time.sel(stream_helper_gbit_s=15).values, one.total_time.values)
    assert not np.array_equal(ds.downtime.isel(stream_helper_gbit_s=0).values, one.downtime.values)


def test_a_collected_boolean_override_is_a_coordinate_with_units(tmp_path, monkeypatch):
    """host.ecc=true,false: the collected dim is boolean, a quantity with CF units '1' like a
    boolean axis (it had none), and the file passes the schema's units rule."""
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["engine=fluid", "host.ecc=true,false"])
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "quickstart.nc")
    assert ds.ecc.dtype == bool and ds.ecc.attrs["units"] == "1" and ds.ecc.attrs["lmt_key"] == "host.ecc"
    validate(ds)


def test_a_collected_override_of_null_and_numbers_keeps_every_jobs_result(tmp_path, monkeypatch):
    """policy.max_bandwidth_mib_s=null,128: the labels became strings ('null', '128') in the
    merge, the job of 128 was then looked up by the number and collected as NaN throughout.
    Each job's result is kept, and the coordinate is numeric with NaN for null (line rate), as
    a sweep axis's."""
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    d = tmp_path / "mr"
    argv = ["sweep", "-m", "experiment=downtime_target", "sweep.max_values=1", "engine=fluid"]
    assert main([*argv, f"hydra.sweep.dir={d}", "policy.max_bandwidth_mib_s=null,128"]) == 0
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "downtime_target.nc")
    cap = ds.max_bandwidth_mib_s.values
    assert np.isnan(cap[0]) and cap[1] == 128 and ds.max_bandwidth_mib_s.attrs["units"] == "2^20 bytes/s"
    for j in range(2):
        (f,) = (d / str(j)).rglob("downtime_target.nc")
        own = read_result(f).total_time.values
        assert np.isfinite(own).all()
        np.testing.assert_array_equal(ds.total_time.isel(max_bandwidth_mib_s=j).values, own)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_multirun_launcher_plugins(tmp_path, monkeypatch, launcher):
    monkeypatch.chdir(tmp_path)
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=5"]
    d = _multirun(tmp_path, ["workload=web_server,database", "seed=0,1", *extra], launcher)
    ds = _check_collected(d, 4, {"workload": "workload", "seed": "seed_"})
    assert list(ds.workload.values) == ["web_server", "database"]


def test_fluid_replicates_are_computed_once(tmp_path, monkeypatch):
    """A fluid point does not depend on the seed: replicates are simulated once and copied."""
    from lmtoolkit.tasks import migration

    rows = []
    real = migration.simulate_fluid_columns
    monkeypatch.setattr(
        migration,
        "simulate_fluid_columns",
        lambda tpl, cols, **k: rows.append(len(next(iter(cols.values())))) or real(tpl, cols, **k),
    )
    ds, info = _run(["experiment=memory_scaling", "debug=default", "sweep.replicates=5"], tmp_path)
    assert ds.sizes["replicate"] == 5 and sum(rows) == info["points"] // 5
    x = ds.total_time.values
    assert (x == x[..., :1]).all()


# ---- what the cache key covers beyond the resolved config ----------------------------------
QS = ["experiment=quickstart", "vm.memory_gib=1", "sweep.axes.dirty_rate.values=[2000,150000]"]


def test_a_reordered_sweep_is_neither_served_nor_resumed_from_the_other_order(tmp_path):
    """The axes' order numbers the points (chunks, seeds) but the config hash sorted it away: a
    sweep interrupted and rerun with its axes reordered resumed the old chunks at the wrong
    points (hyperv/1gbe/300000 read 3.87 s where it takes 24.56 s)."""
    from lmtoolkit.sweep import make_plan

    swap = [
        "~sweep.axes.policy={key: policy, values: [vmware, hyperv]}",
        "+sweep.axes.policy={key: policy, values: [vmware, hyperv]}",
    ]
    a, b = make_plan(QS, expand=False), make_plan(QS + swap, expand=False)
    assert [x.dim for x in a.axes][0] == "policy" and [x.dim for x in b.axes][-1] == "policy"
    assert a.config_hash != b.config_hash
    _run(QS, tmp_path)
    ds, info = _run(QS + swap, tmp_path)
    assert not info["cached"]
    fresh, _ = _run(QS + swap + ["sweep.cache=false"], tmp_path / "fresh")
    xr.testing.assert_identical(_data(ds), _data(fresh))


def test_an_edited_option_of_a_swapped_group_is_not_served_from_the_cache(tmp_path, monkeypatch):
    """The resolved config holds the base option only: editing network/1gbe.yaml, which the
    network axis swaps in, was served from the cache with the old bandwidth."""
    import shutil

    from lmtoolkit.paths import config_dir

    cfgs = tmp_path / "configs"
    shutil.copytree(config_dir(), cfgs)
    monkeypatch.setenv("LMT_CONFIG_DIR", str(cfgs))
    before, _ = _run(QS, tmp_path / "r")
    f = cfgs / "network" / "1gbe.yaml"
    f.write_text(f.read_text().replace("bandwidth_gbit_s: 1.0", "bandwidth_gbit_s: 2.0"))
    after, info = _run(QS, tmp_path / "r")
    assert not info["cached"]
    t0 = before.total_time.sel(network="1gbe", dirty_rate=2000).values
    t1 = after.total_time.sel(network="1gbe", dirty_rate=2000).values
    assert (t1 < 0.7 * t0).all()  # twice the bandwidth


def test_the_cache_key_covers_the_options_an_axis_swaps_in_and_only_those(tmp_path, monkeypatch):
    """The key hashed every *.yaml of a swept group's directory: an unused network/walknet.yaml
    added beside them recomputed shared_network and replaced its result.  Now it covers the
    files each option is composed from — its own and those its defaults list includes (wan.yaml
    includes 1gbe.yaml) — and the plug-in class any of them names (custom2.yaml, defaults
    [custom], was hashed without custom's _target_)."""
    import shutil

    from lmtoolkit.sweep import make_plan

    cfgs = tmp_path / "configs"
    shutil.copytree(config_dir(), cfgs)
    monkeypatch.setenv("LMT_CONFIG_DIR", str(cfgs))
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # my_policy (policy=custom)

    def key(*ov):
        return make_plan(["experiment=shared_network", *ov], expand=False).config_hash

    wan = "sweep.axes.network.values=[wan,10gbe]"
    before, before_wan = key(), key(wan)
    (cfgs / "network" / "walknet.yaml").write_text("bandwidth_gbit_s: 3.0\n")
    assert key() == before and key(wan) == before_wan  # an option no axis swaps in
    f = cfgs / "network" / "1gbe.yaml"
    f.write_text(f.read_text() + "# edited\n")
    assert key() != before and key(wan) != before_wan  # swapped in, itself or through wan's defaults
    (cfgs / "policy" / "custom2.yaml").write_text("defaults:\n  - custom\n  - _self_\nmin_shrink_pct: 20.0\n")
    plan = make_plan(["experiment=quickstart", "sweep.axes.policy.values=[custom2,hyperv]"], expand=False)
    assert "my_policy.ShrinkOrStopPolicy" in plan.inputs.plugins


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_a_damaged_cached_result_is_recomputed_not_served(tmp_path, fmt):
    """A lost zarr chunk was served from the cache as NaN, and bytes flipped inside a netCDF
    file as other numbers (or h5py looped on them): a result whose bytes are not those written
    is recomputed."""
    ov = QS + [f"sweep.format={fmt}"]
    ds, info = _run(ov, tmp_path)
    out = info["path"]
    assert _run(ov, tmp_path)[1]["cached"]  # intact: served
    if fmt == "zarr":
        (out / "downtime" / "0.0.0.0").unlink()
    else:
        raw = bytearray(out.read_bytes())
        at = int(0.7 * len(raw))
        raw[at : at + 64] = b"\xff" * 64
        out.write_bytes(bytes(raw))
    again, info = _run(ov, tmp_path)
    assert not info["cached"]
    xr.testing.assert_identical(_data(again), _data(ds))


def test_collect_refuses_two_jobs_of_one_point(tmp_path, monkeypatch, capsys):
    """vm.vcpus=2,2.0: two jobs of one point were a 'Cannot unstack MultiIndex containing
    duplicates' traceback in lmtk collect."""
    from lmtoolkit.cli import main

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["vm.vcpus=2,2.0"])
    capsys.readouterr()
    assert main(["collect", str(d)]) == 2
    assert "ran the same point" in capsys.readouterr().err


def test_a_ctrl_c_in_a_hydra_job_ends_it_quietly(monkeypatch):
    """The Hydra child of ``lmtk sweep -m`` shares the terminal's Ctrl-C: it answers 130 with
    no KeyboardInterrupt traceback (Hydra reports only Exception)."""
    from lmtoolkit import hydra_app

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(hydra_app, "main", interrupted)
    assert hydra_app.cli() == 130


def test_a_multirun_without_a_sweep_dir_gets_one_it_can_name_and_resume_into(tmp_path, monkeypatch, capsys):
    """Hydra picks a new ``multirun/<date>/<time>`` per launch: an interrupted ``lmtk sweep -m``
    rerun had recomputed every job in a new directory.  lmtk now fixes the directory before
    launching (``hydra.sweep.dir=…``, Hydra's own pattern resolved), names it, and says how to
    resume into it; an empty one (the jobs went into the current directory) is refused."""
    import re

    from lmtoolkit import sweep_cli
    from lmtoolkit.cli import main

    ov = ["experiment=quickstart", "vm.memory_gib=1,2"]
    d, fixed = sweep_cli.multirun_dir(ov)
    assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", d), d
    assert fixed == [*ov, f"hydra.sweep.dir={d}"]
    assert sweep_cli.multirun_dir([*ov, "hydra.sweep.dir=/x/y"]) == ("/x/y", [*ov, "hydra.sweep.dir=/x/y"])
    launched = []
    monkeypatch.setattr(sweep_cli, "run_multirun", lambda o: launched.append(o) or 130)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "-m", *ov, "debug=default"]) == 130
    d = launched[0][-1].split("=", 1)[1]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lmtk: interrupted: the same command plus hydra.sweep.dir={d} resumes it (its jobs and chunks are in {d})"
    ]
    assert main(["sweep", "-m", *ov, "hydra.sweep.dir="]) == 2
    assert "hydra.sweep.dir='' is not allowed: a directory" in capsys.readouterr().err
    assert len(launched) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_mid_multirun_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    """SIGINT to ``lmtk sweep -m``'s process group (a terminal's Ctrl-C) mid-job: exit 130 and
    one line, "lmtk: interrupted" — the Hydra child had added a 60-line KeyboardInterrupt
    traceback; no temporary file is left, and the same command resumes from the job's
    .partial/ chunks, to the numbers of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    def argv(d):
        return ["sweep", "-m", "experiment=quickstart", "sweep.replicates=4", "vm.memory_gib=1,2"] + [
            f"hydra.sweep.dir={d}",
            "--no-plot",
            "-q",
        ]

    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path / "res"))
    d = tmp_path / "mr"
    p = subprocess.Popen(
        [sys.executable, "-m", "lmtoolkit.cli", *argv(d)],
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(list((d / "0").rglob(".partial/*/*.npz"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "Traceback" not in err, err
    assert (
        err.strip().splitlines()[-1]
        == f"lmtk: interrupted: the same command resumes it (its jobs and chunks are in {d})"
    )
    assert not [f for f in d.rglob("*") if f.name.endswith(".tmp")]
    assert not list((d / "1").rglob("quickstart.nc"))  # interrupted in job 0
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "res"))
    assert main(argv(d)) == 0
    assert main(argv(tmp_path / "ref")) == 0
    for job in ("0", "1"):
        got = read_result(next((d / job).rglob("quickstart.nc")))
        ref = read_result(next((tmp_path / "ref" / job).rglob("quickstart.nc")))
        for v in ("total_time", "downtime", "transferred", "rounds"):
            np.testing.assert_array_equal(got[v].values, ref[v].values)


@pytest.mark.parametrize("size", [0, 3000])
def test_collect_of_a_job_with_an_unreadable_result_is_one_error(tmp_path, capsys, size):
    """A job whose result file is cut short (a disk that filled, a copy interrupted) or empty:
    one line naming the file, exit 2 — it was an h5py traceback (OSError), exit 1."""
    from lmtoolkit.cli import main

    d = tmp_path / "mr"
    for job in ("0", "1"):
        (d / job / ".hydra").mkdir(parents=True)
        (d / job / ".hydra" / "overrides.yaml").write_text("[]\n")  # as the lmtk run below
    assert main(["run", "-o", str(d / "0" / "quickstart.nc")]) == 0
    good = (d / "0" / "quickstart.nc").read_bytes()
    (d / "1" / "quickstart.nc").write_bytes(good[:size])
    capsys.readouterr()
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    bad = d / "1" / "quickstart.nc"
    assert len(err) == 1 and err[0].startswith(f"lmtk: error: {bad}: not a readable sweep result (OSError"), (
        err
    )
    assert not (d / "quickstart.nc").exists()


def test_a_sweep_without_axes_is_one_point(tmp_path, monkeypatch, capsys):
    """``sweep.axes=null``: one point — its table row and the Dataset (the summary table was a
    traceback after the file was written, and again from the cache)."""
    from lmtoolkit.cli import main

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    args = ["sweep", "experiment=quickstart", "sweep.axes=null", "debug=default", "engine=fluid", "--no-plot"]
    for _ in range(2):  # computed, then served from the cache
        assert main(args) == 0
        out = capsys.readouterr().out
        row = next(ln for ln in out.splitlines() if ln.startswith("all "))
        assert "100%" in row


def test_coordinates_carry_the_units_their_keys_hold(tmp_path):
    """A coordinate's units come from its key: watts, joules, per-core rates, percentages (a
    value of 20 with units '1' read as 2000 %; power.idle_w and per-core rates were '1' too)."""
    ds, _ = _run(
        [
            "experiment=quickstart",
            "debug=default",
            "engine=fluid",
            "sweep.axes=null",
            "+sweep.axes.idle={key: power.idle_w, values: [100, 150]}",
            "+sweep.axes.throttle={key: policy.cpu_throttle_initial, values: [20, 40]}",
            "+sweep.axes.compress={key: host.compress_mib_s_per_core, values: [100, 200]}",
            "policy=qemu",
            "policy.auto_converge=true",
        ],
        tmp_path,
    )
    assert ds.idle.attrs["units"] == "W"
    assert ds.throttle.attrs["units"] == "percent"
    assert ds.compress.attrs["units"] == "2^20 bytes/s"  # UDUNITS: no MiB, no "per core"
    assert ds.compress.attrs["lmt_key"] == "host.compress_mib_s_per_core"


def test_an_override_inside_a_swept_group_is_noted_or_refused(tmp_path):
    """``network.bandwidth_gbit_s=2`` under an axis over ``network: [1gbe, 10gbe]`` ran every
    point at 2 Gbit/s under the names 1gbe and 10gbe, silently.  Now it is noted (printed and
    in the Dataset's ``lmt_notes``), and refused where it would leave two options alike."""
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.sweep import run

    base = ["experiment=quickstart", "debug=default", "engine=fluid", f"paths.results_dir={tmp_path}"]
    logged = []
    ds, _ = run(base + ["network.bandwidth_gbit_s=2"], log=logged.append)
    note = "network.bandwidth_gbit_s=2 replaces what the options of axis network set (1gbe: 1.0, 10gbe: 10.0"
    assert any(note in m for m in logged)
    assert note in ds.attrs["lmt_notes"]
    # both links then differ in latency only: overriding that too leaves them alike
    with pytest.raises(ConfigError, match="options 1gbe and 10gbe of axis network .* one configuration"):
        run(base + ["network.bandwidth_gbit_s=2", "network.latency_ms=1"])
    # a key the options agree on (or do not set) is a plain override: no note
    logged.clear()
    ds, _ = run(base + ["network.stream_gbit_s=30"], log=logged.append)
    assert not any("replaces" in m for m in logged) and "lmt_notes" not in ds.attrs


def test_a_key_some_points_do_not_read_runs_at_its_default_there(tmp_path):
    """``policy.smb_channels=8`` over an axis of Hyper-V transports is read by the smb point
    only (a single tcp run refuses it: it would change nothing).  The sweep runs the other
    points at the default 4, says so (printed and in ``lmt_notes``), and each point as it
    runs alone; a key no point reads is the single run's error."""
    import lmtoolkit as lmt
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.sweep import make_plan, run

    one = ["policy=hyperv", "vm.memory_gib=0.5", "workload=idle", "network=10gbe", "network.stream_gbit_s=1"]
    one += ["engine=fluid"]
    axis = "+sweep.axes.tr={key: policy.transport, values: [tcp, compression, smb]}"
    logged = []
    ds, info = run([*one, axis, "policy.smb_channels=8", f"paths.results_dir={tmp_path}"], log=logged.append)
    assert [c["policy"]["smb_channels"] for c in info["plan"].cells] == [4, 4, 8]
    note = (
        "policy.smb_channels=8 is not read at policy.transport=tcp; policy.transport=compression: "
        "those points run with its default 4"
    )
    assert any(note in m for m in logged) and note in ds.attrs["lmt_notes"]
    for t, extra in (("tcp", []), ("compression", []), ("smb", ["policy.smb_channels=8"])):
        alone = float(lmt.simulate([*one, f"policy.transport={t}", *extra]).total_time)
        assert float(ds.total_time.sel(tr=t, replicate=0)) == pytest.approx(alone, rel=1e-12)
    smb4 = float(lmt.simulate([*one, "policy.transport=smb"]).total_time)
    assert float(ds.total_time.sel(tr="smb", replicate=0)) == pytest.approx(
        smb4 / 2, rel=0.05
    )  # 8 streams, not 4
    with pytest.raises(ConfigError, match=r"^policy.smb_channels=8 is not allowed for policy hyperv"):
        make_plan([*one, axis.replace(", smb]", "]"), "policy.smb_channels=8"], results_dir=tmp_path)
    # a group axis too: the disk shared storage does not copy
    plan = make_plan(
        [*one, "+sweep.axes.st={key: storage, values: [shared, migrate]}", "storage.disk_gib=10"],
        results_dir=tmp_path,
    )
    assert [c["storage"]["disk_gib"] for c in plan.cells] == [40.0, 10.0]
    assert plan.notes == [
        "storage.disk_gib=10 is not read at storage=shared: those points run with its default 40.0 "
        "(it would change nothing there), the others with 10"
    ]


def test_values_are_checked_at_the_points_that_run_them_not_at_the_base(tmp_path):
    """Background 5 Gbit/s under a bandwidth axis [10, 25] on a 1 GbE base: every point is
    valid, but the value was refused "must be in [0, 1)" against the base's 1 Gbit/s, which no
    point runs — as a column (checked at the base's other keys), as a sweep-wide key (the cell
    built at the base's bandwidth) and beside a bandwidth axis that is not a column (the
    columns checked on the base's cell).  Each point equals its single run."""
    import lmtoolkit as lmt

    base = ["engine=fluid", "vm=small", "network=1gbe", "sweep.progress=false"]
    bw = "+sweep.axes.bw={key: network.bandwidth_gbit_s, values: [10, 25]}"
    bg = "+sweep.axes.bg={key: network.background_gbit_s, values: [0, 5]}"
    ds, info = _run([*base, bw, bg], tmp_path)
    t = ds.total_time.isel(replicate=0)
    assert t.shape == (2, 2) and np.isfinite(t.values).all()
    assert t.sel(bw=10, bg=5) > t.sel(bw=10, bg=0) > t.sel(bw=25, bg=0)  # less line left, slower
    assert t.sel(bw=10, bg=5) > t.sel(bw=25, bg=5) > t.sel(bw=25, bg=0)
    assert float(t.sel(bw=10, bg=5)) == pytest.approx(1.83, rel=0.01)
    for b in (10, 25):
        for g in (0, 5):
            one = lmt.simulate([*base[:3], f"network.bandwidth_gbit_s={b}", f"network.background_gbit_s={g}"])
            assert float(t.sel(bw=b, bg=g)) == pytest.approx(float(one.total_time), rel=1e-12)
    # each cell holds the columns at their first values, never the base's
    assert [c["network"]["bandwidth_gbit_s"] for c in info["plan"].cells] == [10]
    # a sweep-wide background of 5 under the bandwidth axis: the same two points
    ds2, _ = _run([*base, bw, "network.background_gbit_s=5"], tmp_path)
    assert ds2.total_time.isel(replicate=0).values.tolist() == t.sel(bg=5).values.tolist()
    # the bandwidth axis not a column (the stream rate follows it): the columns are checked
    # on the cells it composes, at 10 and 25 Gbit/s
    ds3, info3 = _run([*base, "network.stream_gbit_s=${network.bandwidth_gbit_s}", bw, bg], tmp_path)
    assert [a.column for a in info3["plan"].axes] == [False, True]
    t3 = ds3.total_time.isel(replicate=0)
    assert np.isfinite(t3.values).all() and float(t3.sel(bw=10, bg=5)) > float(t3.sel(bw=10, bg=0))


def test_a_null_axis_value_is_nan_fresh_and_from_the_cache(tmp_path):
    """``values: [null, 512]``: a float coordinate with NaN both when computed and when served
    from the cache (computed, it was an object array [None, 512])."""
    ov = [
        "experiment=quickstart",
        "debug=default",
        "engine=fluid",
        "sweep.axes=null",
        "workload=hotcold",
        "+sweep.axes.cap={key: policy.max_bandwidth_mib_s, values: [null, 512]}",
        "policy=qemu",
    ]
    fresh, info = _run(ov, tmp_path)
    cached, info2 = _run(ov, tmp_path)
    assert info2["cached"] and not info["cached"]
    for ds in (fresh, cached):
        assert ds.cap.dtype == float and np.isnan(ds.cap.values[0]) and ds.cap.values[1] == 512
    xr.testing.assert_identical(_data(fresh), _data(cached))


def test_collect_takes_each_jobs_own_result_not_an_older_runs(tmp_path, monkeypatch, capsys):
    """A multirun rerun into the same hydra.sweep.dir leaves the older run's result in each job
    dir: collect merged the first file it found, so memory_gib=8 held the 2 GiB run's numbers.
    Each job's result is the one of its own overrides (here a zarr beside an older netCDF)."""
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    _multirun(tmp_path, ["vm.memory_gib=1,2"])
    d = _multirun(tmp_path, ["vm.memory_gib=4,8", "sweep.format=zarr"])
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "quickstart.nc")
    assert ds.memory_gib.values.tolist() == [4, 8]
    for run in json.loads(ds.attrs["lmt_runs"]):
        own = read_result(d / run["file"])
        gib = int(dict(o.split("=", 1) for o in run["overrides"])["vm.memory_gib"])
        assert f"vm.memory_gib={gib}" in json.loads(own.attrs["lmt_overrides"])
        np.testing.assert_array_equal(ds.total_time.sel(memory_gib=gib).values, own.total_time.values)


def test_collect_refuses_a_job_an_earlier_multirun_left(tmp_path, monkeypatch, capsys):
    """A rerun with fewer jobs into the same hydra.sweep.dir leaves the earlier run's last job
    directory: collect merged it (memory_gib [4, 8, 3]).  Its overrides are not a job of the
    multirun.yaml Hydra wrote last: refused, naming it."""
    import shutil

    from lmtoolkit.cli import main

    monkeypatch.chdir(tmp_path)
    _multirun(tmp_path, ["vm.memory_gib=1,2,3"])
    d = _multirun(tmp_path, ["vm.memory_gib=4,8"])
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"job {d / '2'} (" in err and "vm.memory_gib=3" in err and "not a job of the last multirun" in err
    shutil.rmtree(d / "2")
    assert main(["collect", str(d)]) == 0


def test_collect_refuses_a_job_without_exactly_one_result_of_its_overrides(tmp_path, monkeypatch, capsys):
    """A job dir holding only another job's result, or two results of its overrides with
    different configs, was merged from whichever file sorted first."""
    import shutil

    from lmtoolkit.cli import main
    from lmtoolkit.io import write_dataset
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["vm.memory_gib=1,2"])
    capsys.readouterr()
    (own,) = (d / "1").rglob("quickstart.nc")
    moved = tmp_path / "own.nc"
    shutil.move(own, moved)
    (other,) = (d / "0").rglob("quickstart.nc")
    shutil.copy(other, own)  # job 1 holds job 0's result only
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"job {d / '1'}" in err and "no result of its overrides" in err and "vm.memory_gib=1" in err

    shutil.move(moved, own)
    stale = read_result(own)
    stale.attrs["lmt_config_hash"] = "0123456789abcdef"  # the same overrides, another config
    write_dataset(stale, d / "1" / "quickstart" / "variants" / "old" / "quickstart.nc")
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"job {d / '1'}" in err and "2 results of its overrides" in err and "0123456789abcdef" in err


def test_collect_refuses_jobs_over_different_points(tmp_path, monkeypatch, capsys):
    """sweep.replicates=1,2: the outer join made up the point (replicates=1, replicate=1) that no
    job ran — total_time NaN beside converged=True, rounds=seed=INT64_MIN, stop_reason 'nan'."""
    from lmtoolkit.cli import main

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["sweep.replicates=1,2"])
    capsys.readouterr()
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert "jobs 0 and 1" in err and "replicate" in err and "[0] against [0, 1]" in err
    assert not (d / "quickstart.nc").exists()


def test_collect_refuses_a_multirun_with_a_job_that_left_no_directory(tmp_path, monkeypatch, capsys):
    """A job that never ran (a SLURM array task cancelled or still pending, a directory
    removed) left no job directory: collect merged the other three jobs over the full grid and
    made its 2 points up — total_time NaN beside converged True, seed INT64_MIN, stop_reason
    'nan' — and of a two-job multirun wrote the one job's file with no memory_gib dim."""
    import shutil

    from lmtoolkit.cli import main

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["vm.memory_gib=1,2", "seed=0,1"])
    shutil.rmtree(d / "3")  # vm.memory_gib=2 seed=1
    capsys.readouterr()
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert "1 of the 4 jobs" in err and "vm.memory_gib=2 seed=1" in err and "left no job directory" in err
    assert not (d / "quickstart.nc").exists()
    (d / "multirun.yaml").unlink()  # no record of the jobs: the grid's hole tells
    assert main(["collect", str(d)]) == 2
    err = capsys.readouterr().err
    assert "no job in" in err and "memory_gib=2 seed=1" in err and "cover 3 of the 4 combinations" in err
    assert not (d / "quickstart.nc").exists()

    d = _multirun(tmp_path / "two", ["vm.memory_gib=4,8"])
    shutil.rmtree(d / "1")
    capsys.readouterr()
    assert main(["collect", str(d)]) == 2
    assert "1 of the 2 jobs" in capsys.readouterr().err and not (d / "quickstart.nc").exists()


def test_collected_attributes_that_differ_between_jobs_are_recorded_per_job(tmp_path, monkeypatch):
    """engine=fluid,page: the collected file's engine coord was [fluid, page] while its attributes
    (lmt_engine, lmt_config, lmt_variant) were job 0's alone."""
    from lmtoolkit.cli import main
    from lmtoolkit.sweep import read_result

    monkeypatch.chdir(tmp_path)
    d = _multirun(tmp_path, ["engine=fluid,page"])
    assert main(["collect", str(d)]) == 0
    ds = read_result(d / "quickstart.nc")
    assert ds.engine.values.tolist() == ["fluid", "page"]
    assert not {"lmt_engine", "lmt_config", "lmt_variant"} & set(ds.attrs)
    runs = json.loads(ds.attrs["lmt_runs"])
    assert [r["attrs"]["lmt_engine"] for r in runs] == ["fluid", "page"]
    assert ["engine: page" in r["attrs"]["lmt_config"] for r in runs] == [False, True]
    # what every job has in common stays
    assert ds.attrs["lmt_policy"] == "vmware" and ds.attrs["lmt_experiment"] == "quickstart"
    assert "lmt_policy" not in runs[0]["attrs"]
    prov = yaml.safe_load((d / "provenance.yaml").read_text())
    assert prov["git_commit"] == ds.attrs.get("lmt_git_commit")
