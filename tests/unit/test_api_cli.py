"""The contract's API and CLI: simulate(), lmtk run, clear errors, netCDF output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import lmtoolkit as lmt
from lmtoolkit.cli import main
from lmtoolkit.dataset import validate
from lmtoolkit.io import read_dataset

CONTRACT = [
    "policy=qemu",
    "vm.memory_gib=1",
    "workload=uniform",
    "workload.dirty_rate_pages_s=5000",
    "network.bandwidth_gbit_s=1",
]


def test_simulate_returns_the_contract_dataset():
    ds = lmt.simulate(CONTRACT)
    validate(ds)
    for name, units in [("total_time", "s"), ("downtime", "s"), ("transferred", "bytes")]:
        assert ds[name].attrs["units"] == units and ds[name].ndim == 0
    assert ds.rounds.item() >= 1 and bool(ds.converged.item())
    assert "round" in ds.round_bytes.dims and ds.round_bytes.attrs["units"] == "bytes"
    assert float(ds.round_bytes.sum()) == pytest.approx(float(ds.transferred))
    assert ds.attrs["lmt_overrides"] and "policy" in ds.attrs["lmt_config"]
    assert len(ds.attrs["lmt_config_hash"]) == 16


def _units_strings() -> set[str]:
    """Every units string the package's Dataset builders and key table write."""
    from lmtoolkit.dataset import ROUND_FIELDS, SCALARS
    from lmtoolkit.logs.readers import FINAL_VARS, SAMPLE_VARS
    from lmtoolkit.model.energy import VARIABLES
    from lmtoolkit.tasks.evacuation import PER_VM
    from lmtoolkit.tasks.evacuation import SCALARS as EVACUATION
    from lmtoolkit.testbed.record import UNITS as TESTBED
    from lmtoolkit.units import KEY_SUFFIXES, NAMED_UNITS

    out = {u for _, u, _ in SCALARS.values()} | {u for u, _ in ROUND_FIELDS.values()}
    out |= {u for u, _ in VARIABLES.values()} | {u for u, _ in EVACUATION.values()}
    out |= {u for u, _, _ in PER_VM.values()} | {u for _, u, _ in KEY_SUFFIXES} | set(NAMED_UNITS.values())
    out |= {u for u, _ in (*TESTBED.values(), *FINAL_VARS.values(), *SAMPLE_VARS.values())}
    return out - {None, ""}


def test_every_units_string_is_one_udunits_parses():
    """CF units are UDUNITS-2 strings: coordinates said 'GiB', 'MiB/s', 'pages/s', 'MiB/s per
    core' and an evacuation's dirty_rate 'pages s-1', none of which UDUNITS parses (no binary
    prefixes, no 'pages').  Now 2^30 bytes, 2^20 bytes/s, s-1 (pages named by the key)."""
    from cf_units import Unit

    from lmtoolkit.units import display_unit, unit_of_key

    bad = []
    for u in sorted(_units_strings()):
        try:
            Unit(u)
        except ValueError:
            bad.append(u)
    assert not bad, bad
    assert Unit(unit_of_key("vm.memory_gib")).convert(1.0, "bytes") == 2**30
    assert Unit(unit_of_key("host.compress_mib_s_per_core")).convert(1.0, "bytes/s") == 2**20
    assert Unit(unit_of_key("workload.dirty_rate_pages_s")).convert(5000.0, "Hz") == 5000
    assert unit_of_key("policy.max_cpu_throttle") == "percent" and unit_of_key("policy.xbzrle") == "1"
    # figure labels keep the short forms
    assert display_unit(unit_of_key("vm.memory_gib")) == "GiB"
    assert (
        display_unit(unit_of_key("workload.dirty_rate_pages_s"), "workload.dirty_rate_pages_s") == "pages/s"
    )
    key = "host.compress_mib_s_per_core"
    assert display_unit(unit_of_key(key), key) == "MiB/s per core"


def _broken(ds, name, **attrs):
    out = ds.copy()
    out[name].attrs = {k: v for k, v in {**out[name].attrs, **attrs}.items() if v is not None}
    return out


