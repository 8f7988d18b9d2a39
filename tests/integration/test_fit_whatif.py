"""``lmtk fit`` and ``lmtk whatif`` end to end through the CLI (issue 13), on logs made from
real recorded runs: a QMP query-migrate JSON-lines series, a ``virsh domjobinfo`` text and a
testbed record; the FIT file used by ``lmtk run``; bad input is one line and exit 2.
``lmtk validate whatif`` (every family of the reference set) is in the slow tier."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lmtoolkit.cli import main
from lmtoolkit.io import read_dataset

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "logs"
#: what an operator knows of these testbed runs (a QMP or libvirt log does not say it)
KNOWN = [
    "policy.max_bandwidth_mib_s=64",
    "policy.downtime_limit_ms=300",
    "policy.dirty_clear=sync",
    "policy.timeout_s=60",
    "vm.vcpus=1",
]
CASES = {
    "qmp": (LOGS / "qmp_r10000-h064-rand-bw064-dl0300-n0.jsonl", KNOWN, 9998),
    "domjobinfo": (LOGS / "domjobinfo_r05000-h064-rand-bw064-dl0300-n0.txt", KNOWN, 5001),
    "testbed": (ROOT / "data" / "testbed" / "r20000-h128-rand-bw032-dl0030-n0.nc", [], 19992),
}
#: a testbed run that switched to post-copy after its first pass
PC_RUN = ROOT / "data" / "testbed" / "r05000-h064-rand-bw064-dl0300-pc-n0.nc"
#: how close the fitted rate must be to the guest's count: the issue's 10 %, except for the
#: r05000 run, whose two measurable syncs after the first pass pin the rate to about ±10 %
#: (its profile interval, [5204, 6310] pages/s at 5001 measured, moves with the engines)
RATE_TOL = {"qmp": 0.10, "domjobinfo": 0.25, "testbed": 0.10}
#: extra options per case
OPTIONS: dict = {}


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """``lmtk fit`` on each log (default engine, a small bootstrap)."""
    out, text = {}, {}
    d = tmp_path_factory.mktemp("fits") / "fit"
    import contextlib
    import io

    for name, (log, known, _) in CASES.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(
                [
                    "fit",
                    str(log),
                    *known,
                    "--out",
                    str(d / f"{name}.yaml"),
                    "--bootstrap",
                    "40",
                    *OPTIONS.get(name, []),
                ]
            )
        assert rc == 0, name
        out[name], text[name] = d / f"{name}.yaml", buf.getvalue()
    return out, text


@pytest.mark.parametrize("name", list(CASES))
def test_lmtk_fit_works_on_each_kind_of_log(fits, name):
    paths, text = fits
    log, _, guest_rate = CASES[name]
    assert paths[name].exists()
    out = text[name]
    assert (
        f"wrote {paths[name]}" in out and "lmtk whatif" in out and "lmtk run 'hydra.searchpath=" in out
    )  # quoted: zsh globs [..]
    m = re.search(r"workload\.dirty_rate_pages_s\s+([0-9.e+]+)", out)
    assert m and float(m.group(1)) == pytest.approx(guest_rate, rel=RATE_TOL[name])  # the guest's own count
    assert "fit quality" in out


@pytest.mark.parametrize("name", list(CASES))
def test_lmtk_whatif_on_each_fit(fits, name, tmp_path, capsys):
    paths, _ = fits
    out, fig = tmp_path / "w.nc", tmp_path / "w.png"
    axes = ["policy=qemu,hybrid", "network=10gbe"] if name == "qmp" else ["network=1gbe"]
    rc = main(["whatif", str(paths[name]), *axes, "--out", str(out), "--figure", str(fig), "--samples", "20"])
    assert rc == 0
    ds = read_dataset(out)
    for v in (
        "total_time",
        "downtime",
        "transferred",
        "converged",
        "completed",
        "total_time_lo",
        "total_time_hi",
        "converged_share",
        "observed_total_time",
        "fitted_sync_time",
    ):
        assert v in ds, v
    assert np.isfinite(ds.total_time.values).all()
    assert fig.exists() and fig.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "observed run" in printed
    if name == "qmp":
        assert ds.total_time.dims == ("policy",)
        assert bool(ds.completed.sel(policy="hybrid"))  # post-copy always ends
        assert "policy=hybrid" in printed
    else:
        assert "network=1gbe" in printed and not ds.total_time.dims


def test_a_whatif_axis_may_hold_null(fits, tmp_path, capsys):
    """``policy.max_bandwidth_mib_s=null,128`` was refused ("the values must be numbers"), though
    ``=null`` alone (line rate) is valid: a value axis holding null is composed per value, its
    coordinate NaN (as a sweep's), its row labelled null; each point is the one-value what-if's."""
    paths, _ = fits
    out, fig = tmp_path / "w.nc", tmp_path / "w.png"
    argv = ["whatif", str(paths["qmp"]), "--samples", "0"]
    assert main([*argv, "policy.max_bandwidth_mib_s=null,128", "--out", str(out), "--figure", str(fig)]) == 0
    assert "max_bandwidth_mib_s=null " in capsys.readouterr().out and fig.exists()
    ds = read_dataset(out)
    cap = ds.max_bandwidth_mib_s.values
    assert np.isnan(cap[0]) and cap[1] == 128
    for i, v in enumerate(("null", "128")):
        one = tmp_path / f"{v}.nc"
        assert main([*argv, f"policy.max_bandwidth_mib_s={v}", "--out", str(one)]) == 0
        assert float(ds.total_time[i]) == pytest.approx(float(read_dataset(one).total_time), rel=1e-9)
    assert float(ds.total_time[0]) < float(ds.total_time[1])  # line rate beats a 128 MiB/s cap


def test_the_fit_file_runs_with_lmtk_run(fits, tmp_path):
    paths, _ = fits
    p = paths["qmp"]
    out = tmp_path / "r.nc"
    assert (
        main(["run", f"hydra.searchpath=[file://{p.parent.parent}]", f"+fit={p.stem}", "-o", str(out)]) == 0
    )
    ds = read_dataset(out)
    assert bool(ds.converged) and float(ds.total_time) == pytest.approx(5.223, rel=0.05)


def test_whatif_without_overrides_reproduces_the_observed_run(fits, tmp_path):
    paths, _ = fits
    out = tmp_path / "same.nc"
    assert main(["whatif", str(paths["domjobinfo"]), "--out", str(out)]) == 0
    ds = read_dataset(out)
    assert float(ds.total_time) == pytest.approx(float(ds.observed_total_time), rel=0.05)
    assert float(ds.transferred) == pytest.approx(float(ds.observed_transferred), rel=0.05)


def _truncated(tmp_path):
    src = CASES["qmp"][0].read_text()
    p = tmp_path / "cut.jsonl"
    p.write_text(src[: len(src) * 2 // 3])
    return p


@pytest.mark.parametrize(
    "argv, words",
    [
        (lambda t: ["fit", str(_truncated(t))], ["cut.jsonl", "line"]),
        (lambda t: ["fit", str(t / "none.jsonl")], ["none.jsonl", "no such file"]),
        (lambda t: ["fit", str(CASES["qmp"][0]), "policy.max_bandwith_mib_s=64"], ["max_bandwith_mib_s"]),
        (lambda t: ["fit", str(CASES["qmp"][0]), "--out", "/proc/fit.yaml"], ["/proc/fit.yaml", "--out"]),
        (lambda t: ["whatif", str(t / "no.yaml")], ["no.yaml", "lmtk fit"]),
        # a log where the FIT file belongs said "not valid YAML (expected '<document start>' …)"
        # (a testbed record: "cannot read it as a FIT file (UnicodeDecodeError)")
        (
            lambda t: ["whatif", str(CASES["qmp"][0])],
            ["looks like a migration log (qmp-jsonl), not a FIT file", f"lmtk fit {CASES['qmp'][0]} --out"],
        ),
        (
            lambda t: ["whatif", str(CASES["testbed"][0])],
            ["looks like a migration log (testbed), not a FIT file", "lmtk fit"],
        ),
        # the log states the guest's RAM and page size: an override may not contradict it (a
        # 2 GiB guest fitted to this 512 MiB guest's log gave rms 31.6 and no rate)
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "vm.memory_gib=2"],
            ["vm.memory_gib=2", "ram.total", "0.500496"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "vm.page_size_kib=64"],
            ["vm.page_size_kib", "ram.page-size", "huge pages (above 64 KiB)"],
        ),
        (lambda t: ["fit", str(CASES["qmp"][0]), "--bootstrap", "-3"], ["--bootstrap=-3", ">= 0"]),
        # settings the log contradicts fitted a run that did not happen (the default write rate
        # kept, rms residual 18-27, total time -81 %) and wrote the FIT file all the same
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy.timeout_s=1"],
            ["policy.timeout_s=1", "completed after 5.22 s"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy.max_bandwidth_mib_s=10"],
            ["policy.max_bandwidth_mib_s=10", "64.65 MiB/s", "6.46 x the cap"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy.max_rounds=3"],
            ["policy.max_rounds=3", "7 times", "no pass cap"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy=postcopy"],
            ["policy=postcopy", "completed in pre-copy", "policy=qemu"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy=vmware"],
            ["policy=vmware", "QEMU migration (qmp-jsonl)", "lmtk whatif FIT.yaml policy=vmware"],
        ),
        # it suggested "policy=hybrid … or policy=postcopy", and policy=postcopy then refused the
        # log's own cap: only what takes the log is suggested, and why not the other
        (
            lambda t: ["fit", str(PC_RUN), "policy=qemu"],
            [
                "policy=qemu",
                "switched to post-copy",
                "fit it with policy=hybrid (",
                "; not policy=postcopy: it cannot take the log's policy.max_bandwidth_mib_s=64.0",
            ],
        ),
        (
            lambda t: ["fit", str(PC_RUN), "policy=postcopy"],
            ["policy=postcopy cannot take the settings", "policy.max_bandwidth_mib_s=64.0"],
        ),
        # an experiment replaced the observed guest and run (quickstart fitted a vMotion-like
        # run of a sequential writer; a what-if swept the experiment's write rates)
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "experiment=quickstart"],
            ["experiment=quickstart", "observed run"],
        ),
        (lambda t: ["fit", str(CASES["qmp"][0]), "sweep.replicates=3"], ["sweep.replicates=3", "lmtk sweep"]),
        # a setting the testbed record states, contradicted: taken, the rate fitted 35 % low
        (
            lambda t: ["fit", str(CASES["testbed"][0]), "policy.downtime_limit_ms=300"],
            ["policy.downtime_limit_ms=300", "it states policy.downtime_limit_ms=30.0", "leave"],
        ),
        (
            lambda t: ["fit", str(CASES["testbed"][0]), "policy.auto_converge=true"],
            ["policy.auto_converge=true", "states policy.auto_converge=false"],
        ),
        # dropped: the FIT file said engine: page (--engine chooses it)
        (lambda t: ["fit", str(CASES["qmp"][0]), "engine=fluid"], ["engine=fluid", "--engine page|fluid"]),
        # a cap the fit read as a float: ValueError, ZeroDivisionError, TypeError tracebacks
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy.max_bandwidth_mib_s=abc"],
            ["policy.max_bandwidth_mib_s='abc'", "must be a number"],
        ),
        (
            lambda t: ["fit", str(CASES["qmp"][0]), "policy.max_bandwidth_mib_s=0"],
            ["policy.max_bandwidth_mib_s=0", "(0, inf]"],
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmtk: error:") and "\n" not in err and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.slow
def test_fit_on_the_fluid_engine_alone(tmp_path, capsys):
    log, known, rate = CASES["qmp"]
    out = tmp_path / "fit" / "fluid.yaml"
    assert main(["fit", str(log), *known, "--engine", "fluid", "--out", str(out), "--bootstrap", "40"]) == 0
    text = capsys.readouterr().out
    m = re.search(r"workload\.dirty_rate_pages_s\s+([0-9.e+]+)", text)
    assert m and float(m.group(1)) == pytest.approx(rate, rel=0.15)
    assert "engine: fluid" in out.read_text()
    assert main(["whatif", str(out), "network=10gbe", "--out", str(tmp_path / "w.nc")]) == 0
    w = read_dataset(tmp_path / "w.nc")
    assert w.attrs["lmt_engine"] == "fluid"
    assert w.attrs["lmt_seeds"] == 1 and float(w.total_time_seed_sd) == 0.0  # deterministic: one run


def readme_whatif_medians() -> tuple[float, float]:
    """The README's held-out median |error| of ``lmtk validate whatif``: (total time, bytes) in %
    (it said 2.4 % and 1.0 % where the run gives 2.8 % and 1.3 %)."""
    text = (ROOT / "README.md").read_text()
    got = [
        re.search(rf"\| {w}, median \\\|error\\\| \| ([0-9.]+) %", text)
        for w in ("total time", "bytes transferred")
    ]
    assert all(got), "the README's what-if validation table"
    return float(got[0].group(1)), float(got[1].group(1))


@pytest.mark.slow
def test_validate_whatif_meets_the_goals_on_held_out_settings(capsys):
    """Every goal of issue 13 is met on the 141-run set (README: 75 held-out settings, 11
    families; the fit run of each, the plain run with the smallest switchover threshold, gives
    the rate within 10 % of the guest's count across the migration in all 8 dirtying families,
    5 of them pinned to +-10 % by the log and one held by a wider interval, the 2 sequential
    ones bounded from below)."""
    assert main(["validate", "whatif"]) == 0
    out = capsys.readouterr().out
    line = out.strip().splitlines()[-1]
    m = re.search(r"total time ([0-9.]+)%.*bytes ([0-9.]+)%.*converged agree ([0-9]+)%", line)
    assert m, line
    assert float(m.group(1)) <= 5 and float(m.group(2)) <= 5 and int(m.group(3)) == 100
    assert readme_whatif_medians() == pytest.approx((float(m.group(1)), float(m.group(2))), abs=0.05)
    rate = re.search(r"within 10% of the guest's in ([0-9]+) of ([0-9]+) dirtying families", line)
    assert rate and rate.group(1) == rate.group(2) == "8", line
    pinned = re.search(
        r"pins the rate \(profile within \+-10%\) in ([0-9]+), ([0-9]+) of them within 10%", line
    )
    wider = re.search(
        r"a wider interval in ([0-9]+), ([0-9]+) within 10%, the guest's rate inside it in ([0-9]+)", line
    )
    assert pinned and pinned.group(1) == pinned.group(2), line  # every pinned one within 10 %
    assert wider and wider.group(1) == wider.group(3), line  # a wider one holds the guest's rate
    # 6 of them pinned until session 20; r10000-h064 is now open to a sequential writer (Δ 3.9 < 4)
    assert int(pinned.group(1)) >= 5 and int(pinned.group(1)) + int(wider.group(1)) >= 6, line
    assert line.endswith("-> goals met"), line


def test_an_override_that_agrees_with_the_log_gives_way_to_it():
    """``vm.memory_gib=0.5`` for a 512.5 MiB guest (within 0.5 %) is dropped for the log's exact
    value, which every other bound of the fit uses (it failed as 'workload.wss_mib=512.5 is not
    allowed'); the other overrides pass as given."""
    from lmtoolkit.logs.fit import _check_against_log
    from lmtoolkit.logs.readers import read_log

    log = read_log(CASES["qmp"][0])
    user = ["vm.memory_gib=0.5", "policy.max_bandwidth_mib_s=64", "vm.page_size_kib=4"]
    assert _check_against_log(log, user) == ["policy.max_bandwidth_mib_s=64"]


def test_huge_pages_agree_with_a_log_of_4k_pages_and_are_kept():
    """QEMU's ram.page-size is its target page (migration.c: populate_ram_info,
    qemu_target_page_size()), 4096 also for a guest backed by 2 MiB pages, whose pre-copy the
    model tracks in 4 KiB pages: vm.page_size_kib=2048 agrees with the log and stays (post-copy
    moves whole huge pages); a 64 KiB base page, tracked whole, contradicts it."""
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.logs.fit import _check_against_log
    from lmtoolkit.logs.readers import read_log

    log = read_log(CASES["qmp"][0])
    assert _check_against_log(log, ["vm.page_size_kib=2048"]) == ["vm.page_size_kib=2048"]
    assert _check_against_log(log, ["vm.page_size_kib=1048576"]) == ["vm.page_size_kib=1048576"]
    with pytest.raises(ConfigError, match="ram.page-size says 4"):
        _check_against_log(log, ["vm.page_size_kib=64"])


@pytest.mark.parametrize(
    "opts, words",
    [
        (["--samples", "-1"], ["--samples=-1", ">= 0"]),  # it ran as --samples 0
        (["--seeds", "0"], ["--seeds=0", "page-engine runs per point", ">= 1"]),
        # no upper bound: 10^8 page-engine runs per point, a hang
        (["--seeds", "100000000"], ["--seeds=100000000", "<= 1024", "sd/sqrt(N)"]),
        (["--figure", "what.txt"], ["--figure='what.txt'", ".png"]),  # a traceback after the runs
        # said the key 'cannot be varied' (=1,10 varies it): the value is what is wrong
        (["network.bandwidth_gbit_s=1,abc"], ["network.bandwidth_gbit_s='abc'", "numbers"]),
    ],
)
def test_whatif_options_are_checked_before_anything_runs(fits, tmp_path, capsys, opts, words):
    out = tmp_path / "w.nc"
    assert main(["whatif", str(fits[0]["qmp"]), *opts, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmtk: error:") and "\n" not in err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


def test_a_fit_that_does_not_reproduce_its_log_says_so(tmp_path, capsys):
    """A stated setting the log does not contradict outright can still be wrong: a 5 s downtime
    limit makes this 7-sync run's pre-copy twice as fast as it was (total time -48 %, rms
    normalised residual 15.3 where the validation's fits reach 1.00).  The FIT file is
    written (it is the best fit under what was stated), and lmtk fit and lmtk whatif each say
    on stderr that it does not reproduce its log; a good fit says nothing."""
    log, known, _ = CASES["qmp"]
    out = tmp_path / "bad.yaml"
    argv = ["fit", str(log), *known, "policy.downtime_limit_ms=5000", "--engine", "fluid"]
    assert main([*argv, "--bootstrap", "3", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "WARNING: the fit does not reproduce the log: " in cap.out
    warn = [ln for ln in cap.err.splitlines() if ln.startswith("lmtk: warning:")]
    assert len(warn) == 1 and "rms normalised residual 15" in warn[0], warn
    assert main(["whatif", str(out), "--samples", "0", "--out", str(tmp_path / "w.nc")]) == 0
    assert "does not reproduce its log" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    assert main(["fit", str(log), *known, "--engine", "fluid", "--bootstrap", "3", "--out", str(good)]) == 0
    cap = capsys.readouterr()
    assert "does not reproduce" not in cap.out + cap.err


@pytest.mark.parametrize("workload", ["hotcold", "zipf"])
def test_the_documented_workload_shapes_fit(tmp_path, capsys, workload):
    """workload=hotcold refused its own search ("hot_mib=64.06 … must not exceed wss_mib
    (0.25)"); workload=zipf tried a sequential Zipf, 2,900 fluid bins x 46 regions a row, and
    ran out of memory.  A hot set is at most the working set; Zipf is fitted as random writes."""
    log, known, _ = CASES["qmp"]
    out = tmp_path / f"{workload}.yaml"
    argv = ["fit", str(log), *known, f"workload={workload}", "--engine", "fluid", "--bootstrap", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    if workload == "hotcold":
        hot, wss = (
            float(re.search(rf"workload\.{k}\s+([0-9.e+]+)", text).group(1)) for k in ("hot_mib", "wss_mib")
        )
        assert hot <= wss
    assert main(["whatif", str(out), "network=10gbe", "--out", str(tmp_path / "w.nc")]) == 0


@pytest.mark.parametrize("keep", [0.9, 0.985])
def test_a_cut_off_fit_file_is_refused(fits, tmp_path, capsys, keep):
    """A FIT file cut at 90 % (no workload, network, host or policy section) ran with their
    defaults: 'as observed' 0.268 s for the observed 5.223 s, exit 0, no warning.  Cut inside
    its last section, a value can be cut short too: the file's last line is a marker now, and
    a file that promises it (its block's ``end_marker``) and lacks it is refused.  A hand edit
    that keeps the marker, and a file from before the marker with every section, are read."""
    src = fits[0]["qmp"]
    text = src.read_text()
    cut = tmp_path / "cut.yaml"
    cut.write_text(text[: text.rfind("\n", 0, int(len(text) * keep)) + 1])  # whole lines: valid YAML
    out = tmp_path / "w.nc"
    assert main(["whatif", str(cut), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "incomplete FIT file" in err and str(cut) in err and "\n" not in err
    assert not out.exists()
    # composed as a config group option (the README's lmtk run command): Hydra reads the YAML
    # alone, and the cut file ran with the defaults of what it lost (269.7 ms for 5.29 s, exit 0)
    group = tmp_path / "sp" / "fit"
    group.mkdir(parents=True)
    (group / "cut.yaml").write_text(cut.read_text())
    run_out = tmp_path / "r.nc"
    assert main(["run", f"hydra.searchpath=[file://{group.parent}]", "+fit=cut", "-o", str(run_out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "incomplete FIT file" in err and str(group / "cut.yaml") in err and "\n" not in err
    assert not run_out.exists()
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace("\n  iteration_ms: 50.0\n", "\n  iteration_ms: 100.0\n"))
    assert "iteration_ms: 100.0" in edited.read_text()
    old = tmp_path / "old.yaml"  # before the marker: the block has no end_marker
    old.write_text(text.replace("#|   end_marker: true\n", "").replace("# end of FIT file (lmtk fit)\n", ""))
    for f in (edited, old):
        assert main(["whatif", str(f), "--samples", "0", "--out", str(tmp_path / f"{f.stem}.nc")]) == 0
        (group / f.name).write_text(f.read_text())
        argv = ["run", f"hydra.searchpath=[file://{group.parent}]", f"+fit={f.stem}", "-o", str(run_out)]
        assert main(argv) == 0


def test_a_setting_that_agrees_with_the_record_gives_way_to_it():
    """``policy.downtime_limit_ms=30`` for a record that states 30.0 passes (the record's value
    stands); an override the record does not state passes as given."""
    from lmtoolkit.logs.fit import _check_against_log
    from lmtoolkit.logs.readers import read_log

    log = read_log(CASES["testbed"][0])
    user = ["policy.downtime_limit_ms=30", "policy.auto_converge=False", "network=10gbe"]
    assert _check_against_log(log, user) == ["network=10gbe"]


def test_the_default_fit_path_never_replaces_another_logs_fit(tmp_path, monkeypatch, capsys):
    """Two logs of one name in two directories both defaulted to <results>/fits/fit/x.yaml:
    the second fit replaced the first silently.  It is refused now, naming --out; a refit of
    the same log replaces its own.  The printed commands are quoted for a shell."""
    import shlex

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "my results"))
    log, known, _ = CASES["qmp"]
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jsonl").write_text(log.read_text())
    argv = [*known, "--engine", "fluid", "--bootstrap", "0"]
    assert main(["fit", str(tmp_path / "d1" / "x.jsonl"), *argv]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("what-ifs:"))
    fit = Path(shlex.split(line.split(":", 1)[1])[2])
    assert fit.is_file() and " " in str(fit)
    assert main(["fit", str(tmp_path / "d1" / "x.jsonl"), *argv]) == 0  # its own: replaced
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "d2" / "x.jsonl"), *argv]) == 2
    err = capsys.readouterr().err
    assert "holds the fit of another log" in err and "--out" in err
    assert str(tmp_path / "d1" / "x.jsonl") in read_text_block(fit)


def read_text_block(path):
    return Path(path).read_text().split("\n#| ", 1)[1][:2000]


def test_a_log_from_a_pipe_needs_out(tmp_path, monkeypatch, capsys):
    """lmtk fit <(cat A) and lmtk fit <(cat B) both wrote <results>/fits/fit/63-<hash>.yaml
    (the source /dev/fd/63 both times, so the default-path check saw the same log): the second
    fit replaced the first's.  A log that is not a regular file has no default FIT file: one
    error naming --out, before anything is read (the pipe is left to its writer)."""
    import os
    import threading

    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    fifo = tmp_path / "63"
    os.mkfifo(fifo)

    def feed():  # the writer of <(cat log)
        try:
            with open(fifo, "w") as fh:
                fh.write(CASES["qmp"][0].read_text())
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    rc = main(["fit", str(fifo), *KNOWN, "--engine", "fluid", "--bootstrap", "0"])
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let an unread writer go
    writer.join(10)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmtk: error:") and "\n" not in err
    assert str(fifo) in err and "not a regular file" in err and "--out" in err
    assert not (tmp_path / "results").exists()


def test_whatif_default_paths_of_two_fit_files_of_one_name_differ(fits, tmp_path, monkeypatch, capsys):
    """a/run.yaml and b/run.yaml (two fits) both defaulted to <results>/whatif/run_da39a3ee.nc:
    the second what-if replaced the first.  The default name holds the FIT file's content
    digest; the same file and overrides give the same name (its own result, replaced)."""
    monkeypatch.setenv("LMT_RESULTS_DIR", str(tmp_path / "results"))
    wrote = []
    for d, name in (("a", "qmp"), ("b", "domjobinfo"), ("c", "qmp")):
        (tmp_path / d).mkdir()
        f = tmp_path / d / "run.yaml"
        f.write_text(fits[0][name].read_text())
        assert main(["whatif", str(f), "--samples", "0"]) == 0
        out = capsys.readouterr().out
        wrote.append(next(ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("wrote ")))
    assert wrote[0] != wrote[1] and wrote[0] == wrote[2], wrote
    assert all(Path(w).is_file() and Path(w).name.startswith("run_") for w in wrote)
    assert read_dataset(wrote[0]).attrs["lmt_fit_file"] == str(tmp_path / "c" / "run.yaml")
    assert read_dataset(wrote[1]).attrs["lmt_fit_file"] == str(tmp_path / "b" / "run.yaml")


def test_a_log_of_more_than_64_syncs_is_fitted_on_every_sync(tmp_path, capsys):
    """The validation's fit run r20000-h064-rand-bw064-dl0100 (83 syncs in 30 s, cancelled at
    its timeout): the page engine kept 64 pre-copy rounds, so the fit compared its last 18
    syncs with nothing — 'syncs 65 vs 83 observed', rms 8.45 — and lmtk fit warned that the
    fit does not reproduce its log, against the README's 'the validation's fits reach 1.75'.
    Every sync is compared now: 83 vs 83, rms under 1, no warning."""
    log = ROOT / "data" / "testbed" / "r20000-h064-rand-bw064-dl0100-n0.nc"
    assert main(["fit", str(log), "--bootstrap", "0", "--out", str(tmp_path / "r.yaml")]) == 0
    cap = capsys.readouterr()
    assert "syncs 83 vs 83 observed" in cap.out, cap.out
    assert "does not reproduce" not in cap.out + cap.err
    rms = float(re.search(r"rms normalised residual ([0-9.]+)", cap.out).group(1))
    assert rms <= 1.0
    rate = float(re.search(r"workload\.dirty_rate_pages_s\s+([0-9.e+]+)", cap.out).group(1))
    assert rate == pytest.approx(19999, rel=0.10)  # the guest's count before migrate


def test_a_fit_file_as_a_config_keeps_no_group_swap_silently(fits, tmp_path):
    """``lmtk run hydra.searchpath=[file://DIR] +fit=NAME policy=vmware`` ran the fitted QEMU-like
    run under the override's name (the FIT file's ``policy`` section is merged last; same config
    hash as without it): refused, pointing at ``lmtk whatif``.  ``lmtk sweep`` reads the FIT file
    as ``lmtk run`` does (it dropped ``hydra.searchpath`` and read ``fit`` as a new key), and a
    group axis there is the option, as in ``lmtk whatif``."""
    import lmtoolkit as lmt
    from lmtoolkit.compose import compose
    from lmtoolkit.errors import ConfigError
    from lmtoolkit.logs.whatif import whatif

    paths, _ = fits
    fit = paths["qmp"]
    base = [f"hydra.searchpath=[file://{fit.parent.parent}]", f"+fit={fit.stem}"]
    observed = compose(base)
    for swap in ("policy=vmware", "network=10gbe", "vm=large"):
        with pytest.raises(ConfigError) as e:
            compose(base + [swap])
        g, opt = swap.split("=")
        assert e.value.key == g and f"lmtk whatif {fit} {swap}" in str(e.value)
    # a key given as well is the user's: no error
    assert compose(base + ["network.bandwidth_gbit_s=10"]).network.bandwidth_gbit_s == 10
    ds = lmt.sweep(
        base
        + [
            "+sweep.axes.link={key: network, values: [1gbe, 10gbe]}",
            f"paths.results_dir={tmp_path}",
            "sweep.cache=false",
        ]
    )
    assert ds.attrs["lmt_policy"] == observed.policy.name
    w = whatif(fit, ["network=1gbe,10gbe"], samples=0)
    # the same runs but for the page engine's seeds (a sweep draws one per point, whatif averages 32)
    np.testing.assert_allclose(ds.total_time.values.ravel(), w.total_time.values.ravel(), rtol=0.03)
    assert np.isclose(ds.total_time.values.ravel()[0], w.total_time.values.ravel()[0], rtol=1e-3)