def test_validate_checks_every_variable_and_coordinate_against_the_units_rule(tmp_path):
    """The rule (README, Dataset): a long_name everywhere; CF units on every number and boolean,
    coordinates too; none on strings (group-axis coordinates, stop_reason) and flags
    (round_kind).  validate checked data variables only, for units only."""
    from lmtoolkit.dataset import units_problems

    ds = lmt.sweep(
        [
            "experiment=quickstart",
            "debug=default",
            "engine=fluid",
            "+sweep.axes.ac={key: policy.auto_converge, values: [false, true]}",
            "policy=qemu",
            "~sweep.axes.policy",
            f"paths.results_dir={tmp_path}",
        ]
    )
    validate(ds)
    assert ds.dirty_rate.attrs["units"] == "s-1" and ds.ac.attrs["units"] == "1"
    assert "units" not in ds.network.attrs and ds.network.attrs["long_name"]
    assert "units" not in ds.round_kind.attrs and "flag_meanings" in ds.round_kind.attrs
    for name, attrs, words in (
        ("network", {"units": "1"}, "coordinate 'network' is not numeric and has units '1'"),
        ("round_kind", {"units": "1"}, "variable 'round_kind' is a flag and has units '1'"),
        ("stop_reason", {"units": "1"}, "variable 'stop_reason' is not numeric"),
        ("dirty_rate", {"units": None}, "coordinate 'dirty_rate' has no units"),
        ("dirty_rate", {"units": "pages/s"}, "units 'pages/s', which UDUNITS-2 does not parse"),
        ("replicate", {"long_name": None}, "coordinate 'replicate' has no long_name"),
        ("converged", {"units": None}, "variable 'converged' has no units"),
        ("round_kind", {"flag_meanings": None}, "has flag_values but no flag_meanings"),
    ):
        bad = _broken(ds, name, **attrs)
        assert [p for p in units_problems(bad) if words in p], (name, units_problems(bad))
        with pytest.raises(ValueError, match="lmtoolkit schema"):
            validate(bad)
    validate(lmt.evacuate(["debug=default"]))
    from lmtoolkit import teaching
    from lmtoolkit.units import display_unit

    for order in ("address", "rank"):  # the bitmap's bins said 'MiB'
        bitmap = teaching.dirty_bitmap_rounds(["debug=default"], order=order)
        assert units_problems(bitmap) == [] and display_unit(bitmap[order].attrs["units"]) == "MiB"


#: the committed testbed records (lmtk testbed run)
RECORD_DIRS = ("testbed", "testbed-phase", "testbed-whatif")


def _testbed_record():
    """A record as ``lmtk testbed run`` writes it: the driver's measurements of a QMP reply."""
    from types import SimpleNamespace

    from lmtoolkit.testbed.driver import GuestSpec, RunSpec, Testbed
    from lmtoolkit.testbed.record import to_dataset

    ram = {"transferred": 3 * 2**28, "total": 2**29, "normal": 2**16, "duplicate": 2**16, "mbps": 500.0}
    ram.update(
        {
            "dirty-sync-count": 5,
            "normal-bytes": 2**28,
            "precopy-bytes": 3 * 2**28 - 2**20,
            "downtime-bytes": 2**20,
        }
    )
    info = {"status": "completed", "total-time": 4000, "downtime": 50, "setup-time": 3, "ram": ram}
    samples = [(0.1 * i, "active", 2.0**20 * i, 2.0**28, 1 + i // 10, 0, 900.0) for i in range(40)]
    samples.append((4.0, "completed", 3.0 * 2**28, 0.0, 5, 0, 900.0))
    m = Testbed._measure(
        SimpleNamespace(guest=GuestSpec()), RunSpec(5000, 64), info, samples, [(0.5, 2)], 5000.0, 4.2
    )
    m.update(label="r05000-h064", boot_time=9.0, postcopy_started=False, max_rate_measured=1e5)
    m.update(sweep_start=np.nan, pass_clock="qemu", dirty_rate_during=4900.0, verify_pages=49152)
    m.update(verify_bad_pages=0)
    return to_dataset(m)


def _old_style(path):
    """``path`` with the units records had before they were CF: MiB, MiB/s, 1/s, none on some."""
    import h5netcdf

    with h5netcdf.File(path, "a") as f:
        for k, v in f.variables.items():
            u = v.attrs.get("units")
            if k.endswith(("_mib", "_mib_s")) or u == "s-1" or k in ("wbytes", "mbps", "repeat"):
                if k in ("wbytes", "mbps", "repeat"):
                    del v.attrs["units"]
                else:
                    v.attrs["units"] = {"s-1": "1/s"}.get(u, "MiB/s" if k.endswith("_s") else "MiB")


def test_testbed_records_and_migration_logs_follow_the_units_rule(tmp_path):
    """Testbed records said 'MiB' and 'MiB/s' (UDUNITS has no binary prefixes) and had no units
    or long_name on 27 variables (capabilities, QEMU's byte counters, mbps ...); nothing checked
    them.  Now the simulator's rule (units.unit_of_key for key-named inputs) and validate: for a
    new record, every committed one, and each log format read.  A record with the old units
    still reads the same, and rewrite_units changes its attrs only."""
    from lmtoolkit.logs.readers import read_log
    from lmtoolkit.paths import data_dir
    from lmtoolkit.testbed.record import load_runs, repack, rewrite_units
    from lmtoolkit.units import display_unit

    ds = _testbed_record()
    validate(ds)
    assert (
        ds.hot_mib.attrs["units"] == "2^20 bytes" and ds.max_bandwidth_mib_s.attrs["units"] == "2^20 bytes/s"
    )
    assert display_unit(ds.max_bandwidth_mib_s.attrs["units"]) == "MiB/s"
    assert ds.mbps.attrs["units"] == "Mbit/s" and "units" not in ds.sample_status.attrs
    path = tmp_path / "r.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    validate(read_log(path))
    for sub in RECORD_DIRS:  # one of each (all: the slow test below)
        validate(load_runs(next((data_dir() / sub).glob("*.nc")))[0])
    logs = Path(__file__).parents[1] / "data" / "logs"
    for f in sorted(logs.glob("*_r*")):
        validate(read_log(f))
    new = read_log(path)
    _old_style(path)
    with pytest.raises(ValueError, match="'MiB'"):
        validate(xr.open_dataset(path, engine="h5netcdf"))
    old = read_log(path)
    assert old.equals(new)  # values; and what the fit reads off the record's inputs:
    for k in ("lmt_settings", "lmt_guest", "lmt_writer"):
        assert old.attrs[k] == new.attrs[k], k
    before = xr.open_dataset(path, engine="h5netcdf", decode_cf=False).load()
    grown = path.stat().st_size  # (_old_style edited attrs in place: free space)
    assert "hot_mib" in rewrite_units(path) and rewrite_units(path) == []
    after = xr.open_dataset(path, engine="h5netcdf", decode_cf=False).load()
    # written again whole, not edited in place: no free space left (it grew 25 %), nothing to repack
    assert path.stat().st_size < grown and repack(path) == 0
    validate(xr.open_dataset(path, engine="h5netcdf"))
    for k in before.variables:
        assert before[k].values.tobytes() == after[k].values.tobytes(), k
    assert "set to CF" in after.attrs["history"].splitlines()[-1]


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
def test_rewriting_a_records_attrs_leaves_no_free_space(engine, tmp_path):
    """rewrite_units edited attributes in place (h5netcdf append): HDF5 kept the old ones' space
    and the file grew (a record: 50,863 -> 55,131 bytes; the 166 committed ones 8.1 -> 10.1 MB).
    Now the file is written again whole by the library that wrote it (its _NCProperties kept):
    values, dtypes and fill values as they were, nothing for repack to save."""
    import h5py

    from lmtoolkit.testbed.record import repack, rewrite_units

    path = tmp_path / "r.nc"
    _testbed_record().to_netcdf(path, engine=engine, **({"format": "NETCDF4"} if engine == "netcdf4" else {}))
    fresh = path.stat().st_size
    with h5py.File(path, "r") as f:
        props = f.attrs["_NCProperties"]
        fills = {
            k: (v.dtype, np.asarray(v.fillvalue).tobytes(), v[()].tobytes())
            for k, v in f.items()
            if v.dtype.kind in "biuf"
        }
    _old_style(path)
    grown = path.stat().st_size
    assert grown > fresh and rewrite_units(path)
    assert path.stat().st_size < grown and repack(path) == 0  # as small as a fresh write
    with h5py.File(path, "r") as f:
        assert f.attrs["_NCProperties"] == props
        assert {
            k: (v.dtype, np.asarray(v.fillvalue).tobytes(), v[()].tobytes())
            for k, v in f.items()
            if v.dtype.kind in "biuf"
        } == fills


@pytest.mark.slow
def test_every_committed_testbed_record_follows_the_units_rule():
    """All 166 records of data/testbed, testbed-phase and testbed-whatif (about 12 s: opening
    each file is most of it)."""
    from lmtoolkit.paths import data_dir
    from lmtoolkit.testbed.record import load_runs

    runs = [r for sub in RECORD_DIRS for r in load_runs(data_dir() / sub)]
    assert len(runs) > 160
    for run in runs:
        validate(run)


@pytest.mark.slow
def test_every_committed_testbed_record_is_packed(tmp_path):
    """The 166 records hold no free space (the units rewrite in place had grown them 8.1 ->
    10.1 MB; repacked, 8.8 MB): repacking a copy of each saves nothing."""
    import shutil

    from lmtoolkit.paths import data_dir
    from lmtoolkit.testbed.record import repack

    files = [f for sub in RECORD_DIRS for f in sorted((data_dir() / sub).glob("*.nc"))]
    assert len(files) > 160
    saved = {}
    for f in files:
        copy = shutil.copy(f, tmp_path / f.name)
        saved[f.name] = repack(copy)
    assert not {k: v for k, v in saved.items() if v}


@pytest.mark.parametrize("engine", ["page", "fluid"])
def test_engine_switch_gives_the_same_variables(engine):
    ds = lmt.simulate(CONTRACT + [f"engine={engine}"])
    assert ds.attrs["lmt_engine"] == engine
    assert set(ds.data_vars) == set(lmt.simulate(CONTRACT).data_vars)


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["vm.memory_gb=1"], ["vm.memory_gb", "vm.memory_gib"]),
        (["vm.zero_fraction=1.5"], ["vm.zero_fraction", "1.5", "[0, 1]"]),
        (["network.bandwidth_gbit_s=-1"], ["network.bandwidth_gbit_s", "-1"]),
        (["workload=uniform", "workload.wss_mib=99999"], ["workload.wss_mib", "99999", "memory"]),
        (["workload=uniform", "workload.dirty_rate_pages_s=-5"], ["workload.dirty_rate_pages_s", "-5"]),
        (["policy=qemuu"], ["policy", "qemuu", "qemu"]),
        (["engine=quantum"], ["engine", "page", "fluid"]),
        (["policy.downtime_limit_ms=0"], ["policy.downtime_limit_ms", "0"]),
    ],
)
def test_bad_input_names_key_value_and_what_is_allowed(overrides, words):
    with pytest.raises(lmt.ConfigError) as e:
        lmt.simulate(overrides)
    for w in words:
        assert w in str(e.value)


def test_cli_prints_one_line_and_exits_2_on_bad_input(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lmtoolkit.cli", "run", "vm.zero_fraction=2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmtk: error: vm.zero_fraction=2")
    assert "Traceback" not in out.stderr


def test_cli_run_prints_summary_and_writes_netcdf(tmp_path, capsys):
    out_file = tmp_path / "one.nc"
    assert main(["run", *CONTRACT, "-o", str(out_file)]) == 0
    text = capsys.readouterr().out
    for word in ("total time", "downtime", "transferred", "rounds", "converged", "precopy", "stop"):
        assert word in text
    ds = read_dataset(out_file)
    ref = lmt.simulate(CONTRACT)
    assert ds.total_time.item() == pytest.approx(ref.total_time.item())
    np.testing.assert_allclose(ds.round_bytes.values, ref.round_bytes.values)
    assert bool(ds.converged.item()) is True


def test_zarr_and_netcdf_read_back_the_same_flag_values(tmp_path):
    """round_kind's flag_values read back from zarr as a list [0, 1, ..., -1] and from netCDF
    as an int8 ndarray: both are now the int8 array that was written."""
    from lmtoolkit.io import write_dataset
    from lmtoolkit.records import ROUND_KINDS

    ds = lmt.simulate(CONTRACT)
    want = np.array([*range(len(ROUND_KINDS)), -1], dtype=np.int8)
    for name in ("one.nc", "one.zarr"):
        back = read_dataset(write_dataset(ds, tmp_path / name)).round_kind.attrs["flag_values"]
        assert isinstance(back, np.ndarray) and back.dtype == np.int8, (name, type(back))
        np.testing.assert_array_equal(back, want)


def test_the_summary_shows_the_beyond_one_link_results():
    """The README's "Beyond one link" commands print what their comments promise: the disk copy
    (apart from the memory's ratio, which it had made 51.92x for 2 GiB), a NUMA mismatch, copy
    errors and checksum re-sends; a plain run prints none of it."""
    from lmtoolkit.cli import summary_text

    plain = summary_text(lmt.simulate(["vm.memory_gib=0.5"]))
    assert "disk copy" not in plain and "copy errors" not in plain and "vNUMA" not in plain
    disk = lmt.simulate(["vm.memory_gib=0.5", "storage=migrate", "storage.disk_gib=4"])
    text = summary_text(disk)
    mem = (disk.transferred.item() - disk.storage_transferred.item()) / disk.memory.item()
    assert f"{mem:.2f}x; disk" in text and "disk copy" in text and mem < 1.1
    numa = ["engine=fluid", "vm.memory_gib=96", "host.dst_numa_nodes=4", "host.dst_numa_node_gib=64"]
    assert "memory-bound work 20.0% slower" in summary_text(lmt.simulate(numa))
    checked = summary_text(
        lmt.simulate(["vm.memory_gib=0.5", "host.ecc=false", "policy.verify_checksums=true"])
    )
    assert "copy errors" in checked and "hashing" in checked
    assert "no checksums" in summary_text(lmt.simulate(["vm.memory_gib=0.5", "host.ecc=false"]))


def test_the_summary_says_the_disk_copy_took_the_whole_timeout():
    """A 2 GiB disk over 1 GbE (~18 s) with policy.timeout_s=5: the migration ends in the
    disk copy, and the summary says memory was not migrated."""
    from lmtoolkit.cli import summary_text

    ds = lmt.simulate(["storage=migrate", "storage.disk_gib=2", "network=1gbe", "policy.timeout_s=5"])
    assert (
        "disk copy       5.00 s not in sync by the timeout: abandoned, memory not migrated"
        in summary_text(ds)
    )


def test_an_abandoned_pause_is_shown_as_one():
    """A switchover cut by the timeout has a downtime (the pause until then): the summary, the
    one-line outcome and the teaching table say it was abandoned (they said "no downtime")."""
    from lmtoolkit import teaching
    from lmtoolkit.cli import summary_text
    from lmtoolkit.plotting.figures import outcome

    ds = lmt.simulate(["policy=stopcopy", "vm.memory_gib=1", "network=1gbe", "policy.timeout_s=5"])
    assert "downtime        5.00 s  (abandoned at the timeout" in summary_text(ds)
    assert "paused 5 s until then, then resumed on the source" in outcome(ds)
    cases = teaching.compare(
        {"stop": ["policy=stopcopy", "policy.timeout_s=5"], "pre": ["policy=qemu", "policy.timeout_s=5"]},
        ["vm.memory_gib=1", "network=1gbe"],
    )
    assert list(teaching.table(cases, ["downtime"])["downtime (ms)"]) == [
        "5,000 (abandoned)",
        "did not complete",
    ]


def test_cli_run_default_output_is_under_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMT_RESULTS_DIR")
    assert main(["run", "vm.memory_gib=0.25"]) == 0
    files = list((tmp_path / "results" / "runs").glob("run_*.nc"))
    assert len(files) == 1 and not list((tmp_path / "results" / "runs").glob(".*tmp"))


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path, monkeypatch, capsys):
    """lmtk run/sweep --cfg job (a Hydra app's flag): the resolved config with every policy
    parameter, nothing simulated or written."""
    import yaml

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path))
    assert main(["run", "--cfg", "job", "policy=vmware", "policy.switchover_goal_ms=250"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["policy"]["name"] == "vmware" and cfg["policy"]["switchover_goal_ms"] == 250
    assert "sdps" in cfg["policy"]  # a class default the policy file leaves out
    assert main(["sweep", "--cfg", "job", "experiment=quickstart"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert set(cfg["sweep"]["axes"]) >= {"policy", "network"}
    assert not any(tmp_path.iterdir())
    assert main(["sweep", "-m", "--cfg", "job", "experiment=quickstart", "seed=1,2"]) == 2
    assert "--cfg job prints one config" in capsys.readouterr().err


def test_experiment_null_is_the_root_configs_own_default(tmp_path):
    """experiment=null / debug=null (what configs/config.yaml says) were a Hydra ValueError
    traceback; a later null undoes an earlier option."""
    a = lmt.simulate(["experiment=null", "debug=null", "vm.memory_gib=1"])
    b = lmt.simulate(["vm.memory_gib=1"])
    assert float(a.total_time) == float(b.total_time)
    ds = lmt.sweep(["experiment=quickstart", "debug=default", f"paths.results_dir={tmp_path}"])
    assert "policy" in ds.dims
    from lmtoolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="no experiment given"):
        lmt.sweep(["experiment=quickstart", "experiment=null", f"paths.results_dir={tmp_path}"])


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """lmtk run ... | head -1: the summary's print met a closed pipe (BrokenPipeError traceback)."""
    import os

    env = dict(os.environ, LMT_RESULTS_DIR=str(tmp_path))
    p = subprocess.Popen(
        [sys.executable, "-m", "lmtoolkit.cli", "run", "vm.memory_gib=0.25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(120) == 141 and "Traceback" not in err, err


def test_a_tilde_override_deletes_a_sweep_axis(tmp_path):
    """~sweep.axes.policy (Hydra's delete) was 'not of the form key=value'."""
    ds = lmt.sweep(
        ["experiment=quickstart", "debug=default", "~sweep.axes.policy", f"paths.results_dir={tmp_path}"]
    )
    assert "policy" not in ds.dims and "network" in ds.dims


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "vm.memory_gib=-1"],
        ["sweep", "experiment=quickstart", "vm.memory_gib=-1"],
        ["fit", "/nonexistent/log.json"],
    ],
)
def test_a_refused_input_leaves_no_empty_result_directories(argv, tmp_path, monkeypatch):
    """The output check makes the directories to prove they can be written, then removes the
    ones it made: a refused input leaves the results directory as it was (before: empty
    runs/, <experiment>/variants/<id>/ and fits/fit/ directories)."""
    from lmtoolkit.cli import main

    res = tmp_path / "res"
    monkeypatch.setenv("LMT_RESULTS_DIR", str(res))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert not res.exists(), sorted(str(p) for p in res.rglob("*"))


@pytest.mark.parametrize("value, env", [("", None), ("null", None), (None, "")], ids=["empty", "null", "env"])
def test_an_empty_or_null_results_dir_is_refused_not_the_current_directory(
    value, env, tmp_path, capsys, monkeypatch
):
    """``paths.results_dir=`` (or LMT_RESULTS_DIR set empty) wrote runs/ into the current
    directory, and ``paths.results_dir=null`` into a directory named None."""
    from lmtoolkit.cli import main

    monkeypatch.chdir(tmp_path)
    if env is not None:
        monkeypatch.setenv("LMT_RESULTS_DIR", env)
    argv = ["run", "engine=fluid"] + ([f"paths.results_dir={value}"] if value is not None else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    shown = {"": "''", "null": "None", None: "''"}[value]
    assert len(err) == 1 and err[0].startswith(
        f"lmtk: error: paths.results_dir={shown} is not allowed: a directory"
    ), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, said",
    [
        (
            ["figures", "fig01", "-o", "{d}", "vm.memory_gib=-1"],
            "vm.memory_gib=-1 is not allowed: must be in [3.8147e-06, 65536] GiB",
        ),
        (
            ["notebooks", "--smoke", "00", "-o", "{d}", "nosuch"],
            "notebook='nosuch' is not allowed: one of 00_",
        ),
    ],
)
def test_words_after_a_commands_options_join_its_positionals(argv, said, tmp_path, capsys):
    """``lmtk figures fig01 -o DIR debug=default`` was "unrecognized arguments: debug=default"
    (with the usage): only commands whose positionals are named ``overrides`` took words after
    their options (``lmtk sweep -q experiment=X``)."""
    from lmtoolkit.cli import main

    assert main([a.format(d=tmp_path / "out") for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lmtk: error: {said}"), err


def test_a_zarr_output_that_is_a_file_is_refused_before_the_work_and_any_case_is_zarr(
    tmp_path, capsys, monkeypatch
):
    """``-o OUT.zarr`` where OUT.zarr is a regular file passed the check, ran the migration and
    then failed writing (NotADirectoryError traceback, exit 1).  ``-o OUT.ZARR`` passed the
    check (suffixes compared in lower case) and was written as a netCDF file of that name."""
    import lmtoolkit.cli as cli

    f = tmp_path / "f.zarr"
    f.write_bytes(b"keep")
    monkeypatch.setattr(cli, "simulate", lambda *a, **k: pytest.fail("simulated before the check"))
    assert cli.main(["run", "-o", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lmtk: error: cannot write {f}: it is a file, not a zarr store (a directory) (--output)"]
    assert f.read_bytes() == b"keep" and sorted(p.name for p in tmp_path.iterdir()) == ["f.zarr"]
    monkeypatch.undo()
    up = tmp_path / "g.ZARR"
    assert cli.main(["run", "engine=fluid", "-o", str(up)]) == 0
    assert up.is_dir() and (up / ".zgroup").is_file()
    assert float(read_dataset(up).total_time) == pytest.approx(
        float(lmt.simulate(["engine=fluid"]).total_time)
    )


@pytest.mark.parametrize(
    "key",
    ["sweep.replicates=5", "++sweep.executor=processes", "sweep=default", "+evacuation.order=given"],
)
def test_simulate_refuses_what_lmtk_run_refuses_with_the_same_message(key, capsys, monkeypatch):
    """``lmt.simulate(["sweep.replicates=5"])`` ran one migration (``lmtk run`` refused it):
    one check for both, one message."""
    from lmtoolkit import api
    from tests.conftest import cli_error

    monkeypatch.setattr(api, "run_batch", lambda *a, **k: pytest.fail("a migration was simulated"))
    with pytest.raises(lmt.ConfigError) as e:
        lmt.simulate(["vm.memory_gib=0.5", key])
    assert cli_error(["run", "vm.memory_gib=0.5", key], capsys) == f"lmtk: error: {e.value}"
    assert str(e.value).startswith(key + ": ")


@pytest.mark.parametrize(
    "argv, lines",
    [
        (["figures", "--list", "fig01", "3"], ["fig01_quickstart", "fig03_vmware_vs_hyperv"]),
        (["notebooks", "--list", "00", "quickstart"], ["00_live_migration_basics", "20_experiment"]),
        (["figures", "--list"], 11),
        (["notebooks", "--list"], 11),
    ],
)
def test_list_lists_the_named_only(argv, lines, capsys):
    """``--list`` with names lists those (they were ignored: all 11 figures, all 11 notebooks);
    without names, every one."""
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    if isinstance(lines, int):
        assert len(out) == lines, out
    else:
        assert [o.split()[0] for o in out] == lines, out
    if argv[:3] == ["notebooks", "--list", "00"]:  # an experiment's name: the template for it
        assert out[-1].endswith("(for experiment quickstart)"), out


def test_list_refuses_an_unknown_name(capsys):
    from tests.conftest import cli_error

    cli_error(["figures", "--list", "badid"], capsys, ["figure='badid'", "fig01"])
    cli_error(["notebooks", "--list", "nosuch"], capsys, ["notebook='nosuch'", "00_"])
